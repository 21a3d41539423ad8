"""Checks shared by the Triton kernels' tests: their interpreter run, and the fused evaluator
giving the same model with and without one kernel (GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def relative_error(a: Tensor, ref: Tensor) -> float:
    """max |a - ref| over max |ref|."""
    return float((a - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def fused_differences(cfg: ModelConfig, switch: str, tokens: Tensor) -> list[float]:
    """Relative max differences (to the largest entry) of the logits and of every parameter
    gradient of three fused candidates of ``cfg`` (fp32, seeds 0-2, on the tokens' device) with
    ``primitives.fused.<switch>``, the check that picks a kernel, forced on against forced off.
    Forcing it on lets Triton's interpreter run the kernel on CPU tensors."""

    def run(on: bool) -> tuple[Tensor, list[Tensor]]:
        check = getattr(fused, switch)
        setattr(fused, switch, lambda *args: on)
        try:
            model = fused.fused_models([cfg] * 3, [0, 1, 2]).to(tokens.device)
            logits = model(tokens)  # (K, B, T, V)
            grads = torch.autograd.grad(logits.square().mean(), list(model.parameters()))
        finally:
            setattr(fused, switch, check)
        return logits.detach(), list(grads)

    (out, grads), (ref, ref_grads) = run(True), run(False)
    pairs = [(out, ref), *zip(grads, ref_grads, strict=True)]
    return [relative_error(a, b) for a, b in pairs]


def assert_same_without_kernel(
    cfg: ModelConfig, switch: str, *, out_tol: float, grad_tol: float
) -> None:
    """:func:`fused_differences` on CUDA for a batch of 4 sequences of 127 tokens: logits within
    ``out_tol``, gradients within ``grad_tol``."""
    tokens = torch.randint(0, cfg.vocab_size, (4, 127), device="cuda")
    out_error, *grad_errors = fused_differences(cfg, switch, tokens)
    assert out_error < out_tol
    assert max(grad_errors) < grad_tol, grad_errors
