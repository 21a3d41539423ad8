"""Evaluation throughput on one card: the naive baseline against the fused evaluator.

Naive (bench/naive_eval.py): eager fp32, one job at a time, the evaluator's training step.
Fused (primitives/fused.py): K candidates per training step, stacked weights, bf16 autocast on
CUDA, fused AdamW, optionally ``torch.compile``-d blocks (``--modes compiled``) and each step
replayed from CUDA graphs (``--modes graphed``, compiled too). Both run the `paper` shape on the
in-context-recall task (width 128, batch 128, T = 127) for three sets of 16-layer arrangements:
(mA M)x8, (Mb M)x8 and random three-primitive arrangements (a different arrangement per fused
candidate, as a search would submit them). Each rate is the median of ``--repeats`` back-to-back
windows of ``--steps`` timed steps after a warm-up; the windows' slowest and fastest rates are
printed beside it and kept in the JSON, and the ratio's range pairs the slowest fused window with
the fastest naive one and the other way round. The naive loop is bound by the host's kernel
launches, so it moves from machine to machine (30 to 67 steps/s for (mA M)x8 on lent H100 and H200
machines, runs log) and within one run; the fused step is bound by the card. So the naive child
also times the host's tiny in-place ops on the device (``host_op_us``, printed as "host op"):
the naive step is hundreds of small kernels behind Python dispatch, and a slow host shows there.

Evaluations per GPU-hour = 3600 · steps/s · K / S_eval, with S_eval = tasks · epochs ·
ceil(n_fit / batch) = 6 · 200 · ceil(800 / 128) = 8,400 training steps per paper evaluation
(no early stop; scoring passes and the other tasks' sequence lengths, 255 for selective copying
and 32 for compression and memorization, are not modelled). The ratio is fused / naive.
MFU = 3 · forward FLOPs (primitives.counting.count_flops per sequence · batch, summed over the K
candidates) · steps/s / the card's dense bf16 peak (989 TFLOP/s for H100/H200 SXM), for both
paths (the naive fp32 path is measured against the same bf16 peak).

Parity: the same jobs (task, seeds, split) through ``evaluate_naive`` (fp32, one at a time) and
``evaluate_fused`` (bf16 on CUDA, compiled blocks when the throughput rows were) on a short
schedule; per arrangement the naive seed-to-seed spread (sample std over seeds) is reported
beside |mean fused - mean naive|; they agree when the gap is at most max(spread, 0.005). The
final training losses get the same spread and gap (``naive_loss_spread_std``,
``loss_mean_gap``): on a task whose scores saturate they are the finer gauge. The fused side
trains all the parity jobs together, seeds included (each candidate on its own seed's data).
The two halves run in separate children (each bounded by ``--parity-limit-s``), so a fused half
that runs out of time on a cold compile cache keeps the naive half's scores in the JSON.
``--parity-naive-from REPORT`` takes the naive half from an earlier report of the same jobs
instead of training it again (fp32, one job at a time: its scores have repeated exactly from
run to run and from H100 to H200), so the run's time goes to the fused half; the report's file
name and card are recorded as ``parity_naive_from``.

Every measurement runs in its own child process (``--child SPEC``), so an out-of-memory failure
or a hung compile cannot poison the next one; the parent retries a fused measurement that ran
out of memory with half the K, bounds each child by the time left, and writes the JSON after
each row. Children print straight to the console, so a run killed from outside keeps its log.
The naive Mamba2 uses mamba-ssm's Triton kernel when it imports, else the pure-PyTorch chunked
SSD (recorded as ``mamba_ssm``); the fused one runs sequences of up to 128 tokens as
``ssd_one_chunk`` and longer ones like the naive path.

Usage: python bench/eval_throughput.py --device cuda --out bench/results
       python bench/eval_throughput.py --device cpu --tiny          (a smoke check)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

try:
    import primitives  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from naive_eval import evaluate_naive, host_op_us, naive_step_rate, timed_rates

from primitives.counting import count_flops
from primitives.evaluator import FIDELITIES, EvalJob, Fidelity, _dataset, _model_config, tasks_for
from primitives.fused import evaluate_fused, fused_models, fused_trainer
from primitives.mad import MAD_DATA_SEED, TASK_NAMES
from primitives.model import ModelConfig

BF16_PEAK = {"h100": 989.4e12, "h200": 989.4e12, "a100": 312e12}
PRIMS = ("mA", "M", "Mb")
PARITY_FLOOR = 0.005  # scores that agree this closely agree, whatever the spread


def _card(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def _host_cpu() -> str:
    """The host CPU's model name (the naive loop is bound by it), from /proc/cpuinfo on Linux."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "cpu"


