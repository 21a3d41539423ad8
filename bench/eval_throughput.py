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
spread (sample std over seeds) is reported beside |mean fused - mean naive|; they agree when the
gap is at most max(spread, 0.005). Default: memorization, 6 epochs (before most arrangements
converge), seeds 0-2, split test.

Phases, in this order, each written to the JSON as it finishes (a killed run keeps what is done):
eager throughput for the three sets; parity; then, while ``--budget-s`` leaves time,
``torch.compile``-d stacked blocks (FusedArrangements.compile_blocks) for (mA M) and (Mb M).
Mamba2 uses mamba-ssm's Triton kernel when it imports, else the pure-PyTorch chunked SSD
(recorded as ``mamba_ssm``).

Usage: python bench/eval_throughput.py --device cuda --out bench/results
       python bench/eval_throughput.py --device cpu --tiny          (a smoke check)
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

try:
    import primitives  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from naive_eval import evaluate_naive, naive_step_rate, timed_rate

from primitives.counting import count_flops
from primitives.evaluator import FIDELITIES, EvalJob, Fidelity, _dataset, _model_config, tasks_for
from primitives.fused import _fused_loss, evaluate_fused, fused_models
from primitives.mad import MAD_DATA_SEED, TASK_NAMES, MadTask
from primitives.model import ModelConfig
from primitives.training import _autocast

BF16_PEAK = {"h100": 989.4e12, "h200": 989.4e12, "a100": 312e12}
PRIMS = ("mA", "M", "Mb")
PARITY_FLOOR = 0.005  # scores that agree this closely agree, whatever the spread
COMPILE_MIN_S = 45.0  # start a compiled measurement only with this much budget left


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
    compiled: bool = False,
) -> float:
    """Fused training steps per second (each step trains all len(cfgs) candidates)."""
    model = fused_models(cfgs, list(range(len(cfgs)))).to(device).compile_blocks(compiled)
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

    return timed_rate(step, warmup=warmup, steps=steps, device=device)


def _fused_with_fallback(cfgs: list[ModelConfig], **kw: object) -> tuple[float, int]:
    """Try K = len(cfgs); on CUDA out-of-memory halve K. Returns (steps/s, K used)."""
    k = len(cfgs)
    while True:
        try:
            return fused_step_rate(cfgs[:k], **kw), k  # type: ignore[arg-type]
        except torch.cuda.OutOfMemoryError:
            if k == 1:
                raise
        # outside the handler, so the failed attempt's tensors are released
        gc.collect()
        torch.cuda.empty_cache()
        print(f"  out of memory at K={k}; trying K={k // 2}", flush=True)
        k //= 2


def _throughput_row(
    label: str,
    arrs: list[tuple[str, ...]],
    n_naive: int,
    *,
    fid: Fidelity,
    task: MadTask,
    data: tuple[torch.Tensor, torch.Tensor],
    common: dict[str, Any],
    steps_per_eval: int,
    peak: float | None,
    bf16: bool,
    compiled: bool,
    naive: float | None = None,
) -> dict[str, Any]:
    """Time naive (unless given) and fused training steps for one arrangement set."""
    inputs, targets = data
    cfgs = [_model_config(a, fid, task) for a in arrs]
    batch, seq = common["batch"], task.input_len
    if naive is None:
        rates = [naive_step_rate(c, inputs, targets, **common) for c in cfgs[:n_naive]]
        naive = 1.0 / statistics.mean(1.0 / r for r in rates)  # from the mean step time
    assert naive is not None
    fused, k = _fused_with_fallback(
        cfgs, inputs=inputs, targets=targets, bf16=bf16, compiled=compiled, **common
    )
    flops = [3 * batch * count_flops(c, seq) for c in cfgs]  # per training step
    naive_flops, fused_flops = statistics.mean(flops[:n_naive]), sum(flops[:k])
    row: dict[str, Any] = {
        "label": label,
        "compiled": compiled,
        "steps_timed": common["steps"],
        "arrangements": sorted({" ".join(a) for a in arrs[:k]}),
        "naive_steps_per_s": naive,
        "fused_steps_per_s": fused,
        "fused_k": k,
        "naive_evals_per_gpu_hour": 3600 * naive / steps_per_eval,
        "fused_evals_per_gpu_hour": 3600 * fused * k / steps_per_eval,
        "ratio": fused * k / naive,
        "naive_mfu": None if peak is None else naive_flops * naive / peak,
        "fused_mfu": None if peak is None else fused_flops * fused / peak,
    }
    mfu = (
        "" if peak is None else f"  MFU naive {row['naive_mfu']:.2%} fused {row['fused_mfu']:.2%}"
    )
    print(
        f"{label:12s} naive {naive:7.2f} steps/s = {row['naive_evals_per_gpu_hour']:7.2f} "
        f"evals/GPU-h | fused{' compiled' if compiled else ''} K={k} {fused:7.2f} steps/s = "
        f"{row['fused_evals_per_gpu_hour']:8.2f} evals/GPU-h | ratio {row['ratio']:.1f}x" + mfu,
        flush=True,
    )
    return row


