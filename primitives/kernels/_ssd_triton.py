"""Triton kernels behind :mod:`primitives.kernels.ssd` (imported only when used).

Layout: xbc (K, B, T, C) is the conv output of the fused Mamba2 block, C = H·P + 2·G·N channels
(x by head, then B by group, then C by group); step (K, B, T, H) fp32 is dt after softplus and
bias; A and D are (K, H). Sequence n = k·B + b of candidate k. y and dy are (K, B, T, H·P).

One program owns one (sequence, group) pair and the whole sequence (T <= 128), as the tiny
attention kernels do: cb = C Bᵀ (T, T) is formed once and stays in registers (in the inputs'
dtype, as the batched product would store it) while the program walks the group's heads. Per
head, with cs the cumulative sum of dt·A:

- forward: decay[t, s] = exp(cs_t - cs_s) for s <= t (0 above the diagonal), y = (cb ∘ decay)
  (x ∘ dt) + D·x;
- backward: with S = cb ∘ decay rounded to the inputs' dtype and dS = dy (x ∘ dt)ᵀ,
  dL/d(x ∘ dt) = Sᵀ dy; dL/dcb accumulates dS ∘ decay over the heads; dL/dcs is the row sums
  minus the column sums of dS ∘ cb ∘ decay, and dL/d(dt·A) its reverse cumulative sum. After the
  heads, dL/dC = (dL/dcb) B and dL/dB = (dL/dcb)ᵀ C.

The gradients of x, B and C land in one (K, B, T, C) tensor, the layout of xbc, so the block's
backward pass concatenates nothing. Gradients of A and D are per-sequence partial sums (fp32),
summed over sequences afterwards. fp32 inputs multiply in IEEE fp32 (no TF32).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from primitives.kernels._triton import autotuned

# num_warps, timed once per shape: the (T, T) tiles are 64 KB of fp32 registers each
_tuned = autotuned([triton.Config({}, num_warps=w) for w in (4, 8, 16)], key=["T", "H", "P", "N"])
# the least tile width: with 16, compute-sanitizer caught the forward kernel reading past its
# shared memory (512-byte reads) on an H200 for P = 16, N = 24; with 32, no errors (stop 13)
MIN_TILE = 32


@triton.jit
def _rows(ptr, offs_t, t_ok, col0, offs_c, c_ok, C: tl.constexpr):  # pragma: no cover - Triton
    """Channels col0 + offs_c of the sequence's rows (row stride C): (tokens, channels)."""
    mask = t_ok[:, None] & c_ok[None, :]
    return tl.load(ptr + offs_t[:, None] * C + (col0 + offs_c)[None, :], mask=mask, other=0.0)


@triton.jit
def _group_cb(xbc_n, g, offs_t, t_ok, E: tl.constexpr, C: tl.constexpr, G: tl.constexpr,
              N: tl.constexpr, NP: tl.constexpr,
              PREC: tl.constexpr):  # fmt: skip  # pragma: no cover - Triton
    """The group's B and C rows (tokens, NP) and cb = C Bᵀ (tokens, tokens), rounded to their
    dtype as the batched product's output is (and half the registers in bf16)."""
    offs_n = tl.arange(0, NP)
    n_ok = offs_n < N
    bm = _rows(xbc_n, offs_t, t_ok, E + g * N, offs_n, n_ok, C)
    cm = _rows(xbc_n, offs_t, t_ok, E + G * N + g * N, offs_n, n_ok, C)
    return bm, cm, tl.dot(cm, tl.trans(bm), input_precision=PREC).to(bm.dtype)


@triton.jit
def _program(T, B, P: tl.constexpr, TP: tl.constexpr,
             PP: tl.constexpr):  # fmt: skip  # pragma: no cover - Triton
    """This program's sequence n, group g and candidate k, the sequence's first row (64-bit), the
    token and head-feature offsets with their masks, and the causal mask (T, T)."""
    n = tl.program_id(0)
    offs_t = tl.arange(0, TP)
    offs_p = tl.arange(0, PP)
    causal = offs_t[:, None] >= offs_t[None, :]
    row0 = n.to(tl.int64) * T
    return n, tl.program_id(1), n // B, row0, offs_t, offs_t < T, offs_p, offs_p < P, causal