def _peak(card: str) -> float | None:
    low = card.lower()
    return next((v for k, v in BF16_PEAK.items() if k in low), None)


def _tiny_fidelity() -> Fidelity:
    return dataclasses.replace(FIDELITIES["smoke"], name="tiny", n_train=64, n_test=32)


def _mamba_ssm() -> bool:
    from primitives.kernels.mamba_ssm import mamba_ssm_available

    return bool(mamba_ssm_available())


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
    graphed: bool = False,
    repeats: int = 1,
) -> list[float]:
    """Fused training steps per second (each step trains all len(cfgs) candidates), in each of
    ``repeats`` windows of ``steps`` steps (:func:`naive_eval.timed_rates`); ``graphed``
    replays the steps from CUDA graphs (:class:`primitives.fused.GraphedTrainStep`, whose eager
    warm-up steps fall in the warm-up)."""
    model = fused_models(cfgs, list(range(len(cfgs)))).to(device).compile_blocks(compiled)
    _, train_step = fused_trainer(model, lr=5e-4, weight_decay=0.0, bf16=bf16, cuda_graph=graphed)
    n = inputs.shape[0]
    order = torch.randperm(n * math.ceil((steps * repeats + warmup) * batch / n) + batch) % n
    order = order.to(device)  # (enough rows for every step,)
    model.train()

    def step(i: int) -> None:
        idx = order[i * batch : (i + 1) * batch]  # (batch,)
        train_step(inputs[idx], targets[idx])

    return timed_rates(step, warmup=warmup, steps=steps, device=device, repeats=repeats)


# ---------------------------------------------------------------------------------------------
# The shared setting: what the parent and every child agree on.


@dataclasses.dataclass(frozen=True)
class Setting:
    device: torch.device
    tiny: bool
    steps: int
    warmup: int
    repeats: int
    k: dict[str, int]
    naive_random: int

    @property
    def fid(self) -> Fidelity:
        return _tiny_fidelity() if self.tiny else FIDELITIES["paper"]

    @property
    def bf16(self) -> bool:
        return self.device.type == "cuda"

    def sets(self) -> dict[str, list[tuple[str, ...]]]:
        """The arrangement sets, the fused candidates of each (K of them)."""
        depth = 4 if self.tiny else 16
        half = depth // 2
        return {
            f"(mA M)x{half}": [("mA", "M") * half] * self.k["attn"],
            f"(Mb M)x{half}": [("Mb", "M") * half] * self.k["mamba"],
            "random3": random_arrangements(self.k["random3"], depth),
        }


def random_arrangements(k: int, depth: int) -> list[tuple[str, ...]]:
    """The random3 set: k arrangements of ``depth`` layers, each layer mA, M or Mb uniformly
    (seed 0), a different arrangement per fused candidate, as a search would submit them."""
    rng = random.Random(0)
    return [tuple(rng.choice(PRIMS) for _ in range(depth)) for _ in range(k)]


def _data(st: Setting) -> tuple[Any, torch.Tensor, torch.Tensor]:
    task = tasks_for(st.fid)["in_context_recall"]
    data = _dataset(task, MAD_DATA_SEED)
    return task, data.train_inputs.to(st.device), data.train_targets.to(st.device)  # (n, T)


def _flops(cfg: ModelConfig, batch: int, seq: int) -> float:
    return 3.0 * batch * count_flops(cfg, seq)  # per training step


# ---------------------------------------------------------------------------------------------
# Children: one measurement each, answered as JSON in the file named by --result.


