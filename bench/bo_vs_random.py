"""BO proposer vs random search at equal evaluations, on a synthetic fitness with a known optimum.

The fitness of an arrangement x of L primitives against a hidden target t (drawn from the seed):

    f(x) = 1/2 · #{i : x_i = t_i} / L  +  1/2 · #{i : x_i = t_i and x_{i+1} = t_{i+1}} / (L - 1)

so the optimum is t with f = 1, and neighbouring layers interact (a right layer is worth more
next to another right one). Each evaluation observes f(x) + N(0, noise²), as a proxy task
would; "best after n" is the true f of the best *observed* arrangement among the first n.

Both searchers only Draft (no policy: the searcher alone decides), one evaluation per step:
random search is `RandomProposer` (uniform drafts), BO is `BOProposer` (GP + EI after n_init
uniform drafts). Same seeds, same budget.

Usage: python bench/bo_vs_random.py [--seeds 10] [--budget 100] [--length 16] [--alphabet 3]
                                    [--noise 0.01] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from populations.arrangement import PRIMITIVES, Arrangement
from populations.bo import BOProposer
from populations.proposers import BaseProposer, RandomProposer
from populations.records import Action, NodeRecord, NodeStatus, Operator
from populations.tree import SearchTree


def hidden_target(seed: int, alphabet: Sequence[str], length: int) -> tuple[str, ...]:
    rng = random.Random(f"bo-bench-target:{seed}")
    return tuple(rng.choice(list(alphabet)) for _ in range(length))


def fitness(layers: Sequence[str], target: Sequence[str]) -> float:
    """The noise-free fitness (module docstring); 1.0 exactly at the target."""
    hit = [a == b for a, b in zip(layers, target, strict=True)]
    n = len(hit)
    pairs = sum(hit[i] and hit[i + 1] for i in range(n - 1))
    return 0.5 * sum(hit) / n + 0.5 * pairs / max(1, n - 1)


def search(
    proposer: BaseProposer,
    target: Sequence[str],
    *,
    budget: int,
    seed: int,
    noise: float,
) -> list[float]:
    """Run ``budget`` Draft steps; returns the true fitness of the best observed after each."""
    rng = random.Random(seed)
    noise_rng = random.Random(f"noise:{seed}")
    tree = SearchTree()
    best_seen, best_true, curve = float("-inf"), 0.0, []
    for step in range(budget):
        proposal = proposer.propose(Action(operator=Operator.DRAFT, parent_id=None), tree, rng)
        layers = Arrangement.parse(proposal.text).layers
        true = fitness(layers, target)
        seen = true + noise_rng.gauss(0.0, noise)
        tree.add(
            NodeRecord(
                node_id=step + 1,
                run_id=1,
                agent_id=1,
                parent_id=None,
                step=step,
                operator=Operator.DRAFT,
                proposal=proposal.text,
                proposal_key=proposal.text,
                plan=proposal.plan,
                status=NodeStatus.COMPLETE,
                val_fitness=seen,
            )
        )
        if seen > best_seen:
            best_seen, best_true = seen, true
        curve.append(best_true)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--alphabet", type=int, choices=(2, 3), default=3)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    alphabet = PRIMITIVES[: args.alphabet]
    checkpoints = sorted({n for n in (10, 25, 50, 75, 100, args.budget) if n <= args.budget})
    searchers: dict[str, BaseProposer] = {
        "random": RandomProposer(alphabet=alphabet, length=args.length),
        "bo": BOProposer(alphabet=alphabet, length=args.length),
    }
    rows: list[dict[str, object]] = []
    wall: dict[str, float] = {name: 0.0 for name in searchers}
    for seed in range(args.seeds):
        target = hidden_target(seed, alphabet, args.length)
        for name, proposer in searchers.items():
            start = time.perf_counter()
            curve = search(proposer, target, budget=args.budget, seed=seed, noise=args.noise)
            wall[name] += time.perf_counter() - start
            rows.append({"seed": seed, "searcher": name,
                         **{f"best@{n}": curve[n - 1] for n in checkpoints}})  # fmt: skip
    header = ["seed", "searcher", *(f"best@{n}" for n in checkpoints)]
    print(f"alphabet {', '.join(alphabet)}, length {args.length}, noise {args.noise}, "
          f"{args.seeds} seeds, budget {args.budget} evaluations (optimum 1.0)")  # fmt: skip
    print("  ".join(f"{h:>9}" for h in header))
    for row in rows:
        print("  ".join(f"{row[h]:>9.4f}" if isinstance(row[h], float) else f"{row[h]!s:>9}"
                        for h in header))  # fmt: skip
    summary: dict[str, dict[str, float]] = {}
    for name in searchers:
        mine = [r for r in rows if r["searcher"] == name]
        summary[name] = {}
        for n in checkpoints:
            values = [float(r[f"best@{n}"]) for r in mine]  # type: ignore[arg-type]
            summary[name][f"mean_best@{n}"] = statistics.fmean(values)
            summary[name][f"std_best@{n}"] = statistics.pstdev(values)
        summary[name]["wall_s"] = wall[name]
        means = "  ".join(f"{summary[name][f'mean_best@{n}']:>9.4f}" for n in checkpoints)
        print(f"{'mean':>9}  {name:>9}  {means}   ({wall[name]:.1f} s)")
    wins = sum(
        float(b[f"best@{args.budget}"]) > float(r[f"best@{args.budget}"])  # type: ignore[arg-type]
        for b, r in zip(rows[1::2], rows[0::2], strict=True)
    )
    ties = sum(
        float(b[f"best@{args.budget}"]) == float(r[f"best@{args.budget}"])  # type: ignore[arg-type]
        for b, r in zip(rows[1::2], rows[0::2], strict=True)
    )
    print(f"BO better than random at {args.budget} evaluations on {wins} of {args.seeds} seeds"
          f" ({ties} ties)")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bo_vs_random-L{args.length}-A{args.alphabet}.json"
    record = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rows": rows,
        "summary": summary,
        "bo_wins": wins,
        "ties": ties,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