def _parity(
    arrs: list[tuple[str, ...]],
    labels: list[str],
    *,
    task: str,
    fid: Fidelity,
    seeds: list[int],
    device: str,
) -> list[dict[str, Any]]:
    """Naive (fp32, one at a time) vs fused (bf16 on CUDA) scores of the same jobs."""
    jobs = [
        EvalJob(layers=a, task=task, fidelity=fid, seed=s, split="test", device=device)
        for a in arrs
        for s in seeds
    ]
    t0 = time.perf_counter()
    naive_res = evaluate_naive(jobs)
    t1 = time.perf_counter()
    fused_res = evaluate_fused(jobs)
    t2 = time.perf_counter()
    print(
        f"parity: {task}, {fid.epochs} epochs, seeds {seeds}; naive {t1 - t0:.1f}s, "
        f"fused {t2 - t1:.1f}s",
        flush=True,
    )
    out = []
    n = len(seeds)
    for j, (label, a) in enumerate(zip(labels, arrs, strict=True)):
        nr, fr = naive_res[j * n : (j + 1) * n], fused_res[j * n : (j + 1) * n]
        ns = [r.score for r in nr]
        fs = [r.score for r in fr]
        entry: dict[str, Any] = {
            "label": label,
            "layers": " ".join(a),
            "naive_scores": ns,
            "fused_scores": fs,
            "naive_status": [r.status for r in nr],
            "fused_status": [r.status for r in fr],
            "naive_final_loss": [r.per_task.get(task, {}).get("final_loss") for r in nr],
            "fused_final_loss": [r.per_task.get(task, {}).get("final_loss") for r in fr],
        }
        if all(v is not None for v in ns + fs) and n > 1:
            nv = [float(v) for v in ns if v is not None]
            fv = [float(v) for v in fs if v is not None]
            spread = statistics.stdev(nv)  # naive seed-to-seed spread (sample std)
            gap = abs(statistics.mean(fv) - statistics.mean(nv))
            entry |= {
                "naive_seed_spread_std": spread,
                "mean_gap": gap,
                "per_seed_abs_diff": [abs(f - v) for f, v in zip(fv, nv, strict=True)],
                "within_spread": gap <= max(spread, PARITY_FLOOR),
            }
        out.append(entry)
        print(
            f"  {label:8s} naive {_r(ns)} fused {_r(fs)} spread(std) "
            f"{_r([entry.get('naive_seed_spread_std')])} |gap| {_r([entry.get('mean_gap')])}",
            flush=True,
        )
    return out


def _guarded(label: str, *args: Any, **kw: Any) -> dict[str, Any]:
    """:func:`_throughput_row`, with a failure recorded (one line), not raised."""
    try:
        return _throughput_row(label, *args, **kw)
    except Exception as exc:
        text = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"{label}: {type(exc).__name__}: {text}", flush=True)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"label": label, "error": f"{type(exc).__name__}: {text}"}


