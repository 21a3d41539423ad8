"""Triton kernels behind :mod:`primitives.kernels.swiglu` (imported only when used).

Layout: x (K, M, D) with M = B·T rows per candidate k; w13 (K, 2F, D), gate rows then up rows;
w2 (K, D, F). One program owns a block of rows of one candidate and walks the F hidden channels
in blocks, so the (rows, hidden) tiles live in registers only:

- forward: g = x w1ᵀ and u = x w3ᵀ for the block, a = silu(g) ⊙ u (stored, for dL/dw2), and
  y += a w2ᵀ accumulated over the hidden blocks;
- backward: g and u recomputed, dL/da = dy w2, then dL/dg = dL/da ⊙ u ⊙ silu'(g) and
  dL/du = dL/da ⊙ silu(g), stored side by side as dh (K, M, 2F) for dL/dw13 = dhᵀ x, and
  dL/dx += dh w13 accumulated over the hidden blocks.

Products accumulate in fp32; a and dh are rounded to the inputs' dtype before the products that
use them, as they would be in memory. fp32 inputs multiply in IEEE fp32 (no TF32).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from primitives.kernels._triton import INTERPRETED, autotuned

_CONFIGS = [
    triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w)
    for m in (64, 128)
    for n in (32, 64)
    for w in (4, 8)
]
# the row and hidden blocks and num_warps, timed once per shape; in the interpreter blocks of
# 16 rows and 16 hidden channels (launch keywords) exercise both loops and masks
_tuned = autotuned(_CONFIGS, key=["M", "D", "F"])


@triton.jit
def _rows_tile(ptr, offs_m, offs_d, m_ok, d_ok, D: tl.constexpr):  # pragma: no cover - Triton
    """Rows ``offs_m`` of a (M, D) matrix: (rows, DP) in its own dtype, zero where masked."""
    ptrs = ptr + offs_m[:, None] * D + offs_d[None, :]
    return tl.load(ptrs, mask=m_ok[:, None] & d_ok[None, :], other=0.0)


@triton.jit
def _row_block(x, M, D: tl.constexpr, DP: tl.constexpr,
               BLOCK_M: tl.constexpr):  # fmt: skip  # pragma: no cover - Triton
    """This program's candidate k (64-bit), its rows and their mask, the width offsets and
    their mask, and its rows of x (BLOCK_M, DP)."""
    k = tl.program_id(1).to(tl.int64)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, DP)
    m_ok = offs_m < M
    d_ok = offs_d < D
    return k, offs_m, m_ok, offs_d, d_ok, _rows_tile(x + k * M * D, offs_m, offs_d, m_ok, d_ok, D)


@triton.jit
def _gate_up(xt, w13_k, w2_k, n0, offs_d, d_ok, D: tl.constexpr, F: tl.constexpr,
             BLOCK_N: tl.constexpr, PREC: tl.constexpr):  # fmt: skip  # pragma: no cover - Triton
    """Hidden channels n0 .. n0 + BLOCK_N of one candidate: their offsets and mask, its gate and
    up rows (BLOCK_N, DP) and down-projection columns (DP, BLOCK_N), and g = x w1ᵀ, u = x w3ᵀ
    (rows, BLOCK_N) fp32."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    n_ok = offs_n < F
    w_ok = n_ok[:, None] & d_ok[None, :]
    w1 = tl.load(w13_k + offs_n[:, None] * D + offs_d[None, :], mask=w_ok, other=0.0)
    w3 = tl.load(w13_k + (F + offs_n)[:, None] * D + offs_d[None, :], mask=w_ok, other=0.0)
    w2t = tl.load(
        w2_k + offs_d[:, None] * F + offs_n[None, :], mask=d_ok[:, None] & n_ok[None, :], other=0.0
    )
    g = tl.dot(xt, tl.trans(w1), input_precision=PREC)
    u = tl.dot(xt, tl.trans(w3), input_precision=PREC)
    return offs_n, n_ok, w1, w3, w2t, g, u


@triton.jit
def _store_rows(ptr, val, offs_m, m_ok, offs_d, d_ok,
                D: tl.constexpr):  # fmt: skip  # pragma: no cover - Triton
    """Store (rows, DP) into rows ``offs_m`` of a (M, D) matrix."""
    mask = m_ok[:, None] & d_ok[None, :]
    tl.store(ptr + offs_m[:, None] * D + offs_d[None, :], val.to(ptr.dtype.element_ty), mask=mask)