@triton.jit
def _head(xbc_n, step_n, a_ptr, k, h, offs_t, t_ok, offs_p, p_ok, causal, H: tl.constexpr,
          P: tl.constexpr, C: tl.constexpr):  # fmt: skip  # pragma: no cover - Triton
    """Head h's dt (T,) fp32, its A, decay (T, T) fp32 (0 above the diagonal), x (T, P) fp32
    and x ∘ dt in the inputs' dtype."""
    dt_h = tl.load(step_n + offs_t * H + h, mask=t_ok, other=0.0)
    a_h = tl.load(a_ptr + k * H + h)
    cs = tl.cumsum(dt_h * a_h, axis=0)
    decay = tl.exp(tl.where(causal, cs[:, None] - cs[None, :], float("-inf")))
    xm = _rows(xbc_n, offs_t, t_ok, h * P, offs_p, p_ok, C)
    xf = xm.to(tl.float32)
    return dt_h, a_h, decay, xf, (xf * dt_h[:, None]).to(xm.dtype)


@_tuned
@triton.jit
def _fwd_kernel(
    xbc, step, a_ptr, d_ptr, y,
    T, B,
    H: tl.constexpr, P: tl.constexpr, G: tl.constexpr, N: tl.constexpr,
    TP: tl.constexpr, PP: tl.constexpr, NP: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip  # pragma: no cover - compiled by Triton
    # names bound before the head loop are never rebound inside it: Triton would carry them
    _seq, g, k, row0, offs_t, t_ok, offs_p, p_ok, causal = _program(T, B, P, TP, PP)
    E = H * P
    C = E + 2 * G * N
    xbc_n = xbc + row0 * C
    step_n = step + row0 * H
    _bm, _cm, cb = _group_cb(xbc_n, g, offs_t, t_ok, E, C, G, N, NP, PREC)
    for r in range(H // G):
        h = g * (H // G) + r
        # fmt: off
        _dt_h, _a_h, decay, xf, xdt = _head(xbc_n, step_n, a_ptr, k, h, offs_t, t_ok, offs_p,
                                            p_ok, causal, H, P, C)
        # fmt: on
        out = tl.dot((cb * decay).to(xdt.dtype), xdt, input_precision=PREC)
        out += tl.load(d_ptr + k * H + h) * xf
        ptr = y + row0 * E + offs_t[:, None] * E + (h * P + offs_p)[None, :]
        tl.store(ptr, out.to(xdt.dtype), mask=t_ok[:, None] & p_ok[None, :])


@_tuned
@triton.jit
def _bwd_kernel(
    xbc, step, a_ptr, d_ptr, dy, dxbc, dstep, da_part, dd_part,
    T, B,
    H: tl.constexpr, P: tl.constexpr, G: tl.constexpr, N: tl.constexpr,
    TP: tl.constexpr, PP: tl.constexpr, NP: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip  # pragma: no cover - compiled by Triton
    n, g, k, row0, offs_t, t_ok, offs_p, p_ok, causal = _program(T, B, P, TP, PP)
    E = H * P
    C = E + 2 * G * N
    xbc_n = xbc + row0 * C
    dxbc_n = dxbc + row0 * C
    step_n = step + row0 * H
    dt = xbc.dtype.element_ty
    bm, cm, cb = _group_cb(xbc_n, g, offs_t, t_ok, E, C, G, N, NP, PREC)
    dcb = tl.zeros((TP, TP), dtype=tl.float32)
    for r in range(H // G):
        h = g * (H // G) + r
        # fmt: off
        dt_h, a_h, decay, xf, xdt = _head(xbc_n, step_n, a_ptr, k, h, offs_t, t_ok, offs_p, p_ok,
                                          causal, H, P, C)
        # fmt: on
        dym = _rows(dy + row0 * E, offs_t, t_ok, h * P, offs_p, p_ok, E)
        d_xdt = tl.dot(tl.trans((cb * decay).to(dt)), dym, input_precision=PREC)  # (T, P)
        ds = tl.dot(dym, tl.trans(xdt), input_precision=PREC)  # (T, T)
        ds_decay = ds * decay
        dcb += ds_decay
        dseg = ds_decay * cb
        dcs = tl.sum(dseg, axis=1) - tl.sum(dseg, axis=0)
        d_adt = tl.sum(dcs, axis=0) - tl.cumsum(dcs, axis=0) + dcs  # Σ over t >= s
        d_dt = d_adt * a_h + tl.sum(d_xdt * xf, axis=1)
        tl.store(dstep + row0 * H + offs_t * H + h, d_dt, mask=t_ok)
        tl.store(da_part + n * H + h, tl.sum(d_adt * dt_h, axis=0))
        dyf = dym.to(tl.float32)
        tl.store(dd_part + n * H + h, tl.sum(tl.sum(dyf * xf, axis=1), axis=0))
        dx = d_xdt * dt_h[:, None] + dyf * tl.load(d_ptr + k * H + h)
        ptr = dxbc_n + offs_t[:, None] * C + (h * P + offs_p)[None, :]
        tl.store(ptr, dx.to(dt), mask=t_ok[:, None] & p_ok[None, :])
    dcb_lo = dcb.to(dt)
    offs_n = tl.arange(0, NP)
    tn_ok = t_ok[:, None] & (offs_n < N)[None, :]
    dc = tl.dot(dcb_lo, bm, input_precision=PREC)  # (T, N)
    db = tl.dot(tl.trans(dcb_lo), cm, input_precision=PREC)
    rows = dxbc_n + offs_t[:, None] * C
    tl.store(rows + (E + g * N + offs_n)[None, :], db.to(dt), mask=tn_ok)
    tl.store(rows + (E + G * N + g * N + offs_n)[None, :], dc.to(dt), mask=tn_ok)


def _launch_args(xbc: Tensor, t: int, p: int, n: int) -> dict[str, object]:
    return {
        "TP": max(MIN_TILE, triton.next_power_of_2(t)),
        "PP": max(MIN_TILE, triton.next_power_of_2(p)),
        "NP": max(MIN_TILE, triton.next_power_of_2(n)),
        "PREC": "ieee" if xbc.dtype == torch.float32 else "tf32",
    }


@torch.library.custom_op("aira::ssd_xbc_fwd", mutates_args=())
def ssd_xbc_fwd(
    xbc: Tensor, step: Tensor, a: Tensor, d: Tensor, heads: int, groups: int, d_state: int
) -> Tensor:
    """Args: xbc (K, B, T, C), step (K, B, T, H) fp32, a and d (K, H) fp32, contiguous.

    Returns: y (K, B, T, H·P) in xbc's dtype.
    """
    k, b, t, c = xbc.shape
    p = (c - 2 * groups * d_state) // heads
    y = xbc.new_empty(k, b, t, heads * p)
    _fwd_kernel[(k * b, groups)](
        xbc, step, a, d, y, t, b,
        H=heads, P=p, G=groups, N=d_state, **_launch_args(xbc, t, p, d_state),
    )  # fmt: skip
    return y


@ssd_xbc_fwd.register_fake
def _(
    xbc: Tensor, step: Tensor, a: Tensor, d: Tensor, heads: int, groups: int, d_state: int
) -> Tensor:
    k, b, t, c = xbc.shape
    return xbc.new_empty(k, b, t, c - 2 * groups * d_state)


@torch.library.custom_op("aira::ssd_xbc_bwd", mutates_args=())
def ssd_xbc_bwd(
    dy: Tensor,
    xbc: Tensor,
    step: Tensor,
    a: Tensor,
    d: Tensor,
    heads: int,
    groups: int,
    d_state: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`ssd_xbc_fwd`: dxbc in xbc's dtype; dstep, da and dd in fp32."""
    k, b, t, c = xbc.shape
    p = (c - 2 * groups * d_state) // heads
    dy = dy.contiguous()
    dxbc = torch.empty_like(xbc)
    dstep = torch.empty_like(step)
    da_part = step.new_empty(k, b, heads)
    dd_part = step.new_empty(k, b, heads)
    _bwd_kernel[(k * b, groups)](
        xbc, step, a, d, dy, dxbc, dstep, da_part, dd_part, t, b,
        H=heads, P=p, G=groups, N=d_state, **_launch_args(xbc, t, p, d_state),
    )  # fmt: skip
    return dxbc, dstep, da_part.sum(1), dd_part.sum(1)


@ssd_xbc_bwd.register_fake
def _(
    dy: Tensor,
    xbc: Tensor,
    step: Tensor,
    a: Tensor,
    d: Tensor,
    heads: int,
    groups: int,
    d_state: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return torch.empty_like(xbc), torch.empty_like(step), torch.empty_like(a), torch.empty_like(d)


def _setup(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: Tensor) -> None:  # type: ignore[type-arg]
    xbc, step, a, d, heads, groups, d_state = inputs
    ctx.save_for_backward(xbc, step, a, d)
    ctx.dims = (heads, groups, d_state)  # type: ignore[attr-defined]


def _backward(ctx: torch.autograd.function.FunctionCtx, dy: Tensor) -> tuple:  # type: ignore[type-arg]
    xbc, step, a, d = ctx.saved_tensors  # type: ignore[attr-defined]
    grads = ssd_xbc_bwd(dy, xbc, step, a, d, *ctx.dims)  # type: ignore[attr-defined]
    return (*grads, None, None, None)


ssd_xbc_fwd.register_autograd(_backward, setup_context=_setup)
