"""Triton kernels behind :mod:`primitives.kernels.swiglu` (imported only when used).

The MLP block of a pre-norm stack, out = x + SwiGLU(RMSNorm(x)), for K candidates at once.
Layout: x (K, M, D) with M = B·T rows per candidate k (the residual stream, any float dtype);
the norm weight (K, D); w13 (K, 2F, D), gate rows then up rows; w2 (K, D, F), both in the
products' dtype. One program owns a block of rows of one candidate, holds whole rows (D <= 256)
and walks the F hidden channels in blocks, so the (rows, hidden) tiles live in registers only:

- forward: the rows' RMS and n = x / rms ⊙ weight, then g = n w1ᵀ and u = n w3ᵀ per hidden
  block, a = silu(g) ⊙ u (stored, for dL/dw2), y += a w2ᵀ; out = x + y is stored once;
- backward: n recomputed (and stored, for dL/dw13 = dhᵀ n), g and u recomputed per hidden block,
  dL/da = dout w2, then dL/dg = dL/da ⊙ u ⊙ silu'(g) and dL/du = dL/da ⊙ silu(g), stored side
  by side as dh (K, M, 2F), and dL/dn += dh w13; then the norm's backward on the rows, plus the
  residual's dout, gives dL/dx, and each program's sum of dL/dn ⊙ x / rms over its rows is its
  part of dL/dweight.

The norm, the residual add and the norm's backward thus take no passes of their own over the
stream. Norm statistics and products accumulate in fp32; n, a and dh are rounded to the products'
dtype before the products that use them, as they would be in memory. fp32 inputs multiply in
IEEE fp32 (no TF32).
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
    """Rows ``offs_m`` of a (M, D) matrix: (rows, DP) in fp32, zero where masked."""
    ptrs = ptr + offs_m[:, None] * D + offs_d[None, :]
    return tl.load(ptrs, mask=m_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)


@triton.jit
def _row_block(M, D: tl.constexpr, DP: tl.constexpr,
               BLOCK_M: tl.constexpr):  # fmt: skip  # pragma: no cover - Triton
    """This program's candidate k (64-bit), its rows and their mask, the width offsets and
    their mask."""
    k = tl.program_id(1).to(tl.int64)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, DP)
    return k, offs_m, offs_m < M, offs_d, offs_d < D


@triton.jit
def _normed(x_k, weight_k, eps, offs_m, m_ok, offs_d, d_ok, D: tl.constexpr,
            DT: tl.constexpr):  # fmt: skip  # pragma: no cover - Triton
    """For rows ``offs_m`` of x: 1 / rms (rows,) and the norm's weight (DP,), fp32, and
    n = x / rms ⊙ weight (rows, DP) in DT."""
    xt = _rows_tile(x_k, offs_m, offs_d, m_ok, d_ok, D)
    rstd = tl.math.rsqrt(tl.sum(xt * xt, axis=1) / D + eps)
    w = tl.load(weight_k + offs_d, mask=d_ok, other=0.0).to(tl.float32)
    return rstd, w, (xt * rstd[:, None] * w[None, :]).to(DT)


@triton.jit
def _gate_up(nt, w13_k, w2_k, n0, offs_d, d_ok, D: tl.constexpr, F: tl.constexpr,
             BLOCK_N: tl.constexpr, PREC: tl.constexpr):  # fmt: skip  # pragma: no cover - Triton
    """Hidden channels n0 .. n0 + BLOCK_N of one candidate: their offsets and mask, its gate and
    up rows (BLOCK_N, DP) and down-projection columns (DP, BLOCK_N), and g = n w1ᵀ, u = n w3ᵀ
    (rows, BLOCK_N) fp32."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    n_ok = offs_n < F
    w_ok = n_ok[:, None] & d_ok[None, :]
    w1 = tl.load(w13_k + offs_n[:, None] * D + offs_d[None, :], mask=w_ok, other=0.0)
    w3 = tl.load(w13_k + (F + offs_n)[:, None] * D + offs_d[None, :], mask=w_ok, other=0.0)
    w2t = tl.load(
        w2_k + offs_d[:, None] * F + offs_n[None, :], mask=d_ok[:, None] & n_ok[None, :], other=0.0
    )
    g = tl.dot(nt, tl.trans(w1), input_precision=PREC)
    u = tl.dot(nt, tl.trans(w3), input_precision=PREC)
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
    x, weight, w13, w2, out, act,
    M, eps,
    D: tl.constexpr, DP: tl.constexpr, F: tl.constexpr, PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip  # pragma: no cover - compiled by Triton
    k, offs_m, m_ok, offs_d, d_ok = _row_block(M, D, DP, BLOCK_M)
    dt = w13.dtype.element_ty
    x_k = x + k * M * D
    # not `_`: the loop below rebinds `_`, and Triton gives a name one type through a loop
    _rstd, _w, nt = _normed(x_k, weight + k * D, eps, offs_m, m_ok, offs_d, d_ok, D, dt)
    w13_k = w13 + k * 2 * F * D
    w2_k = w2 + k * D * F
    act_k = act + k * M * F
    # the residual starts the sum: a second read of x after the loop would be merged with the
    # first and hold x's tile in registers through the loop (224 B of spills per thread at
    # BLOCK_M 64, 4 warps; none this way: bench/kernel_sass.py)
    acc = _rows_tile(x_k, offs_m, offs_d, m_ok, d_ok, D)
    for n0 in range(0, F, BLOCK_N):
        # fmt: off
        offs_n, n_ok, _, _, w2t, g, u = _gate_up(nt, w13_k, w2_k, n0, offs_d, d_ok, D, F,
                                                 BLOCK_N, PREC)
        # fmt: on
        a = (g * tl.sigmoid(g) * u).to(dt)
        a_ptr = act_k + offs_m[:, None] * F + offs_n[None, :]
        tl.store(a_ptr, a, mask=m_ok[:, None] & n_ok[None, :])
        acc += tl.dot(a, tl.trans(w2t), input_precision=PREC)
    _store_rows(out + k * M * D, acc, offs_m, m_ok, offs_d, d_ok, D)