def _child(st: Setting, spec: dict[str, Any]) -> dict[str, Any]:
    if spec["what"] == "parity":
        return {"results": _parity_half(st, spec)}
    arrs = st.sets()[spec["set"]][: spec.get("k", 1)]
    task, inputs, targets = _data(st)
    cfgs = [_model_config(a, st.fid, task) for a in arrs]
    batch = min(st.fid.batch_size, inputs.shape[0])
    common = {
        "batch": batch,
        "steps": st.steps,
        "warmup": st.warmup,
        "device": st.device,
        "repeats": st.repeats,
    }
    seq = task.input_len
    if spec["what"] == "naive":
        n = spec["n"]
        op_us = host_op_us(st.device)
        per_cfg = [naive_step_rate(c, inputs, targets, **common) for c in cfgs[:n]]
        # window w's rate over the n models, from their mean step time
        windows = [1.0 / statistics.mean(1.0 / r for r in w) for w in zip(*per_cfg, strict=True)]
        flops = statistics.mean(_flops(c, batch, seq) for c in cfgs[:n])
        return {
            "steps_per_s": statistics.median(windows),
            "windows": windows,
            "flops_per_step": flops,
            "n_timed": n,
            "host_op_us": op_us,
        }
    if spec["what"] == "fused":
        t0 = time.perf_counter()
        windows = fused_step_rate(
            cfgs,
            inputs,
            targets,
            bf16=st.bf16,
            compiled=spec["compiled"],
            graphed=spec.get("graphed", False),
            **common,
        )
        peak_mb = torch.cuda.max_memory_allocated() / 2**20 if st.device.type == "cuda" else None
        return {
            "steps_per_s": statistics.median(windows),
            "windows": windows,
            "flops_per_step": sum(_flops(c, batch, seq) for c in cfgs),
            "k": len(cfgs),
            "wall_s_incl_compile": time.perf_counter() - t0,
            "peak_mem_mb": peak_mb,
            "arrangements": sorted({" ".join(a) for a in arrs}),
        }
    raise ValueError(f"unknown child measurement {spec['what']!r}")


def _parity_jobs(st: Setting, spec: dict[str, Any]) -> tuple[list[str], list[EvalJob]]:
    """The parity sets' labels and their jobs: the first arrangement of each set, every seed."""
    sets = st.sets()
    fid = dataclasses.replace(st.fid, epochs=spec["epochs"])
    jobs = [
        EvalJob(layers=a[0], task=spec["task"], fidelity=fid, seed=s, split="test",
                device=str(st.device))
        for a in sets.values()
        for s in range(spec["seeds"])
    ]  # fmt: skip
    return list(sets), jobs


