"""Is the 800-row MAD proxy's low attention recall a property of the data budget, not a bug?

Trains (mA M)x8 on in-context recall at `paper` fidelity with MAD-lab's default 12,800 training
rows instead of the proxy's 800 (everything else unchanged), and (for comparison, same run) with
800 rows. A correct attention stack should approach 1.0 with the larger set.
Usage: python bench/mad_data_scale.py --device cuda --out bench/results [--max-minutes 6]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from primitives.evaluator import FIDELITIES, EvalJob, EvalProgress, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--max-minutes", type=float, default=6.0)
    parser.add_argument("--rows", type=int, nargs="+", default=[12800, 800])
    args = parser.parse_args()
    card = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.machine()
    results = []
    deadline = time.monotonic() + args.max_minutes * 60
    layers = ("mA", "M") * 8
    for rows in args.rows:
        left = deadline - time.monotonic()
        if left <= 10:
            break
        fidelity = dataclasses.replace(FIDELITIES["paper"], name=f"paper-{rows}rows", n_train=rows)
        job = EvalJob(
            layers=layers,
            task="in_context_recall",
            fidelity=fidelity,
            seed=0,
            split="test",
            device=args.device,
        )
        curve: list[tuple[int, float | None]] = []

        def log(
            p: EvalProgress, curve: list[tuple[int, float | None]] = curve, rows: int = rows
        ) -> None:
            curve.append((p.epoch, p.macro_acc))
            print(f"rows {rows} epoch {p.epoch}/{p.n_epochs} macro_acc {p.macro_acc}", flush=True)

        (result,) = evaluate([job], time_limit_s=left, progress=log)
        metrics = result.per_task.get("in_context_recall", {})
        row = {
            "rows": rows,
            "status": result.status,
            "macro_acc": metrics.get("macro_acc"),
            "n_epochs": metrics.get("n_epochs"),
            "early_stopped": metrics.get("early_stopped"),
            "final_loss": metrics.get("final_loss"),
            "wall_s": round(result.wall_s, 1),
            "curve": curve,  # (epoch, score-set macro accuracy): survives a timeout
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    slug = card.lower().replace(" ", "-")
    payload = {"card": card, "torch": torch.__version__, "arrangement": "(mA M)x8",
               "task": "in_context_recall", "results": results}  # fmt: skip
    (args.out / f"mad_data_scale-{slug}.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
