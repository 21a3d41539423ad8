"""MAD at `paper` fidelity for three reference arrangements: scores per task and wall time.

Arrangements (16 layers each): (mA M)x8, (Mb M)x8 and the three-primitive mix (mA M Mb M)x4,
trained and scored with `primitives.evaluator.evaluate` (split=test, seed 0 by default). Prints a
table per arrangement and writes bench/results/mad_paper-<card>.json with the card name, torch
version, fidelity and wall time per arrangement.

`--max-minutes` bounds the whole run: each arrangement gets an even share of the time left as its
evaluator time limit, so one that runs out stops at an epoch boundary with status "timeout" (its
finished tasks are kept); arrangements that could not start are listed as skipped. `--epochs`
overrides the fidelity's epoch count for a shorter run (recorded in the JSON).

Usage: python bench/mad_paper.py --device cuda --out bench/results [--max-minutes 8]
       python bench/mad_paper.py --fidelity smoke --device cpu      (a quick check on a CPU)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import re
import sys
import time
from pathlib import Path

import torch

try:
    import primitives  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from primitives.evaluator import EVALUATOR_VERSION, FIDELITIES, EvalJob, EvalResult, evaluate
from primitives.mad import TASK_NAMES

ARRANGEMENTS: dict[str, tuple[str, ...]] = {
    "(mA M)x8": ("mA", "M") * 8,
    "(Mb M)x8": ("Mb", "M") * 8,
    "(mA M Mb M)x4": ("mA", "M", "Mb", "M") * 4,
}
MIN_START_S = 5.0  # don't start an arrangement with less time than this left


def _card(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine() or "cpu"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "cpu"


def _table(label: str, result: EvalResult) -> str:
    lines = [
        f"{label}  status={result.status}  score={_fmt(result.score)}  "
        f"wall={result.wall_s:.1f}s  params={result.n_params}"
        + (f"  error={result.error}" if result.error else ""),
        f"  {'task':26s} {'macro':>6s} {'token':>6s} {'loss':>7s} {'epochs':>6s} {'wall_s':>7s}",
    ]
    for task in TASK_NAMES:
        m = result.per_task.get(task)
        if m is None:
            lines.append(f"  {task:26s} {'-':>6s}")
            continue
        lines.append(
            f"  {task:26s} {m['macro_acc']:6.3f} {m['token_acc']:6.3f} {m['final_loss']:7.3f} "
            f"{m['n_epochs']:6.0f} {m['wall_s']:7.1f}"
        )
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--fidelity", default="paper", choices=sorted(FIDELITIES))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--max-minutes", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test", choices=("test", "validation"))
    parser.add_argument("--epochs", type=int, default=None, help="override the fidelity's epochs")
    parser.add_argument("--only", nargs="*", default=None, help="labels of arrangements to run")
    args = parser.parse_args(argv)

    fidelity = FIDELITIES[args.fidelity]
    if args.epochs is not None:
        fidelity = dataclasses.replace(fidelity, epochs=args.epochs)
    card = _card(args.device)
    start = time.perf_counter()
    deadline = start + 60.0 * args.max_minutes
    print(
        f"MAD {args.fidelity} on {card} (torch {torch.__version__}), budget {args.max_minutes} min"
    )

    runs: list[dict[str, object]] = []
    skipped: list[str] = []
    chosen = {k: v for k, v in ARRANGEMENTS.items() if args.only is None or k in args.only}
    for i, (label, layers) in enumerate(chosen.items()):
        left = deadline - time.perf_counter()
        if left < MIN_START_S:
            skipped.append(label)
            continue
        share = left / (len(chosen) - i)  # an even share of what is left, so every one starts
        job = EvalJob(
            layers=layers,
            task="mad",
            fidelity=fidelity,
            seed=args.seed,
            split=args.split,
            device=args.device,
        )
        (result,) = evaluate([job], time_limit_s=share)
        print(_table(label, result), flush=True)
        runs.append(
            {
                "label": label,
                "layers": " ".join(layers),
                "status": result.status,
                "score": result.score,
                "wall_s": result.wall_s,
                "n_params": result.n_params,
                "peak_mem_mb": result.peak_mem_mb,
                "error": result.error,
                "per_task": result.per_task,
            }
        )
    if skipped:
        print(f"skipped (out of time): {', '.join(skipped)}")

    report = {
        "card": card,
        "device": args.device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "evaluator_version": EVALUATOR_VERSION,
        "fidelity": dataclasses.asdict(fidelity),
        "seed": args.seed,
        "split": args.split,
        "max_minutes": args.max_minutes,
        "total_wall_s": time.perf_counter() - start,
        "runs": runs,
        "skipped": skipped,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.fidelity == "paper" else f"-{args.fidelity}"
    path = args.out / f"mad_paper{suffix}-{_slug(card)}.json"
    path.write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