def _parity_half(st: Setting, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """One half of the parity check in a child: the naive (fp32, one at a time) or the fused
    (bf16 on CUDA) training of the parity jobs, each result as status, score, error and final
    loss. The halves run in separate children, so a half that runs out of time keeps the
    other's results."""
    _, jobs = _parity_jobs(st, spec)
    t0 = time.perf_counter()
    if spec["half"] == "naive":
        results = []
        for job in jobs:  # one at a time, each printed (a killed run keeps them in the log)
            (res,) = evaluate_naive([job])
            results.append(res)
            print(f"naive {' '.join(job.layers)} seed {job.seed}: {res.status} {res.score}",
                  flush=True)  # fmt: skip
    else:
        results = evaluate_fused(
            jobs, compile_blocks=spec["compiled"], cuda_graph=spec.get("graphed", False)
        )
    mode = f" {_mode(spec)}" if spec["half"] == "fused" and spec["compiled"] else ""
    print(f"parity {spec['half']}{mode}: {time.perf_counter() - t0:.1f}s", flush=True)
    return [
        {
            "status": r.status,
            "score": r.score,
            "error": r.error,
            "final_loss": r.per_task.get(spec["task"], {}).get("final_loss"),
        }
        for r in results
    ]


def naive_parity_from(
    path: Path, st: Setting, spec: dict[str, Any], labels: list[str], jobs: list[EvalJob]
) -> dict[str, Any]:
    """The naive half of parity, as :func:`_parity` takes it, from an earlier report's parity
    table. Raises ValueError naming what does not match this run's jobs (fidelity, task,
    epochs, an arrangement, fewer finished seeds)."""
    where = f"--parity-naive-from {path}"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{where}: not a readable JSON report ({_first_line(exc)})") from exc
    want = {"fidelity": st.fid.name, "parity_task": spec["task"], "parity_epochs": spec["epochs"]}
    for key, value in want.items():
        if old.get(key) != value:
            raise ValueError(f"{where}: its {key} is {old.get(key)!r}, this run's is {value!r}")
    entries = {e.get("label"): e for e in old.get("parity", [])}
    n = spec["seeds"]  # seeds 0 .. n-1, per label
    results = []
    for j, label in enumerate(labels):
        layers = " ".join(jobs[j * n].layers)
        entry = entries.get(label)
        if entry is None or entry.get("layers") != layers:
            raise ValueError(f"{where}: no naive parity of {label} ({layers})")
        columns = [
            entry.get(c) or [] for c in ("naive_status", "naive_scores", "naive_final_loss")
        ]
        if len({len(c) for c in columns}) != 1:
            raise ValueError(
                f"{where}: {label}'s naive statuses, scores and losses differ in length"
            )
        rows = list(zip(*columns, strict=True))
        if len(rows) < n or any(status is None for status, _, _ in rows[:n]):
            finished = sum(status is not None for status, _, _ in rows)
            raise ValueError(f"{where}: {label} has {finished} finished naive seeds, not {n}")
        results += [
            {"status": status, "score": score, "error": None, "final_loss": loss}
            for status, score, loss in rows[:n]
        ]
    return {"results": results, "from": f"{path.name} ({old.get('card')})"}


def _parity(
    labels: list[str],
    jobs: list[EvalJob],
    naive: dict[str, Any],
    fused: dict[str, Any],
) -> list[dict[str, Any]]:
    """The parity table from the halves' answers (jobs as :func:`_parity_jobs` lists them, the
    same number of seeds per label); a half that failed leaves its columns empty and its error
    in every entry."""
    half_errors = {
        f"{name}_error": res["error"] for name, res in (("naive", naive), ("fused", fused))
        if "error" in res
    }  # fmt: skip
    blank = [{"status": None, "score": None, "error": None, "final_loss": None}] * len(jobs)
    naive_res, fused_res = naive.get("results", blank), fused.get("results", blank)
    out = []
    n = len(jobs) // len(labels)  # seeds per label
    for j, label in enumerate(labels):
        nr, fr = naive_res[j * n : (j + 1) * n], fused_res[j * n : (j + 1) * n]
        ns = [r["score"] for r in nr]
        fs = [r["score"] for r in fr]
        entry: dict[str, Any] = {
            "label": label,
            "layers": " ".join(jobs[j * n].layers),
            "naive_scores": ns,
            "fused_scores": fs,
            "naive_status": [r["status"] for r in nr],
            "fused_status": [r["status"] for r in fr],
            "fused_errors": [r["error"] for r in fr if r["error"]],
            "naive_final_loss": [r["final_loss"] for r in nr],
            "fused_final_loss": [r["final_loss"] for r in fr],
            **half_errors,
        }
        losses = entry["naive_final_loss"] + entry["fused_final_loss"]
        if all(v is not None for v in losses) and n > 1:  # a finer gauge than saturated scores
            nl, fl = entry["naive_final_loss"], entry["fused_final_loss"]
            entry |= {
                "naive_loss_spread_std": statistics.stdev(nl),
                "loss_mean_gap": abs(statistics.mean(fl) - statistics.mean(nl)),
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
            f"{_r([entry.get('naive_seed_spread_std')])} |gap| {_r([entry.get('mean_gap')])}; "
            f"final loss spread {_r([entry.get('naive_loss_spread_std')])} "
            f"|gap| {_r([entry.get('loss_mean_gap')])}",
            flush=True,
        )
    return out


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def _r(xs: list[Any]) -> str:
    return "[" + ", ".join("-" if x is None else f"{x:.4f}" for x in xs) + "]"


# ---------------------------------------------------------------------------------------------
# The parent: spawns the children, assembles the rows, writes the JSON.


class Runner:
    def __init__(self, argv: list[str], budget_s: float) -> None:
        self.argv = argv  # the setting's flags, passed on to every child
        self.deadline = time.monotonic() + budget_s

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, spec: dict[str, Any], limit_s: float) -> dict[str, Any]:
        """One child; its result, or {"error": ...} (out of memory, crash, time limit).

        The child prints straight to this process's stdout and stderr (a run killed from
        outside keeps every line) and writes its result as JSON to a file named here.
        """
        limit = min(limit_s, self.left())
        if limit < 5:
            return {"error": "skipped: run budget spent"}
        with tempfile.TemporaryDirectory() as tmp:
            result = Path(tmp) / "result.json"
            cmd = [sys.executable, __file__, *self.argv, "--child", json.dumps(spec)]
            try:
                proc = subprocess.run([*cmd, "--result", str(result)], timeout=limit)
            except subprocess.TimeoutExpired:
                return {"error": f"timeout after {limit:.0f}s"}
            if result.exists():
                return dict(json.loads(result.read_text()))
            return {"error": f"child exited with code {proc.returncode} and no result"}

    def fused(self, spec: dict[str, Any], limit_s: float) -> dict[str, Any]:
        """A fused measurement; out of memory at K retries at K/2 in a fresh process."""
        while True:
            res = self.run(spec, limit_s)
            if not res.get("oom") or spec["k"] <= 1:
                return res
            print(f"  out of memory at K={spec['k']}; trying K={spec['k'] // 2}", flush=True)
            spec = spec | {"k": spec["k"] // 2}


MODES = ("eager", "compiled", "graphed")
"""The fused step's modes: eager blocks, compiled blocks, and compiled blocks with the step
replayed from CUDA graphs."""


def _mode(spec: dict[str, Any]) -> str:
    """A fused spec's mode, from its compiled and graphed flags."""
    if spec.get("graphed"):
        return "graphed"
    return "compiled" if spec["compiled"] else "eager"


def _row(
    label: str, naive: dict[str, Any], fused: dict[str, Any], *, spec: dict[str, Any], st: Setting
) -> dict[str, Any]:
    steps_per_eval = _steps_per_eval(st)
    peak = _peak(_card(st.device))
    mode = _mode(spec)
    row: dict[str, Any] = {
        "label": label,
        "compiled": spec["compiled"],
        "mode": mode,
        "steps_timed": st.steps,
        "windows": st.repeats,
    }
    if "error" in naive or "error" in fused:
        row["error"] = fused.get("error") or naive.get("error")
        print(f"{label:12s} {mode}: {row['error']}", flush=True)
        return row
    nr, fr, k = naive["steps_per_s"], fused["steps_per_s"], fused["k"]
    nw, fw = naive["windows"], fused["windows"]
    row |= {
        "arrangements": fused["arrangements"],
        "naive_steps_per_s": nr,
        "fused_steps_per_s": fr,
        "naive_steps_per_s_windows": nw,
        "naive_host_op_us": naive["host_op_us"],
        "fused_steps_per_s_windows": fw,
        "fused_k": k,
        "naive_evals_per_gpu_hour": 3600 * nr / steps_per_eval,
        "fused_evals_per_gpu_hour": 3600 * fr * k / steps_per_eval,
        "ratio": fr * k / nr,
        # from the slowest fused window against the fastest naive one, and the other way round
        "ratio_range": [min(fw) * k / max(nw), max(fw) * k / min(nw)],
        "naive_mfu": None if peak is None else naive["flops_per_step"] * nr / peak,
        "fused_mfu": None if peak is None else fused["flops_per_step"] * fr / peak,
        "fused_peak_mem_mb": fused.get("peak_mem_mb"),
        "fused_wall_s_incl_compile": fused.get("wall_s_incl_compile"),
    }
    mfu = (
        "" if peak is None else f"  MFU naive {row['naive_mfu']:.2%} fused {row['fused_mfu']:.2%}"
    )
    lo, hi = row["ratio_range"]
    print(
        f"{label:12s} naive {nr:7.2f} steps/s {_span(nw)} = "
        f"{row['naive_evals_per_gpu_hour']:7.2f} evals/GPU-h | "
        f"fused{'' if mode == 'eager' else ' ' + mode} K={k} {fr:7.2f} steps/s {_span(fw)} = "
        f"{row['fused_evals_per_gpu_hour']:8.2f} evals/GPU-h | "
        f"ratio {row['ratio']:.1f}x ({lo:.1f}-{hi:.1f})"
        + mfu
        + f"  host op {row['naive_host_op_us']:.1f} us",
        flush=True,
    )
    return row


def _span(windows: list[float]) -> str:
    """The windows' slowest and fastest rates, as (min-max)."""
    return f"({min(windows):.2f}-{max(windows):.2f})"


def _steps_per_eval(st: Setting) -> int:
    n_fit = _dataset(tasks_for(st.fid)["in_context_recall"], MAD_DATA_SEED).train_inputs.shape[0]
    return len(TASK_NAMES) * st.fid.epochs * math.ceil(n_fit / st.fid.batch_size)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="smoke-sized shapes (CPU check)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per window")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed windows of --steps steps, back to back (the median is the rate)",
    )
    parser.add_argument("--k-attn", type=int, default=32, help="fused K for (mA M)x8")
    parser.add_argument("--k-mamba", type=int, default=32, help="fused K for (Mb M)x8")
    parser.add_argument("--k-random", type=int, default=32, help="fused K, random arrangements")
    parser.add_argument("--naive-random", type=int, default=2, help="random ones timed naive")
    parser.add_argument(
        "--modes",
        default="eager,compiled",
        help="fused modes to time: eager, compiled, graphed (compiled, steps in CUDA graphs)",
    )
    parser.add_argument("--sets", default="all", help="comma-separated labels, all or none")
    parser.add_argument("--parity-task", default="memorization", choices=TASK_NAMES)
    parser.add_argument("--parity-epochs", type=int, default=6)
    parser.add_argument("--parity-seeds", type=int, default=3)
    parser.add_argument("--no-parity", action="store_true")
    parser.add_argument(
        "--parity-naive-from",
        type=Path,
        default=None,
        help="an earlier report whose naive parity half this run reuses",
    )
    parser.add_argument("--child-limit-s", type=float, default=240.0)
    parser.add_argument(
        "--parity-limit-s", type=float, default=None, help="per parity half (default: child's)"
    )
    parser.add_argument("--budget-s", type=float, default=480.0, help="whole-run time budget")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    return parser


