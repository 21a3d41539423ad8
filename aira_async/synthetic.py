"""A synthetic evaluator with a known optimum, for tests, benchmarks and dry runs.

The fitness of an arrangement is the fraction of positions that match a hidden target
arrangement drawn from the task seed, plus a small deterministic "seed noise" (as if retrained with
another seed). About 5% of arrangements "diverge", deterministically by their text, so buggy nodes
and Debug chains occur as they do with real training. Everything is a pure function of
(arrangement, task seed, evaluation seed, split): the same inputs always give the same outcome.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

SYNTHETIC_VERSION = "synthetic-1"
_FAIL_RATE = 0.05
_NOISE = 0.02


def hidden_target(alphabet: Sequence[str], length: int, task_seed: int) -> tuple[str, ...]:
    """The arrangement that scores 1.0 (before noise) for this task seed."""
    rng = random.Random(f"synthetic-target:{task_seed}:{length}:{','.join(alphabet)}")
    return tuple(rng.choice(list(alphabet)) for _ in range(length))


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from `parts`."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def synthetic_score(
    layers: Sequence[str],
    *,
    alphabet: Sequence[str],
    length: int,
    task_seed: int,
    eval_seed: int,
    split: str,
) -> tuple[float | None, str | None]:
    """(score, None) for a good arrangement, (None, reason) for one that "diverges"."""
    key = " ".join(layers)
    if _unit("fail", key, task_seed) < _FAIL_RATE:
        return None, "diverged: loss became NaN (synthetic failure)"
    target = hidden_target(alphabet, length, task_seed)
    matches = sum(a == b for a, b in zip(layers, target, strict=False))
    base = matches / max(length, len(layers))
    noise = (_unit("noise", key, task_seed, eval_seed, split) - 0.5) * _NOISE
    return base + noise, None