@_tuned
@triton.jit
def _bwd_kernel(
    x, weight, w13, w2, dout, dx, dh, normed, dweight,
    M, eps, n_parts,
    D: tl.constexpr, DP: tl.constexpr, F: tl.constexpr, PREC: tl.constexpr,
    PART: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip  # pragma: no cover - compiled by Triton
    k, offs_m, m_ok, offs_d, d_ok = _row_block(M, D, DP, BLOCK_M)
    dt = w13.dtype.element_ty
    x_k = x + k * M * D
    dout_k = dout + k * M * D
    rstd, w, nt = _normed(x_k, weight + k * D, eps, offs_m, m_ok, offs_d, d_ok, D, dt)
    _store_rows(normed + k * M * D, nt, offs_m, m_ok, offs_d, d_ok, D)
    dyt = _rows_tile(dout_k, offs_m, offs_d, m_ok, d_ok, D).to(dt)
    w13_k = w13 + k * 2 * F * D
    w2_k = w2 + k * D * F
    dh_k = dh + k * M * 2 * F
    dn = tl.zeros((BLOCK_M, DP), dtype=tl.float32)  # dL/dn
    for n0 in range(0, F, BLOCK_N):
        # fmt: off
        offs_n, n_ok, w1, w3, w2t, g, u = _gate_up(nt, w13_k, w2_k, n0, offs_d, d_ok, D, F,
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
        dn += tl.dot(dgate, w1, input_precision=PREC)
        dn += tl.dot(dup, w3, input_precision=PREC)
    # the norm's backward, x and dout read again: with x̂ = x / rms and a = dL/dn ⊙ weight,
    # dL/dx = dout + (a - x̂ mean(a ⊙ x̂)) / rms. Triton shares these reads' address tiles with
    # the reads before the loop and holds them through it (696 B or more of spills per thread,
    # bench/kernel_sass.py). Reading through block pointers left fewer (752 against 2168 B at
    # BLOCK_M 64, 4 warps) for no measured gain (stop 17), and Triton 3.9 removed them.
    xhat = _rows_tile(x_k, offs_m, offs_d, m_ok, d_ok, D) * rstd[:, None]
    a = dn * w[None, :]
    mean = tl.sum(a * xhat, axis=1) / D
    grad = _rows_tile(dout_k, offs_m, offs_d, m_ok, d_ok, D)
    grad += rstd[:, None] * (a - xhat * mean[:, None])
    _store_rows(dx + k * M * D, grad, offs_m, m_ok, offs_d, d_ok, D)
    # dL/dweight in parts of PART rows each, so that every configuration fills every part
    part = tl.sum(tl.reshape(dn * xhat, (BLOCK_M // PART, PART, DP)), axis=1)
    slots = tl.program_id(0) * (BLOCK_M // PART) + tl.arange(0, BLOCK_M // PART)
    ptrs = dweight + (k * n_parts + slots[:, None]) * D + offs_d[None, :]
    tl.store(ptrs, part, mask=(slots < n_parts)[:, None] & d_ok[None, :])


# rows per part of dL/dweight: the smallest row block (the interpreter's 16 rows included)
_PART = 16 if INTERPRETED else min(c.kwargs["BLOCK_M"] for c in _CONFIGS)


def _launch(x: Tensor, w13: Tensor) -> tuple[dict[str, object], object]:
    """The shape constants and the grid of one (K, M, D) launch."""
    k, m, d = x.shape
    args: dict[str, object] = {
        "D": d,
        "DP": max(16, triton.next_power_of_2(d)),
        "F": w13.shape[1] // 2,
        "PREC": "ieee" if w13.dtype == torch.float32 else "tf32",
    }
    if INTERPRETED:
        args |= {"BLOCK_M": 16, "BLOCK_N": 16}
    return args, lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), k)


@torch.library.custom_op("aira::swiglu_block_fwd", mutates_args=())
def swiglu_block_fwd(
    x: Tensor, weight: Tensor, w13: Tensor, w2: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """Args: x (K, M, D) the stream; weight (K, D) the norm's; w13 (K, 2F, D) and w2 (K, D, F)
    in the products' dtype; all contiguous.

    Returns: out = x + SwiGLU(RMSNorm(x)) (K, M, D) in x's dtype, and the hidden activation
    a = silu(n w1ᵀ) ⊙ (n w3ᵀ) (K, M, F) in the products' dtype.
    """
    k, m, _ = x.shape
    out = torch.empty_like(x)
    act = torch.empty(k, m, w2.shape[-1], device=x.device, dtype=w13.dtype)
    args, grid = _launch(x, w13)
    _fwd_kernel[grid](x, weight, w13, w2, out, act, m, eps, **args)
    return out, act


@swiglu_block_fwd.register_fake
def _(x: Tensor, weight: Tensor, w13: Tensor, w2: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    k, m, _ = x.shape
    return torch.empty_like(x), w13.new_empty(k, m, w2.shape[-1])


@torch.library.custom_op("aira::swiglu_block_bwd", mutates_args=())
def swiglu_block_bwd(
    dout: Tensor, x: Tensor, weight: Tensor, w13: Tensor, w2: Tensor, eps: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dL/dx (K, M, D), dL/dweight (K, D), dh = [dL/dg | dL/du] (K, M, 2F) and the normed rows
    n (K, M, D) (for dL/dw13 = dhᵀ n) of :func:`swiglu_block_fwd`."""
    k, m, d = x.shape
    dout = dout.contiguous()
    dx = torch.empty_like(x)
    dh = torch.empty(k, m, w13.shape[1], device=x.device, dtype=w13.dtype)
    normed = torch.empty(k, m, d, device=x.device, dtype=w13.dtype)
    n_parts = triton.cdiv(m, _PART)
    parts = torch.empty(k, n_parts, d, device=x.device, dtype=torch.float32)
    args, grid = _launch(x, w13)
    _bwd_kernel[grid](
        x, weight, w13, w2, dout, dx, dh, normed, parts, m, eps, n_parts, PART=_PART, **args
    )
    return dx, parts.sum(1).to(weight.dtype), dh, normed


@swiglu_block_bwd.register_fake
def _(
    dout: Tensor, x: Tensor, weight: Tensor, w13: Tensor, w2: Tensor, eps: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    k, m, d = x.shape
    return (
        torch.empty_like(x),
        torch.empty_like(weight),
        w13.new_empty(k, m, w13.shape[1]),
        w13.new_empty(k, m, d),
    )


def _setup(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple) -> None:  # type: ignore[type-arg]
    x, weight, w13, w2, eps = inputs
    _, act = output
    ctx.save_for_backward(x, weight, w13, w2, act)
    ctx.eps = eps  # type: ignore[attr-defined]


def _backward(ctx: torch.autograd.function.FunctionCtx, dout: Tensor, _dact: Tensor) -> tuple:  # type: ignore[type-arg]
    x, weight, w13, w2, act = ctx.saved_tensors  # type: ignore[attr-defined]
    dx, dweight, dh, normed = swiglu_block_bwd(dout, x, weight, w13, w2, ctx.eps)  # type: ignore[attr-defined]
    dw13 = torch.bmm(dh.transpose(1, 2), normed)  # (K, 2F, D)
    dw2 = torch.bmm(dout.to(act.dtype).transpose(1, 2), act)  # (K, D, F)
    return dx, dweight, dw13, dw2, None


swiglu_block_fwd.register_autograd(_backward, setup_context=_setup)