def _setting(args: argparse.Namespace) -> Setting:
    tiny = bool(args.tiny)
    return Setting(
        device=torch.device(args.device),
        tiny=tiny,
        steps=min(args.steps, 3) if tiny else args.steps,
        warmup=min(args.warmup, 1) if tiny else args.warmup,
        repeats=min(args.repeats, 2) if tiny else args.repeats,
        k={
            "attn": 4 if tiny else args.k_attn,
            "mamba": 3 if tiny else args.k_mamba,
            "random3": 4 if tiny else args.k_random,
        },
        naive_random=args.naive_random,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    st = _setting(args)
    if args.child is not None:
        try:
            out = _child(st, json.loads(args.child))
        except torch.cuda.OutOfMemoryError as exc:
            out = {"error": "oom: " + _first_line(exc), "oom": True}
        except Exception as exc:  # recorded as the measurement's outcome
            out = {"error": f"{type(exc).__name__}: {_first_line(exc)}"}
        Path(args.result).write_text(json.dumps(out))
        return 0

    modes = [m for m in args.modes.split(",") if m]
    if unknown := sorted(set(modes) - set(MODES)):
        print(f"error: unknown --modes {unknown}; choose from {list(MODES)}", file=sys.stderr)
        return 2
    if "graphed" in modes and st.device.type != "cuda":
        print(f"error: --modes graphed needs a CUDA device, not {st.device}", file=sys.stderr)
        return 2
    parity_spec = {  # the parity jobs train as the fastest mode timed
        "what": "parity",
        "task": args.parity_task,
        "epochs": args.parity_epochs,
        "seeds": args.parity_seeds,
        "compiled": any(m != "eager" for m in modes),
        "graphed": "graphed" in modes,
    }
    naive_parity = None
    if args.parity_naive_from is not None and not args.no_parity:
        try:  # checked before anything runs
            naive_parity = naive_parity_from(
                args.parity_naive_from, st, parity_spec, *_parity_jobs(st, parity_spec)
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    runner = Runner(list(argv), args.budget_s)  # the setting travels as the same flags
    card, host = _card(st.device), _host_cpu()
    sets = st.sets()
    wanted = {"all": list(sets), "none": []}.get(args.sets, args.sets.split(","))
    # the kernels' off switches (AIRA_TINY_ATTENTION=0, ...) as they were for this run
    switches = {k: v for k, v in sorted(os.environ.items()) if k.startswith("AIRA_")}
    print(
        f"eval throughput on {card}, host {host} x {os.cpu_count()} "
        f"(torch {torch.__version__}), fidelity {st.fid.name}, "
        f"S_eval {_steps_per_eval(st)} steps, fused bf16 {st.bf16}, mamba-ssm {_mamba_ssm()}, "
        f"modes {modes}, switches {switches or 'none'}",
        flush=True,
    )
    report: dict[str, Any] = {
        "card": card,
        "device": str(st.device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "host_cpus": os.cpu_count(),
        "host_cpu": host,
        "fidelity": st.fid.name,
        "batch": st.fid.batch_size,
        "seq_len": tasks_for(st.fid)["in_context_recall"].input_len,
        "steps_timed": st.steps,
        "warmup": st.warmup,
        "windows": st.repeats,
        "steps_per_eval": _steps_per_eval(st),
        "formula": "evals/GPU-h = 3600 * steps_per_s * K / steps_per_eval",
        "bf16_peak_flops": _peak(card),
        "fused_bf16": st.bf16,
        "mamba_ssm": _mamba_ssm(),
        "switches": switches,
        "throughput": [],
        "parity": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"eval_throughput{'-tiny' if st.tiny else ''}-{_slug(card)}.json"
    t_start = time.perf_counter()

    def write() -> None:
        report["total_wall_s"] = time.perf_counter() - t_start
        path.write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")

    limit = args.child_limit_s
    for label in wanted:
        n_naive = st.naive_random if label == "random3" else 1
        naive = runner.run({"what": "naive", "set": label, "k": n_naive, "n": n_naive}, limit)
        for mode in modes:
            spec = {
                "what": "fused",
                "set": label,
                "k": len(sets[label]),
                "compiled": mode != "eager",
                "graphed": mode == "graphed",
            }
            fused = runner.fused(spec, limit)
            report["throughput"].append(_row(label, naive, fused, spec=spec, st=st))
            write()
    if not args.no_parity:
        spec, compiled = parity_spec, parity_spec["compiled"]
        naive_from = "" if naive_parity is None else f" (from {naive_parity['from']})"
        print(
            f"parity: {args.parity_task}, {args.parity_epochs} epochs, "
            f"{args.parity_seeds} seeds; naive{naive_from}, then fused "
            f"{_mode(spec)}",
            flush=True,
        )
        half_limit = args.parity_limit_s or limit
        naive = naive_parity or runner.run(spec | {"half": "naive"}, half_limit)
        fused = runner.run(spec | {"half": "fused"}, half_limit)
        labels, jobs = _parity_jobs(st, spec)
        report["parity_task"], report["parity_epochs"] = args.parity_task, args.parity_epochs
        report["parity_compiled"] = compiled
        report["parity_mode"] = _mode(spec)
        if naive_parity is not None:
            report["parity_naive_from"] = naive_parity["from"]
        report["parity_rule"] = f"|mean fused - mean naive| <= max(naive std, {PARITY_FLOOR})"
        report["parity"] = _parity(labels, jobs, naive, fused)
        write()
    write()
    print(f"wrote {path} ({report['total_wall_s']:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