@_tuned
@triton.jit
def _fwd_kernel(
    x, w13, w2, y, act,
    M,
    D: tl.constexpr, DP: tl.constexpr, F: tl.constexpr, PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip  # pragma: no cover - compiled by Triton
    k, offs_m, m_ok, offs_d, d_ok, xt = _row_block(x, M, D, DP, BLOCK_M)
    w13_k = w13 + k * 2 * F * D
    w2_k = w2 + k * D * F
    act_k = act + k * M * F
    acc = tl.zeros((BLOCK_M, DP), dtype=tl.float32)
    for n0 in range(0, F, BLOCK_N):
        # fmt: off
        offs_n, n_ok, _, _, w2t, g, u = _gate_up(xt, w13_k, w2_k, n0, offs_d, d_ok, D, F,
                                                 BLOCK_N, PREC)
        # fmt: on
        a = (g * tl.sigmoid(g) * u).to(x.dtype.element_ty)
        a_ptr = act_k + offs_m[:, None] * F + offs_n[None, :]
        tl.store(a_ptr, a, mask=m_ok[:, None] & n_ok[None, :])
        acc += tl.dot(a, tl.trans(w2t), input_precision=PREC)
    _store_rows(y + k * M * D, acc, offs_m, m_ok, offs_d, d_ok, D)


@_tuned
@triton.jit
def _bwd_kernel(
    x, w13, w2, dy, dx, dh,
    M,
    D: tl.constexpr, DP: tl.constexpr, F: tl.constexpr, PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip  # pragma: no cover - compiled by Triton
    k, offs_m, m_ok, offs_d, d_ok, xt = _row_block(x, M, D, DP, BLOCK_M)
    dt = x.dtype.element_ty
    dyt = _rows_tile(dy + k * M * D, offs_m, offs_d, m_ok, d_ok, D)
    w13_k = w13 + k * 2 * F * D
    w2_k = w2 + k * D * F
    dh_k = dh + k * M * 2 * F
    acc = tl.zeros((BLOCK_M, DP), dtype=tl.float32)
    for n0 in range(0, F, BLOCK_N):
        # fmt: off
        offs_n, n_ok, w1, w3, w2t, g, u = _gate_up(xt, w13_k, w2_k, n0, offs_d, d_ok, D, F,
                                                   BLOCK_N, PREC)
        # fmt: on
        da = tl.dot(dyt, w2t, input_precision=PREC)
        sig = tl.sigmoid(g)
        dgate = (da * u * sig * (1.0 + g * (1.0 - sig))).to(dt)
        dup = (da * g * sig).to(dt)
        mask = m_ok[:, None] & n_ok[None, :]
        rows = dh_k + offs_m[:, None] * 2 * F
        tl.store(rows + offs_n[None, :], dgate, mask=mask)
        tl.store(rows + F + offs_n[None, :], dup, mask=mask)
        acc += tl.dot(dgate, w1, input_precision=PREC)
        acc += tl.dot(dup, w3, input_precision=PREC)
    _store_rows(dx + k * M * D, acc, offs_m, m_ok, offs_d, d_ok, D)


def _launch(x: Tensor, hidden: int) -> tuple[dict[str, object], object]:
    """The shape constants and the grid of one (K, M, D) launch."""
    k, m, d = x.shape
    args: dict[str, object] = {
        "D": d,
        "DP": max(16, triton.next_power_of_2(d)),
        "F": hidden,
        "PREC": "ieee" if x.dtype == torch.float32 else "tf32",
    }
    if INTERPRETED:
        args |= {"BLOCK_M": 16, "BLOCK_N": 16}
    return args, lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), k)


@torch.library.custom_op("aira::swiglu_mlp_fwd", mutates_args=())
def swiglu_mlp_fwd(x: Tensor, w13: Tensor, w2: Tensor) -> tuple[Tensor, Tensor]:
    """Args: x (K, M, D), w13 (K, 2F, D), w2 (K, D, F), contiguous, one dtype.

    Returns: y (K, M, D) and the hidden activation a = silu(x w1ᵀ) ⊙ (x w3ᵀ), (K, M, F).
    """
    k, m, _ = x.shape
    f = w2.shape[-1]
    y = torch.empty_like(x)
    act = torch.empty(k, m, f, device=x.device, dtype=x.dtype)
    args, grid = _launch(x, f)
    _fwd_kernel[grid](x, w13, w2, y, act, m, **args)
    return y, act


@swiglu_mlp_fwd.register_fake
def _(x: Tensor, w13: Tensor, w2: Tensor) -> tuple[Tensor, Tensor]:
    k, m, _ = x.shape
    return torch.empty_like(x), x.new_empty(k, m, w2.shape[-1])


@torch.library.custom_op("aira::swiglu_mlp_bwd", mutates_args=())
def swiglu_mlp_bwd(dy: Tensor, x: Tensor, w13: Tensor, w2: Tensor) -> tuple[Tensor, Tensor]:
    """dL/dx (K, M, D) and dh = [dL/dg | dL/du] (K, M, 2F) of :func:`swiglu_mlp_fwd`."""
    k, m, _ = x.shape
    f = w2.shape[-1]
    dy = dy.contiguous()
    dx = torch.empty_like(x)
    dh = torch.empty(k, m, 2 * f, device=x.device, dtype=x.dtype)
    args, grid = _launch(x, f)
    _bwd_kernel[grid](x, w13, w2, dy, dx, dh, m, **args)
    return dx, dh


@swiglu_mlp_bwd.register_fake
def _(dy: Tensor, x: Tensor, w13: Tensor, w2: Tensor) -> tuple[Tensor, Tensor]:
    k, m, _ = x.shape
    return torch.empty_like(x), x.new_empty(k, m, 2 * w2.shape[-1])


def _setup(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple) -> None:  # type: ignore[type-arg]
    x, w13, w2 = inputs
    _, act = output
    ctx.save_for_backward(x, w13, w2, act)


def _backward(ctx: torch.autograd.function.FunctionCtx, dy: Tensor, _dact: Tensor) -> tuple:  # type: ignore[type-arg]
    x, w13, w2, act = ctx.saved_tensors  # type: ignore[attr-defined]
    dx, dh = swiglu_mlp_bwd(dy, x, w13, w2)
    dw13 = torch.bmm(dh.transpose(1, 2), x)  # (K, 2F, D)
    dw2 = torch.bmm(dy.transpose(1, 2), act)  # (K, D, F)
    return dx, dw13, dw2


swiglu_mlp_fwd.register_autograd(_backward, setup_context=_setup)
