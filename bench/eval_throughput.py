"""Evaluation throughput on one card: the naive baseline against the fused evaluator.

Naive (bench/naive_eval.py): eager fp32, one job at a time, the evaluator's training step.
Fused (primitives/fused.py): K candidates per training step, stacked weights, bf16 autocast on
CUDA, fused AdamW. Both run the `paper` shape on the in-context-recall task (width 128, batch
128, T = 127) for a fixed number of timed steps after a warm-up, for three sets of 16-layer
arrangements: (mA M)x8, (Mb M)x8 and random three-primitive arrangements (a different
arrangement per fused candidate, as a search would submit them).

Evaluations per GPU-hour = 3600 · steps/s · K / S_eval, with S_eval = tasks · epochs ·
ceil(n_fit / batch) = 6 · 200 · ceil(800 / 128) = 8,400 training steps per paper evaluation
(no early stop; scoring passes and the other tasks' sequence lengths, 255 for selective copying
and 32 for compression and memorization, are not modelled). The ratio is fused / naive.
MFU = 3 · forward FLOPs (primitives.counting.count_flops per sequence · batch, summed over the K
candidates) · steps/s / the card's dense bf16 peak (989 TFLOP/s for H100/H200 SXM), for both
paths (the naive fp32 path is measured against the same bf16 peak).

Parity: the same jobs (task, seeds, split) through ``evaluate_naive`` (fp32, one at a time) and
``evaluate_fused`` (bf16 on CUDA) on a short schedule; per arrangement the naive seed-to-seed
spread (sample std over seeds) is reported beside |mean fused - mean naive|.

Usage: python bench/eval_throughput.py --device cuda --out bench/results
       python bench/eval_throughput.py --device cpu --tiny          (a smoke check)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    import primitives  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from naive_eval import evaluate_naive, naive_step_rate, sync

from primitives.counting import count_flops
from primitives.evaluator import FIDELITIES, EvalJob, Fidelity, _dataset, _model_config, tasks_for
from primitives.fused import _fused_loss, evaluate_fused, fused_models
from primitives.mad import MAD_DATA_SEED, TASK_NAMES
from primitives.model import ModelConfig
from primitives.training import _autocast

BF16_PEAK = {"h100": 989.4e12, "h200": 989.4e12, "a100": 312e12}
PRIMS = ("mA", "M", "Mb")


def _card(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "cpu"


def _peak(card: str) -> float | None:
    low = card.lower()
    return next((v for k, v in BF16_PEAK.items() if k in low), None)


def _tiny_fidelity() -> Fidelity:
    return dataclasses.replace(FIDELITIES["smoke"], name="tiny", n_train=64, n_test=32)


def fused_step_rate(
    cfgs: list[ModelConfig],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch: int,
    steps: int,
    warmup: int,
    device: torch.device,
    bf16: bool,
) -> float:
    """Fused training steps per second (each step trains all len(cfgs) candidates)."""
    model = fused_models(cfgs, list(range(len(cfgs)))).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, fused=device.type == "cuda")
    n = inputs.shape[0]
    order = torch.randperm(n * math.ceil((steps + warmup) * batch / n) + batch) % n
    order = order.to(device)  # (enough rows for every step,)
    model.train()

    def step(i: int) -> None:
        idx = order[i * batch : (i + 1) * batch]  # (batch,)
        with _autocast(device, bf16):
            logits = model(inputs[idx])  # (K, batch, T, V)
        loss, _ = _fused_loss(logits, targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()

    for i in range(warmup):
        step(i)
    sync(device)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    sync(device)
    return steps / (time.perf_counter() - start)


def _fused_with_fallback(cfgs: list[ModelConfig], **kw: object) -> tuple[float, int]:
    """Try K = len(cfgs); on CUDA out-of-memory halve K. Returns (steps/s, K used)."""
    k = len(cfgs)
    while True:
        try:
            return fused_step_rate(cfgs[:k], **kw), k  # type: ignore[arg-type]
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if k == 1:
                raise
            print(f"  out of memory at K={k}; trying K={k // 2}", flush=True)
            k //= 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="smoke-sized shapes (CPU check)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--k-attn", type=int, default=32, help="fused K for (mA M)x8")
    parser.add_argument("--k-mamba", type=int, default=16, help="fused K for (Mb M)x8")
    parser.add_argument("--k-random", type=int, default=16, help="fused K, random arrangements")
    parser.add_argument("--naive-random", type=int, default=2, help="random ones timed naive")
    parser.add_argument("--parity-task", default="memorization", choices=TASK_NAMES)
    parser.add_argument("--parity-epochs", type=int, default=20)
    parser.add_argument("--parity-seeds", type=int, default=3)
    parser.add_argument("--no-parity", action="store_true")
    parser.add_argument("--budget-s", type=float, default=150.0, help="skip parity past this")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    device = torch.device(args.device)
    card = _card(device)
    fid = _tiny_fidelity() if args.tiny else FIDELITIES["paper"]
    bf16 = device.type == "cuda"
    if args.tiny:
        args.steps, args.warmup = min(args.steps, 3), min(args.warmup, 1)
        args.k_attn, args.k_mamba, args.k_random = 4, 3, 4
        args.parity_epochs, args.parity_seeds = 2, 2
    depth = 4 if args.tiny else 16
    task = tasks_for(fid)["in_context_recall"]
    data = _dataset(task, MAD_DATA_SEED)
    inputs, targets = data.train_inputs.to(device), data.train_targets.to(device)  # (n, T)
    batch, seq = min(fid.batch_size, inputs.shape[0]), task.input_len
    n_fit = data.train_inputs.shape[0]
    steps_per_eval = len(TASK_NAMES) * fid.epochs * math.ceil(n_fit / fid.batch_size)
    peak = _peak(card)
    print(
        f"eval throughput on {card} (torch {torch.__version__}), fidelity {fid.name}, "
        f"batch {batch}, T {seq}, S_eval {steps_per_eval} steps, bf16 fused {bf16}",
        flush=True,
    )
    rng = random.Random(0)
    random_arrs = [tuple(rng.choice(PRIMS) for _ in range(depth)) for _ in range(args.k_random)]
    sets = {
        f"(mA M)x{depth // 2}": ([("mA", "M") * (depth // 2)] * args.k_attn, 1),
        f"(Mb M)x{depth // 2}": ([("Mb", "M") * (depth // 2)] * args.k_mamba, 1),
        "random3": (random_arrs, args.naive_random),
    }
    common = {"batch": batch, "steps": args.steps, "warmup": args.warmup, "device": device}
    rows = []
    for label, (arrs, n_naive) in sets.items():
        cfgs = [_model_config(a, fid, task) for a in arrs]
        naive_rates = [naive_step_rate(c, inputs, targets, **common) for c in cfgs[:n_naive]]
        naive = 1.0 / statistics.mean(1.0 / r for r in naive_rates)  # mean step time
        fused, k = _fused_with_fallback(cfgs, inputs=inputs, targets=targets, bf16=bf16, **common)
        flops = [3 * batch * count_flops(c, seq) for c in cfgs]  # per training step
        naive_flops = statistics.mean(flops[:n_naive])
        fused_flops = sum(flops[:k])
        row = {
            "label": label,
            "arrangements": [" ".join(a) for a in arrs[:k]],
            "naive_steps_per_s": naive,
            "fused_steps_per_s": fused,
            "fused_k": k,
            "naive_evals_per_gpu_hour": 3600 * naive / steps_per_eval,
            "fused_evals_per_gpu_hour": 3600 * fused * k / steps_per_eval,
            "ratio": fused * k / naive,
            "naive_mfu": None if peak is None else naive_flops * naive / peak,
            "fused_mfu": None if peak is None else fused_flops * fused / peak,
        }
        rows.append(row)
        mfu = (
            ""
            if peak is None
            else f"  MFU naive {row['naive_mfu']:.2%} fused {row['fused_mfu']:.2%}"
        )
        print(
            f"{label:12s} naive {naive:7.2f} steps/s = {row['naive_evals_per_gpu_hour']:7.2f} "
            f"evals/GPU-h | fused K={k} {fused:7.2f} steps/s = "
            f"{row['fused_evals_per_gpu_hour']:8.2f} evals/GPU-h | ratio {row['ratio']:.1f}x"
            + mfu,
            flush=True,
        )

    parity: list[dict[str, object]] = []
    parity_fid = dataclasses.replace(fid, epochs=args.parity_epochs)
    if args.no_parity or time.perf_counter() - t_start > args.budget_s:
        print("parity skipped" + ("" if args.no_parity else " (time budget)"))
    else:
        labels = list(sets)
        arrs = [sets[labels[0]][0][0], sets[labels[1]][0][0], random_arrs[0]]
        seeds = list(range(args.parity_seeds))
        jobs = [
            EvalJob(
                layers=a,
                task=args.parity_task,
                fidelity=parity_fid,
                seed=s,
                split="test",
                device=args.device,
            )
            for a in arrs
            for s in seeds
        ]
        t0 = time.perf_counter()
        naive_res = evaluate_naive(jobs)
        t1 = time.perf_counter()
        fused_res = evaluate_fused(jobs)
        t2 = time.perf_counter()
        print(
            f"parity: {args.parity_task}, {args.parity_epochs} epochs, seeds {seeds}; "
            f"naive {t1 - t0:.1f}s, fused {t2 - t1:.1f}s",
            flush=True,
        )
        for j, (label, a) in enumerate(zip(["(mA M)", "(Mb M)", "random3"], arrs, strict=True)):
            nr = naive_res[j * len(seeds) : (j + 1) * len(seeds)]
            fr = fused_res[j * len(seeds) : (j + 1) * len(seeds)]
            ns = [r.score for r in nr]
            fs = [r.score for r in fr]
            ok = all(v is not None for v in ns + fs)
            spread = statistics.stdev(ns) if ok and len(ns) > 1 else None  # type: ignore[arg-type]
            gap = abs(statistics.mean(fs) - statistics.mean(ns)) if ok else None  # type: ignore[arg-type]
            diffs = [abs(f - n) for f, n in zip(fs, ns, strict=True)] if ok else None  # type: ignore[operator]
            entry = {
                "label": label,
                "layers": " ".join(a),
                "naive_scores": ns,
                "fused_scores": fs,
                "naive_status": [r.status for r in nr],
                "fused_status": [r.status for r in fr],
                "naive_seed_spread_std": spread,
                "mean_gap": gap,
                "per_seed_abs_diff": diffs,
                "within_spread": None if spread is None or gap is None else gap <= spread,
            }
            parity.append(entry)
            print(
                f"  {label:8s} naive {ns} fused {fs} spread(std) {spread} |gap| {gap}",
                flush=True,
            )

    report = {
        "card": card,
        "device": args.device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "fidelity": fid.name,
        "batch": batch,
        "seq_len": seq,
        "steps_timed": args.steps,
        "warmup": args.warmup,
        "steps_per_eval": steps_per_eval,
        "formula": "evals/GPU-h = 3600 * steps_per_s * K / steps_per_eval",
        "bf16_peak_flops": peak,
        "fused_bf16": bf16,
        "mamba_ssm": _mamba_ssm(),
        "throughput": rows,
        "parity_task": args.parity_task,
        "parity_epochs": args.parity_epochs,
        "parity": parity,
        "total_wall_s": time.perf_counter() - t_start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-tiny" if args.tiny else ""
    path = args.out / f"eval_throughput{suffix}-{_slug(card)}.json"
    path.write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    print(f"wrote {path} ({report['total_wall_s']:.1f}s)")
    return 0


def _mamba_ssm() -> bool:
    from primitives.mamba2 import mamba_ssm_available

    return bool(mamba_ssm_available())


if __name__ == "__main__":
    raise SystemExit(main())