def _r(xs: list[Any]) -> str:
    return "[" + ", ".join("-" if x is None else f"{x:.4f}" for x in xs) + "]"


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
    parser.add_argument("--parity-epochs", type=int, default=6)
    parser.add_argument("--parity-seeds", type=int, default=3)
    parser.add_argument("--no-parity", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--compile-steps", type=int, default=10, help="timed compiled steps")
    parser.add_argument("--budget-s", type=float, default=160.0, help="whole-run time budget")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()

    def left() -> float:
        return float(args.budget_s) - (time.perf_counter() - t_start)

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
    batch = min(fid.batch_size, inputs.shape[0])
    n_fit = data.train_inputs.shape[0]
    steps_per_eval = len(TASK_NAMES) * fid.epochs * math.ceil(n_fit / fid.batch_size)
    peak = _peak(card)
    print(
        f"eval throughput on {card} (torch {torch.__version__}), fidelity {fid.name}, "
        f"batch {batch}, T {task.input_len}, S_eval {steps_per_eval} steps, fused bf16 {bf16}, "
        f"mamba-ssm {_mamba_ssm()}",
        flush=True,
    )
    rng = random.Random(0)
    random_arrs = [tuple(rng.choice(PRIMS) for _ in range(depth)) for _ in range(args.k_random)]
    half = depth // 2
    sets: dict[str, tuple[list[tuple[str, ...]], int]] = {
        f"(mA M)x{half}": ([("mA", "M") * half] * args.k_attn, 1),
        f"(Mb M)x{half}": ([("Mb", "M") * half] * args.k_mamba, 1),
        "random3": (random_arrs, args.naive_random),
    }
    report: dict[str, Any] = {
        "card": card,
        "device": args.device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "fidelity": fid.name,
        "batch": batch,
        "seq_len": task.input_len,
        "steps_timed": args.steps,
        "warmup": args.warmup,
        "steps_per_eval": steps_per_eval,
        "formula": "evals/GPU-h = 3600 * steps_per_s * K / steps_per_eval",
        "bf16_peak_flops": peak,
        "fused_bf16": bf16,
        "mamba_ssm": _mamba_ssm(),
        "throughput": [],
        "parity": [],
        "skipped": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"eval_throughput{'-tiny' if args.tiny else ''}-{_slug(card)}.json"

    def write() -> None:
        report["total_wall_s"] = time.perf_counter() - t_start
        path.write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")

    common = {"batch": batch, "steps": args.steps, "warmup": args.warmup, "device": device}
    kw: dict[str, Any] = {
        "fid": fid,
        "task": task,
        "data": (inputs, targets),
        "common": common,
        "steps_per_eval": steps_per_eval,
        "peak": peak,
        "bf16": bf16,
    }
    naive_rates: dict[str, float] = {}
    for label, (arrs, n_naive) in sets.items():
        row = _guarded(label, arrs, n_naive, compiled=False, **kw)
        if "naive_steps_per_s" in row:
            naive_rates[label] = row["naive_steps_per_s"]
        report["throughput"].append(row)
        write()

    labels = list(sets)
    if args.no_parity or left() < 40:
        report["skipped"].append("parity")
        print("parity skipped" + ("" if args.no_parity else " (time budget)"), flush=True)
    else:
        report["parity_task"], report["parity_epochs"] = args.parity_task, args.parity_epochs
        report["parity_rule"] = f"|mean fused - mean naive| <= max(naive std, {PARITY_FLOOR})"
        report["parity"] = _parity(
            [sets[labels[0]][0][0], sets[labels[1]][0][0], random_arrs[0]],
            ["(mA M)", "(Mb M)", "random3"],
            task=args.parity_task,
            fid=dataclasses.replace(fid, epochs=args.parity_epochs),
            seeds=list(range(args.parity_seeds)),
            device=args.device,
        )
        write()

    for label in labels[:2]:
        if args.no_compile or left() < COMPILE_MIN_S or label not in naive_rates:
            report["skipped"].append(f"compiled {label}")
            print(f"compiled {label} skipped", flush=True)
            continue
        arrs, n_naive = sets[label]
        naive = naive_rates[label]
        kw["common"] = common | {"steps": min(args.steps, args.compile_steps)}
        row = _guarded(label, arrs, n_naive, compiled=True, naive=naive, **kw)
        report["throughput"].append(row)
        write()
    write()
    print(f"wrote {path} ({report['total_wall_s']:.1f}s)")
    return 0


def _mamba_ssm() -> bool:
    from primitives.kernels.mamba_ssm import mamba_ssm_available

    return bool(mamba_ssm_available())


if __name__ == "__main__":
    raise SystemExit(main())
