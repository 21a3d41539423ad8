"""Mb on a GPU: the pure-PyTorch path against mamba-ssm's Triton kernel, same weights.

Run on a CUDA machine with mamba-ssm installed:

    python -m pytest -m gpu tests/primitives/test_gpu_mamba2.py

Skipped (not failed) without CUDA or without an importable mamba-ssm.

Errors are measured relative to the scale of the reference: max|a - b| / max|b| per tensor.
Tolerances are about 3-5x the worst error measured on an NVIDIA H100 80GB HBM3 (torch 2.11,
triton 3.6, mamba-ssm 2.3.2.post1, 2026-11-27), separately for outputs and gradients:

============================  ===================  ==========  ===================  ==========
case                          forward measured     tol         grads measured       tol
============================  ===================  ==========  ===================  ==========
ssd_chunked fp32, T 256/301   1.02e-3 (final st.)  3e-3        1.65e-3 (B)          5e-3
module fp32 (ngroups 1, 2)    8.9e-5               3e-4        1.60e-3 (dt_bias)    5e-3
module bf16 (ngroups 1, 2)    3.3e-3               1.5e-2      5.5e-3 (dt_bias)     2e-2
============================  ===================  ==========  ===================  ==========

fp32: the Triton kernels use TF32 tensor-core dots inside while the torch reference runs in
true fp32; the dt path (dt_bias, A_log, dt, A, B) collects the largest gradient errors. bf16:
bf16 activations and weights on both paths; the torch SSD computes in fp32 inside, the kernel
partly in bf16. The assertion messages print the measured error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch
from torch import Tensor

import primitives.mamba2 as mamba2_module
from primitives.kernels import load_mamba_chunk_scan_combined, mamba_ssm_available
from primitives.mamba2 import Mamba2, Mamba2Config, ssd_chunked

_HAS_CUDA = torch.cuda.is_available()
# Short-circuit: never try to import mamba_ssm on a machine without CUDA.
_HAS_KERNEL = _HAS_CUDA and mamba_ssm_available()

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _HAS_CUDA, reason="needs a CUDA GPU"),
    pytest.mark.skipif(not _HAS_KERNEL, reason="needs mamba-ssm (pip install aira-async[cuda])"),
]

# (forward, gradients) per dtype; see the table above.
TOL = {torch.float32: (3e-4, 5e-3), torch.bfloat16: (1.5e-2, 2e-2)}
SSD_TOL = (3e-3, 5e-3)  # the bare SSD kernel in fp32: (outputs and final state, gradients)


def _rel_err(a: Tensor, b: Tensor) -> float:
    """max|a - b| / max|b|, in fp32."""
    a32, b32 = a.detach().float(), b.detach().float()
    return float((a32 - b32).abs().max() / b32.abs().max().clamp_min(1e-12))


def _assert_near(a: Tensor | None, b: Tensor | None, tol: float, what: str) -> None:
    assert a is not None and b is not None, f"{what}: missing tensor"
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    assert torch.isfinite(a.float()).all(), f"{what}: non-finite values"
    err = _rel_err(a, b)
    assert err <= tol, f"{what}: relative error {err:.2e} > {tol:.1e}"


@pytest.fixture(autouse=True)
def _true_fp32_matmuls() -> Iterator[None]:
    """The torch reference must not use TF32 itself."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("t", [256, 301])
