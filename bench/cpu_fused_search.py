"""The default CPU search with and without fused evaluation: evaluations per minute.

Runs ``aira run`` on a population (default: the offline preset, the README's demo) for a fixed
budget, once as the file says with ``[evaluation] fuse`` set to 1 and once set to K, one after
the other on this machine, and reads each archive: nodes finished, evaluations trained (a node
that reuses an earlier evaluation trains nothing), and how many candidates each evaluation
trained with (``fused_k``). Searches differ from run to run (workers finish in a different
order), so ``--repeats`` alternates the two settings that many times.

Usage: python bench/cpu_fused_search.py [--budget 3m] [--fuse 4] [--repeats 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aira_async.config import load_population, parse_duration  # noqa: E402
from populations.records import EvalKey, NodeStatus, Split  # noqa: E402
from store import Archive  # noqa: E402


def with_fuse(text: str, fuse: int) -> str:
    """The population file with ``fuse = N`` under ``[evaluation]`` (replacing one if set)."""
    if "[evaluation]" not in text:
        raise ValueError("the population has no [evaluation] section to set fuse in")
    text = re.sub(r"(?m)^fuse\s*=.*\n", "", text)
    return text.replace("[evaluation]\n", f"[evaluation]\nfuse = {fuse}\n", 1)


def search(population: Path, db: Path, budget: str, log: Path) -> float:
    """One ``aira run``; its wall time in seconds."""
    cmd = [sys.executable, "-m", "aira_async", "run", "--population", str(population)]
    cmd += ["--db", str(db), "--budget", budget]
    limit = parse_duration(budget) + 300
    t0 = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=limit)
    return time.perf_counter() - t0


def read(db: Path, population: Path) -> dict[str, Any]:
    """Nodes finished, evaluations trained and the fused_k of each, from one archive."""
    task = load_population(population).task
    archive = Archive.open(db, read_only=True)
    try:
        run = archive.get_run()
        nodes = archive.nodes(run.run_id)
        keys = {n.proposal_key for n in nodes if n.status is NodeStatus.COMPLETE}
        fused_k: list[int] = []
        for proposal_key in keys:
            key = EvalKey(
                proposal_key=proposal_key,
                task=task.name,
                fidelity=task.fidelity,
                seed=task.seed,
                split=Split.VALIDATION,
            )
            outcome = archive.find_evaluation(key)
            if outcome is not None:
                fused_k.append(int(outcome.metrics.get("fused_k", 1)))
        best = max((n.val_fitness for n in nodes if n.val_fitness is not None), default=None)
    finally:
        archive.close()
    return {
        "nodes_finished": sum(n.status is NodeStatus.COMPLETE for n in nodes),
        "evaluations": len(fused_k),
        "fused_k_counts": dict(sorted(collections.Counter(fused_k).items())),
        "best_val": best,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--population", type=Path, default=ROOT / "populations/presets/offline.toml"
    )
    parser.add_argument("--budget", default="3m")
    parser.add_argument("--fuse", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    args = parser.parse_args()
    budget_min = parse_duration(args.budget) / 60
    text = args.population.read_text()
    rows: dict[int, list[dict[str, Any]]] = {1: [], args.fuse: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for fuse in rows:
                population = Path(tmp) / f"fuse{fuse}.toml"
                population.write_text(with_fuse(text, fuse))
                db = Path(tmp) / f"fuse{fuse}-{r}.db"
                wall = search(population, db, args.budget, Path(tmp) / f"fuse{fuse}-{r}.log")
                row = read(db, population) | {"wall_s": wall}
                row["evals_per_min"] = row["evaluations"] / budget_min
                rows[fuse].append(row)
                print(
                    f"fuse {fuse} run {r}: {row['evaluations']} evaluations "
                    f"({row['evals_per_min']:.1f}/min), {row['nodes_finished']} nodes finished, "
                    f"fused_k {row['fused_k_counts']}, best {row['best_val']}",
                    flush=True,
                )
    mean = {f: statistics.mean(r["evals_per_min"] for r in rs) for f, rs in rows.items()}
    ratio = mean[args.fuse] / mean[1]
    print(
        f"fuse {args.fuse} vs 1: {mean[args.fuse]:.1f} vs {mean[1]:.1f} evaluations/min, "
        f"{ratio:.2f}x"
    )
    report = {
        "machine": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "population": args.population.name,
        "budget": args.budget,
        "repeats": args.repeats,
        "runs": {str(f): rs for f, rs in rows.items()},
        "evals_per_min": {str(f): m for f, m in mean.items()},
        "ratio": ratio,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"cpu_fused_search-{os.cpu_count()}cpu.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
