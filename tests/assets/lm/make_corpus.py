"""Generate a tiny BabiStories-like corpus: short seeded stories from templates.

Usage: ``python tests/assets/lm/make_corpus.py OUT_DIR [--train N] [--test N] [--layout L]``.
Layouts: ``split`` writes ``train.jsonl`` and ``test.jsonl`` (one JSON object ``{"text": ...}``
a line, as BabiStories ships its stories), ``single`` one ``corpus.jsonl`` (DCLM-like: the loader
carves test from its first documents), ``txt`` a ``train.txt`` / ``test.txt`` pair (documents
separated by blank lines). The same seed always writes the same bytes.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

NAMES = ("Mia", "Leo", "Ava", "Sam", "Zoe", "Max", "Lily", "Ben", "Nora", "Tom")
ANIMALS = ("cat", "dog", "bird", "fox", "rabbit", "turtle", "duck", "bear")
PLACES = ("park", "forest", "garden", "beach", "farm", "river", "hill", "town")
THINGS = ("ball", "kite", "box", "hat", "cake", "book", "boat", "star")
FEELINGS = ("happy", "sad", "brave", "tired", "curious", "scared", "proud")
COLORS = ("red", "blue", "green", "yellow", "little", "big", "shiny")


def story(rng: random.Random) -> str:
    """One short story: a setting, a problem, a helper and an ending."""
    hero, friend = rng.sample(NAMES, 2)
    animal, place, thing = rng.choice(ANIMALS), rng.choice(PLACES), rng.choice(THINGS)
    color, feel = rng.choice(COLORS), rng.choice(FEELINGS)
    lines = [
        f"Once upon a time, {hero} went to the {place} with a {color} {thing}.",
        f"{hero} saw a {animal} near the {place}. The {animal} was {feel}.",
    ]
    for _ in range(rng.randint(1, 3)):
        lines.append(
            rng.choice(
                (
                    f'{hero} asked, "Do you want to play with my {thing}?"',
                    f"The {animal} ran to {friend} and {friend} laughed.",
                    f'{friend} said, "Let us share the {thing} with the {animal}."',
                    f"The {thing} fell into the {rng.choice(PLACES)} and {hero} felt {feel}.",
                    f"{hero} and {friend} looked for the {thing} all day.",
                )
            )
        )
    lines.append(
        rng.choice(
            (
                f"In the end, {hero}, {friend} and the {animal} were {rng.choice(FEELINGS)}.",
                f"From that day on, the {animal} and {hero} were friends.",
                f"{hero} learned that sharing makes everyone {rng.choice(FEELINGS)}.",
            )
        )
    )
    return " ".join(lines)


def write_corpus(
    out: Path, *, n_train: int = 400, n_test: int = 120, seed: int = 0, layout: str = "split"
) -> Path:
    """Write ``n_train`` + ``n_test`` stories under ``out`` in ``layout``; returns ``out``."""
    rng = random.Random(seed)
    train = [story(rng) for _ in range(n_train)]
    test = [story(rng) for _ in range(n_test)]
    out.mkdir(parents=True, exist_ok=True)
    if layout == "split":
        for name, docs in (("train.jsonl", train), ("test.jsonl", test)):
            (out / name).write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    elif layout == "single":
        docs = test + train
        (out / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    elif layout == "txt":
        (out / "train.txt").write_text("\n\n".join(train) + "\n")
        (out / "test.txt").write_text("\n\n".join(test) + "\n")
    else:
        raise ValueError(f"unknown layout {layout!r}; expected split, single or txt")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--test", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", default="split", choices=("split", "single", "txt"))
    args = parser.parse_args()
    write_corpus(
        args.out, n_train=args.train, n_test=args.test, seed=args.seed, layout=args.layout
    )


if __name__ == "__main__":
    main()