def test_ssd_chunked_matches_kernel(t: int) -> None:
    kernel = load_mamba_chunk_scan_combined()
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(t)
    b, h, p, groups, n, chunk = 2, 4, 32, 2, 32, 64
    inputs = {
        "x": 0.5 * torch.randn(b, t, h, p, device=dev, generator=g),
        "dt": 0.01 + 0.1 * torch.rand(b, t, h, device=dev, generator=g),
        "A": -(0.5 + 4.0 * torch.rand(h, device=dev, generator=g)),
        "B": 0.5 * torch.randn(b, t, groups, n, device=dev, generator=g),
        "C": 0.5 * torch.randn(b, t, groups, n, device=dev, generator=g),
        "D": torch.randn(h, device=dev, generator=g),
        "initial_states": 0.3 * torch.randn(b, h, p, n, device=dev, generator=g),
    }
    fast = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    ref = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    y_k, s_k = kernel(
        fast["x"],
        fast["dt"],
        fast["A"],
        fast["B"],
        fast["C"],
        chunk,
        D=fast["D"],
        initial_states=fast["initial_states"],
        return_final_states=True,
    )
    y_t, s_t = ssd_chunked(chunk_size=chunk, return_final_states=True, **ref)
    tol, tol_grad = SSD_TOL
    _assert_near(y_k, y_t, tol, "y")
    _assert_near(s_k, s_t, tol, "final state")
    w_y = torch.randn(y_t.shape, device=dev, generator=g)
    w_s = torch.randn(s_t.shape, device=dev, generator=g)
    ((y_k * w_y).sum() + (s_k * w_s).sum()).backward()
    ((y_t * w_y).sum() + (s_t * w_s).sum()).backward()
    for name in inputs:
        _assert_near(fast[name].grad, ref[name].grad, tol_grad, f"grad of {name}")


def _pair(dtype: torch.dtype, ngroups: int) -> tuple[Mamba2, Mamba2]:
    base = {"d_model": 64, "d_state": 32, "headdim": 32, "ngroups": ngroups, "chunk_size": 64}
    torch.manual_seed(0)
    torch_path = Mamba2(Mamba2Config(impl="torch", **base))  # type: ignore[arg-type]
    triton_path = Mamba2(Mamba2Config(impl="triton", **base))  # type: ignore[arg-type]
    triton_path.load_state_dict(torch_path.state_dict())
    return torch_path.to("cuda", dtype), triton_path.to("cuda", dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("ngroups", [1, 2])
def test_module_torch_vs_triton(dtype: torch.dtype, ngroups: int) -> None:
    torch_path, triton_path = _pair(dtype, ngroups)
    g = torch.Generator(device="cuda").manual_seed(1)
    u = torch.randn(3, 197, 64, device="cuda", generator=g).to(dtype)  # not a chunk multiple
    u_t, u_k = u.clone().requires_grad_(), u.clone().requires_grad_()
    y_t, y_k = torch_path(u_t), triton_path(u_k)
    tol, tol_grad = TOL[dtype]
    assert y_t.dtype == y_k.dtype == dtype
    _assert_near(y_k, y_t, tol, "output")
    w = torch.randn(y_t.shape, device="cuda", generator=g).to(dtype)
    (y_t.float() * w.float()).sum().backward()
    (y_k.float() * w.float()).sum().backward()
    _assert_near(u_k.grad, u_t.grad, tol_grad, "grad of input")
    params_t = dict(torch_path.named_parameters())
    for name, param in triton_path.named_parameters():
        _assert_near(param.grad, params_t[name].grad, tol_grad, f"grad of {name}")


def test_auto_picks_triton_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    torch_path, triton_path = _pair(torch.float32, 1)
    auto = Mamba2(replace(triton_path.cfg, impl="auto"))
    auto.load_state_dict(triton_path.state_dict())
    auto = auto.to("cuda")
    u = torch.randn(2, 64, 64, device="cuda")
    with torch.no_grad():
        expected_torch = torch_path(u)

        def _fail(*args: object, **kwargs: object) -> Tensor:
            raise AssertionError("impl='auto' on CUDA fell back to the torch SSD")

        monkeypatch.setattr(mamba2_module, "ssd_chunked", _fail)
        _assert_near(auto(u), triton_path(u), 1e-6, "auto vs triton")
        _assert_near(auto(u), expected_torch, TOL[torch.float32][0], "auto vs torch")
