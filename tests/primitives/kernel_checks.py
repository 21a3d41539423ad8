"""Checks shared by the Triton kernels' tests: their interpreter run, and the fused evaluator
giving the same model with and without one kernel (GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

import primitives.fused as fused
from primitives.kernels._triton import triton_available
from primitives.model import ModelConfig

ROOT = Path(__file__).resolve().parents[2]
HAS_TRITON = triton_available()


def run_in_interpreter(module: str, n_lines: int, check: str = "interpreter_check") -> None:
    """Run ``module.<check>()`` under ``TRITON_INTERPRET=1`` (read when kernels are defined,
    hence a fresh subprocess) and expect one printed line per checked shape."""
    env = os.environ | {"TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    code = f"from {module} import {check} as c; c()"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.splitlines()) == n_lines


def assert_same_without_kernel(
    monkeypatch: pytest.MonkeyPatch,
    cfg: ModelConfig,
    switch: str,
    *,
    out_tol: float,
    grad_tol: float,
) -> None:
    """Logits and parameter gradients of three fused candidates of ``cfg`` (fp32, CUDA, seeds
    0-2) agree, relative to their largest entries, when ``primitives.fused.<switch>`` (the
    check that picks the kernel) says no."""
    tokens = torch.randint(0, cfg.vocab_size, (4, 127), device="cuda")

    def run() -> tuple[Tensor, list[Tensor]]:
        model = fused.fused_models([cfg] * 3, [0, 1, 2]).cuda()
        logits = model(tokens)  # (K, B, T, V)
        grads = torch.autograd.grad(logits.square().mean(), list(model.parameters()))
        return logits.detach(), list(grads)

    with_kernel = run()
    monkeypatch.setattr(fused, switch, lambda *a: False)
    without = run()
    scale = without[0].abs().max()
    assert float((with_kernel[0] - without[0]).abs().max() / scale) < out_tol
    for a, b in zip(with_kernel[1], without[1], strict=True):
        assert float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) < grad_tol
