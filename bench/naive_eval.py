"""The naive evaluation baseline kept for comparison: eager fp32, one job at a time.

This is the evaluator's protocol (:func:`primitives.evaluator.evaluate`: same data, seeds,
optimiser, schedule, scoring) with bf16 autocast switched off, run one job and one task after
another, with no CUDA graphs, no compilation and no fusing. ``bench/eval_throughput.py`` times
its training step (:func:`naive_step_rate`) and uses :func:`evaluate_naive` for the accuracy
parity check.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from primitives.evaluator import EvalJob, EvalResult, Fidelity, evaluate
from primitives.mad import IGNORE_INDEX
from primitives.model import ModelConfig, build_model

__all__ = ["evaluate_naive", "host_op_us", "naive_step_rate", "sync", "timed_rates"]


def sync(device: torch.device) -> None:
    """Wait for the device (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_rates(
    step: Callable[[int], None], *, warmup: int, steps: int, device: torch.device, repeats: int = 1
) -> list[float]:
    """Steps per second of ``step(i)`` in ``repeats`` back-to-back windows of ``steps`` steps
    each, after ``warmup`` untimed steps (device synchronised at every window's ends). The
    windows show how much a rate moves within one run: a loop bound by the host's kernel
    launches moves far more than one bound by the card."""
    for i in range(warmup):
        step(i)
    sync(device)
    rates = []
    for w in range(repeats):
        first = warmup + w * steps
        start = time.perf_counter()
        for i in range(first, first + steps):
            step(i)
        sync(device)
        rates.append(steps / (time.perf_counter() - start))
    return rates


def host_op_us(device: torch.device, ops: int = 2000) -> float:
    """The host's time per tiny in-place op on ``device``, in µs. The naive step is hundreds of
    small kernels, each behind Python and autograd dispatch on the host, so the host bounds it;
    measured beside the naive rate, this tells a slow host from a slow loop."""
    x = torch.zeros(1, device=device)
    for _ in range(100):  # warm-up
        x.add_(1)
    sync(device)
    start = time.perf_counter()
    for _ in range(ops):
        x.add_(1)
    sync(device)
    return (time.perf_counter() - start) / ops * 1e6


def evaluate_naive(jobs: Sequence[EvalJob]) -> list[EvalResult]:
    """``evaluate`` with fp32 (no autocast), one job at a time; jobs need a Fidelity object."""
    out = []
    for job in jobs:
        assert isinstance(job.fidelity, Fidelity)
        fp32 = dataclasses.replace(job, fidelity=dataclasses.replace(job.fidelity, bf16=False))
        (res,) = evaluate([fp32])
        out.append(dataclasses.replace(res, job=job))
    return out


def naive_step_rate(
    cfg: ModelConfig,
    inputs: Tensor,
    targets: Tensor,
    *,
    batch: int,
    steps: int,
    warmup: int,
    device: torch.device,
    seed: int = 0,
    repeats: int = 1,
) -> list[float]:
    """Training steps per second of one model, eager fp32, the loop of ``fit_and_score``.

    Args:
        cfg: the model. inputs, targets: (n, T) rows to draw batches from (on ``device``).
        batch: rows per step. steps: timed steps per window, after ``warmup`` untimed ones.
        repeats: timed windows, back to back.

    Returns:
        steps per second in each window (:func:`timed_rates`).
    """
    torch.manual_seed(seed)
    model = build_model(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, fused=device.type == "cuda")
    n = inputs.shape[0]
    order = torch.randperm(n * math.ceil((steps * repeats + warmup) * batch / n) + batch) % n
    order = order.to(device)  # (enough rows for every step,)
    model.train()

    def step(i: int) -> None:
        idx = order[i * batch : (i + 1) * batch]  # (batch,)
        logits = model(inputs[idx])  # (batch, T, V)
        loss = F.cross_entropy(
            logits.float().flatten(0, 1),  # (batch·T, V)
            targets[idx].flatten(),  # (batch·T,)
            ignore_index=IGNORE_INDEX,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()

    return timed_rates(step, warmup=warmup, steps=steps, device=device, repeats=repeats)
