"""Triton kernels behind :mod:`primitives.kernels.tiny_attention` (imported only when used).

Layout: the packed projection is channels-first, qkv (K, C, B·T) with C = (H + 2G)·P (the
product W x_kᵀ of one batched matmul); sequence n = k·B + b of candidate k. Every head's P
feature rows are then T contiguous values each, so a (sequence, head) tile is loaded with whole
memory sectors. The output o is (K, H·P, B·T) likewise.

One program owns one (sequence, head) pair, or in the backward pass one (sequence, kv head) pair
with the query heads that read it, and the whole sequence (T <= 128): the score matrix stays in
registers and no atomics are needed. The backward pass splits sequences of 17 or more tokens in
two halves and computes three of the four (query half, key half) tiles, the causal mask's empty
one skipped (``AIRA_ATTENTION_BWD_HALVES=0`` keeps the one-block kernel): at the proxy's shape
154 registers and no spills per thread instead of 255 and 48 B, and 1936 instructions instead of
2056 (bench/kernel_sass.py), and a (mA M)x8 K = 32 step of 46.9 ms instead of 48.0 (H100). The
forward pass in halves was slower in that step (47.3 ms with both), so it keeps one block. A
backward in four quarters (ten of sixteen tiles, written out like the halves, each query
quarter's dQ stored before the next) compiled to 255 registers, 320 B of spills and 4104
instructions per thread at 4 warps (each tile's transposes go through shared memory, 203
barriers), so it was not timed.

Queries and keys are rotated as they are loaded (RoPE, halves convention of
:func:`primitives.attention.apply_rotary`): x_rot = x ⊙ cos + x_perm ⊙ sin±, where x_perm swaps the
two halves of the head and sin± is -sin on the first half and +sin on the second. The head
(P <= 16) is zero-padded to 16 columns for ``tl.dot``. Backward through the rotation: with G =
dL/dx_rot, dL/dx = G ⊙ cos - G_perm ⊙ sin±, and G_perm = dS · k_rot_perm where k_rot_perm = k_perm
⊙ cos - k ⊙ sin±. The packed tiles [x_rot | x_rot_perm] are built in registers from half-width
loads of x, x_perm, cos and sin±; loading them column by column (each packed column's own x,
partner, cos and sin) spent the kernels' busiest pipe, the integer one, on addresses: forward and
backward took 3.48-3.57 ms against 2.95-2.96 ms with half-width loads (H100,
bench/attention_kernel.py, alternating runs).

Per score the kernels do as little as they can, since at 8 features per head the elementwise
work on the (T, T) scores, not the products, sets their speed: the softmax runs in base 2 with
scale · log2(e) folded into the keys once per program (the saved log-sum-exp is base 2 too), the
forward normalises the (rows, P) output instead of the (rows, T) probabilities, and the backward
multiplies by the softmax scale per gradient row instead of per score and takes dP - Δ from the
product itself (two spare value columns). The rotary tables are loaded once per program when one
query block is the whole sequence (the tuned case). These two took the backward from 1.79 to
1.58 ms and the forward from 0.66 to 0.62 ms on an H100 (4096 sequences x T 127, 16 heads x 8,
bf16; stop 17). (Transposed scores in the backward, keys x queries, so that P^T and dS^T would
feed the dV and dK products without a transpose, measured slower on an H200: 2.93 against
2.34 ms. Skipping the causal mask's zero blocks did not pay either: T in 4 query/key blocks took
5.21 against 3.43 ms forward and backward, in 2 blocks 3.32 against 3.44 ms, with a slower
forward.)
"""

from __future__ import annotations

import os
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from primitives.kernels._triton import INTERPRETED, autotuned

LOG2E = 1.4426950408889634
_CONFIGS = [triton.Config({"BLOCK_M": m}, num_warps=w) for m in (32, 64, 128) for w in (4, 8)]
# The forward also tries the whole sequence in 2 warps and in 4 warps held to 96 registers (more
# programs per SM; the forward is bound by latency): 0.68 and 0.66 ms against 0.76 for the best
# of the shared configurations (4 warps), on an H200 at 4096 sequences x T 127, 16 heads x 8,
# bf16 (stop 16). The backward lost with both (3.1 and 6.8 ms against 1.8: fewer registers spill).
_FWD_CONFIGS = [
    *_CONFIGS,
    triton.Config({"BLOCK_M": 128}, num_warps=2),
    triton.Config({"BLOCK_M": 128}, num_warps=4, maxnreg=96),
]


def _prune(configs: list[Any], named_args: dict[str, Any], **kwargs: Any) -> list[Any]:
    """Query blocks no taller than the sequence block (a launch keyword), and no register cap
    in fp32: ptxas cannot fit the fp32 forward in 96 registers (its allocation fails)."""
    block_t = kwargs.get("BLOCK_T", named_args.get("BLOCK_T"))
    wide = named_args["qkv"].dtype == torch.float32
    kept = [
        c
        for c in configs
        if c.kwargs["BLOCK_M"] <= block_t and not (wide and c.maxnreg is not None)
    ]
    return kept or [triton.Config({"BLOCK_M": block_t}, num_warps=4)]


# the query block and num_warps, timed once per shape; in the interpreter one query block of 32
# rows (a launch keyword, so that the block loop is exercised)
_KEY = ["T", "H", "G", "P"]
_PRUNE = {"early_config_prune": _prune}
_tuned_fwd = autotuned(_FWD_CONFIGS, key=_KEY, prune_configs_by=_PRUNE)
_tuned = autotuned(_CONFIGS, key=_KEY, prune_configs_by=_PRUNE)
# the backward in halves also tries 4 warps held to 128 registers: four programs per SM instead
# of three (154 registers free), if its spills cost less than the occupancy buys
_tuned_halves = autotuned(
    [
        *(triton.Config({}, num_warps=w) for w in (4, 8)),
        triton.Config({}, num_warps=4, maxnreg=128),
    ],
    key=_KEY,
)


@triton.jit
def _trig(cos_ptr, sin_ptr, offs, valid, P: tl.constexpr, HW: tl.constexpr):  # pragma: no cover
    """cos and sin± at positions ``offs``, the head's first HW features: (ROWS, HW) fp32 each,
    zero past P. Both tables repeat across the two halves of the head, so these serve the
    packed [x_rot | x_rot_perm] tiles whole."""
    offs_h = tl.arange(0, HW)
    mask = valid[:, None] & (offs_h < P)[None, :]
    trig = offs[:, None] * P + offs_h[None, :]
    cos = tl.load(cos_ptr + trig, mask=mask, other=0.0)
    return cos, tl.load(sin_ptr + trig, mask=mask, other=0.0)


@triton.jit
def _rotated_head(base, head, t0, offs, valid, bt, cos, sin, ROWS: tl.constexpr, P: tl.constexpr,
                  HW: tl.constexpr):  # fmt: skip  # pragma: no cover - Triton
    """[x_rot | x_rot_perm] of head ``head`` (P channel rows from ``base``) at positions ``offs``
    with their ``cos`` and ``sin`` (:func:`_trig`): (ROWS, 2·HW) fp32.

    Column i < HW holds rotated feature i, column HW + i rotated feature π(i), π swapping the two
    halves of the head; columns at or past P in either half are zero. Both halves come from one
    half-width load of x and x_perm each: the tables repeat across the two halves and sin±
    changes sign, so x_rot[π(i)] = x_perm[i] cos[i] - x[i] sin±[i].
    """
    offs_h = tl.arange(0, HW)
    mask = valid[:, None] & (offs_h < P)[None, :]
    ptrs = base + head * P * bt + t0 + offs[:, None]
    x = tl.load(ptrs + offs_h[None, :] * bt, mask=mask, other=0.0).to(tl.float32)
    xp = tl.load(ptrs + ((offs_h + P // 2) % P)[None, :] * bt, mask=mask, other=0.0)
    xp = xp.to(tl.float32)
    rot = tl.join(x * cos + xp * sin, xp * cos - x * sin)  # (ROWS, HW, 2)
    return tl.reshape(tl.permute(rot, (0, 2, 1)), (ROWS, 2 * HW))


@triton.jit
def _unrotate(grad, cos, sin, ROWS: tl.constexpr, HW: tl.constexpr):  # pragma: no cover - Triton
    """Gradient of [x_rot | x_rot_perm] (ROWS, 2·HW) -> gradient of x (ROWS, HW), with the
    positions' ``cos`` and ``sin`` (:func:`_trig`)."""
    g, g_perm = tl.split(tl.permute(tl.reshape(grad, (ROWS, 2, HW)), (0, 2, 1)))
    return g * cos - g_perm * sin


@triton.jit
def _query_trig(cos_ptr, sin_ptr, offs_m, in_m, cos_t, sin_t, P: tl.constexpr, HW: tl.constexpr,
                BLOCK_T: tl.constexpr, BLOCK_M: tl.constexpr):  # fmt: skip  # pragma: no cover
    """The query block's cos and sin±: the sequence's own when the block is the whole sequence
    (loaded once per program), else loaded for the block."""
    if BLOCK_M == BLOCK_T:
        cos, sin = cos_t, sin_t
    else:
        cos, sin = _trig(cos_ptr, sin_ptr, offs_m, in_m, P, HW)
    return cos, sin


@triton.jit
def _head_ptrs(base, head, t0, offs, offs_c, bt, P: tl.constexpr):  # pragma: no cover - Triton
    """Pointers to features ``offs_c`` of head ``head`` at positions ``offs``: (len, width)."""
    return base + head * P * bt + t0 + offs[:, None] + offs_c[None, :] * bt


@triton.jit
def _program(T, B):  # pragma: no cover - Triton
    """This program's sequence n = k·B + b and head (the launch grid's two axes), its candidate
    k, the sequence's first column t0 and the channel stride B·T of qkv, out and their
    gradients."""
    n = tl.program_id(0)
    return n, tl.program_id(1), n // B, (n % B) * T, B * T


@_tuned_fwd
@triton.jit
def _fwd_kernel(
    qkv, cos_ptr, sin_ptr, out, lse_ptr,
    T, B, s_qk, s_ok, qk_scale,
    H: tl.constexpr, G: tl.constexpr, P: tl.constexpr, HW: tl.constexpr, VW: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip  # pragma: no cover - compiled by Triton
    n, h, k_idx, t0, bt = _program(T, B)
    g = h // (H // G)
    offs_t = tl.arange(0, BLOCK_T)
    offs_v = tl.arange(0, VW)  # value, output features (tl.dot needs >= 16)
    in_t = offs_t < T
    v_ok = (offs_v < P)[None, :]
    base = qkv + k_idx * s_qk
    dt = qkv.dtype.element_ty
    cos_t, sin_t = _trig(cos_ptr, sin_ptr, offs_t, in_t, P, HW)
    kp = _rotated_head(base, H + g, t0, offs_t, in_t, bt, cos_t, sin_t, BLOCK_T, P, HW)
    # scores in log2 units: q_rot · k_rot · scale · log2(e); the packed tiles sum it twice
    kp = (kp * qk_scale).to(dt)
    v_ptr = _head_ptrs(base, H + G + g, t0, offs_t, offs_v, bt, P)
    v = tl.load(v_ptr, mask=in_t[:, None] & v_ok, other=0.0)
    for m0 in range(0, BLOCK_T, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        in_m = offs_m < T
        cos_m, sin_m = _query_trig(cos_ptr, sin_ptr, offs_m, in_m, cos_t, sin_t, P, HW, BLOCK_T,
                                   BLOCK_M)  # fmt: skip
        qp = _rotated_head(base, h, t0, offs_m, in_m, bt, cos_m, sin_m, BLOCK_M, P, HW)
        s = tl.dot(qp.to(dt), tl.trans(kp))
        # a valid row's keys are all valid; a padding row's output is not stored
        s = tl.where(offs_t[None, :] <= offs_m[:, None], s, float("-inf"))
        m = tl.max(s, axis=1)
        p = tl.exp2(s - m[:, None])
        denom = tl.sum(p, axis=1)
        o = tl.dot(p.to(dt), v) * (1.0 / denom)[:, None]
        o_ptr = _head_ptrs(out + k_idx * s_ok, h, t0, offs_m, offs_v, bt, P)
        tl.store(o_ptr, o.to(dt), mask=in_m[:, None] & v_ok)
        tl.store(lse_ptr + (n * H + h) * T + offs_m, m + tl.log2(denom), mask=in_m)


@_tuned
@triton.jit
def _bwd_kernel(
    qkv, cos_ptr, sin_ptr, out, dout, lse_ptr, dqkv,
    T, B, s_qk, s_ok, s_dok, s_dok_c, s_dok_t, qk_scale, scale,
    H: tl.constexpr, G: tl.constexpr, P: tl.constexpr, HW: tl.constexpr, VW: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_M: tl.constexpr, FOLD: tl.constexpr,
):  # fmt: skip  # pragma: no cover - compiled by Triton
    n, g, k_idx, t0, bt = _program(T, B)
    offs_t = tl.arange(0, BLOCK_T)
    offs_v = tl.arange(0, VW)  # value, output features (tl.dot needs >= 16)
    offs_h = tl.arange(0, HW)  # query, key features
    in_t = offs_t < T
    v_ok = (offs_v < P)[None, :]
    h_ok = (offs_h < P)[None, :]
    base = qkv + k_idx * s_qk
    dbase = dqkv + k_idx * s_qk
    dt = qkv.dtype.element_ty
    cos_t, sin_t = _trig(cos_ptr, sin_ptr, offs_t, in_t, P, HW)
    kp = _rotated_head(base, H + g, t0, offs_t, in_t, bt, cos_t, sin_t, BLOCK_T, P, HW)
    kp_q = kp.to(dt)  # for dQ
    kp = (kp * qk_scale).to(dt)  # for the scores, as in the forward pass
    v_ptr = _head_ptrs(base, H + G + g, t0, offs_t, offs_v, bt, P)
    v = tl.load(v_ptr, mask=in_t[:, None] & v_ok, other=0.0)
    # FOLD: Δ = rowsum(dO ⊙ O) folded into the dP product (the padded head has two spare value
    # columns; bf16 or fp32, whose range holds Δ): ones there in V, -Δ in dO (split into two parts
    # of the products' dtype, so that the fp32 sum keeps Δ's precision) make dO·Vᵀ = dP - Δ, one
    # subtraction per score fewer
    spare = (offs_v == P) | (offs_v == P + 1)
    if FOLD:
        v = tl.where(spare[None, :], 1.0, v.to(tl.float32)).to(dt)
    dkp = tl.zeros((BLOCK_T, 2 * HW), dtype=tl.float32)
    dv = tl.zeros((BLOCK_T, VW), dtype=tl.float32)
    for r in range(H // G):
        h = g * (H // G) + r
        for m0 in range(0, BLOCK_T, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            in_m = offs_m < T
            m_mask = in_m[:, None] & v_ok
            cos_m, sin_m = _query_trig(cos_ptr, sin_ptr, offs_m, in_m, cos_t, sin_t, P, HW,
                                       BLOCK_T, BLOCK_M)  # fmt: skip
            qp = _rotated_head(base, h, t0, offs_m, in_m, bt, cos_m, sin_m, BLOCK_M, P, HW)
            qp = qp.to(dt)
            s = tl.dot(qp, tl.trans(kp))
            lse = tl.load(lse_ptr + (n * H + h) * T + offs_m, mask=in_m, other=0.0)
            p = tl.where(offs_t[None, :] <= offs_m[:, None], tl.exp2(s - lse[:, None]), 0.0)
            do_ptr = (
                dout
                + k_idx * s_dok
                + (h * P + offs_v[None, :]) * s_dok_c
                + (t0 + offs_m[:, None]) * s_dok_t
            )
            do = tl.load(do_ptr, mask=m_mask, other=0.0).to(dt)
            o_ptr = _head_ptrs(out + k_idx * s_ok, h, t0, offs_m, offs_v, bt, P)
            o = tl.load(o_ptr, mask=m_mask, other=0.0)
            delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)
            if FOLD:
                hi = delta.to(dt)
                lo = (delta - hi.to(tl.float32)).to(dt)
                folded = tl.where(offs_v[None, :] == P, -hi[:, None], -lo[:, None])
                do = tl.where(spare[None, :], folded, do)  # dV's spare columns are not stored
            dv += tl.dot(tl.trans(p.to(dt)), do)
            dp = tl.dot(do, tl.trans(v))
            # dS without the softmax scale, which multiplies dQ and dK once per row instead
            if not FOLD:
                dp -= delta[:, None]
            ds = (p * dp).to(dt)
            # ds · k_packed = [dL/dq_rot | dL/dq_rot_perm]: each half alone carries the full
            # gradient (the 1/2 on the packed scores cancels the doubled sum)
            dq = _unrotate(tl.dot(ds, kp_q) * scale, cos_m, sin_m, BLOCK_M, HW)
            dkp += tl.dot(tl.trans(ds), qp)
            dq_ptr = _head_ptrs(dbase, h, t0, offs_m, offs_h, bt, P)
            tl.store(dq_ptr, dq.to(dt), mask=in_m[:, None] & h_ok)
    dk = _unrotate(dkp * scale, cos_t, sin_t, BLOCK_T, HW)
    dk_ptr = _head_ptrs(dbase, H + g, t0, offs_t, offs_h, bt, P)
    tl.store(dk_ptr, dk.to(dt), mask=in_t[:, None] & h_ok)
    dv_ptr = _head_ptrs(dbase, H + G + g, t0, offs_t, offs_v, bt, P)
    tl.store(dv_ptr, dv.to(dt), mask=in_t[:, None] & v_ok)


@triton.jit
def _bwd_block_pair(qp, kp, kp_q, v, do, lse, delta, offs_m, offs_n, DIAG: tl.constexpr,
                    FOLD: tl.constexpr):  # fmt: skip  # pragma: no cover - Triton
    """One (query block, key block) tile of the backward pass: the contributions to dV of the
    keys, to [dq_rot | dq_rot_perm] of the queries and to [dk_rot | dk_rot_perm] of the keys
    (unscaled). ``DIAG``: the tile straddles the causal diagonal and is masked."""
    dt = kp.dtype
    p = tl.exp2(tl.dot(qp, tl.trans(kp)) - lse[:, None])
    if DIAG:
        p = tl.where(offs_n[None, :] <= offs_m[:, None], p, 0.0)
    dv = tl.dot(tl.trans(p.to(dt)), do)
    dp = tl.dot(do, tl.trans(v))
    if not FOLD:
        dp -= delta[:, None]
    ds = (p * dp).to(dt)
    return dv, tl.dot(ds, kp_q), tl.dot(tl.trans(ds), qp)


@triton.jit
def _bwd_query_half(base, dout_k, out_k, lse_ptr, row, h, t0, offs, valid, bt, cos, sin,
                    s_dok_c, s_dok_t, P: tl.constexpr, HW: tl.constexpr, VW: tl.constexpr,
                    ROWS: tl.constexpr, FOLD: tl.constexpr):  # fmt: skip  # pragma: no cover
    """One half of query head ``h``'s rows: its packed rotated queries, log-sum-exp, dO (with
    -Δ in the spare columns when FOLD) and Δ."""
    dt = base.dtype.element_ty
    offs_v = tl.arange(0, VW)
    mask = valid[:, None] & (offs_v < P)[None, :]
    qp = _rotated_head(base, h, t0, offs, valid, bt, cos, sin, ROWS, P, HW).to(dt)
    lse = tl.load(lse_ptr + row + offs, mask=valid, other=0.0)
    do_ptr = dout_k + (h * P + offs_v[None, :]) * s_dok_c + (t0 + offs[:, None]) * s_dok_t
    do = tl.load(do_ptr, mask=mask, other=0.0).to(dt)
    o = tl.load(_head_ptrs(out_k, h, t0, offs, offs_v, bt, P), mask=mask, other=0.0)
    delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)
    if FOLD:
        hi = delta.to(dt)
        lo = (delta - hi.to(tl.float32)).to(dt)
        folded = tl.where(offs_v[None, :] == P, -hi[:, None], -lo[:, None])
        do = tl.where(((offs_v == P) | (offs_v == P + 1))[None, :], folded, do)
    return qp, lse, do, delta


@triton.jit
def _key_half(base, g, t0, offs, valid, bt, cos, sin, qk_scale, H: tl.constexpr, G: tl.constexpr,
              P: tl.constexpr, HW: tl.constexpr, VW: tl.constexpr, ROWS: tl.constexpr,
              FOLD: tl.constexpr):  # fmt: skip  # pragma: no cover - Triton
    """One half of kv head ``g``'s rows: packed rotated keys scaled for the scores and unscaled
    for dQ, and values (ones in the spare columns when FOLD)."""
    dt = base.dtype.element_ty
    offs_v = tl.arange(0, VW)
    kp = _rotated_head(base, H + g, t0, offs, valid, bt, cos, sin, ROWS, P, HW)
    v_ptr = _head_ptrs(base, H + G + g, t0, offs, offs_v, bt, P)
    v = tl.load(v_ptr, mask=valid[:, None] & (offs_v < P)[None, :], other=0.0)
    if FOLD:
        spare = ((offs_v == P) | (offs_v == P + 1))[None, :]
        v = tl.where(spare, 1.0, v.to(tl.float32)).to(dt)
    return (kp * qk_scale).to(dt), kp.to(dt), v


@_tuned_halves
@triton.jit
def _bwd_halves_kernel(
    qkv, cos_ptr, sin_ptr, out, dout, lse_ptr, dqkv,
    T, B, s_qk, s_ok, s_dok, s_dok_c, s_dok_t, qk_scale, scale,
    H: tl.constexpr, G: tl.constexpr, P: tl.constexpr, HW: tl.constexpr, VW: tl.constexpr,
    BLOCK_T: tl.constexpr, FOLD: tl.constexpr,
):  # fmt: skip  # pragma: no cover - compiled by Triton
    """The backward pass with the sequence in two halves: of the four (query half, key half)
    tiles the causal mask leaves three, the upper-left and lower-right masked on their diagonal,
    so a quarter of the scores' elementwise work and exponentials is skipped and each tile is a
    quarter of the (T, T) one in registers."""
    HB: tl.constexpr = BLOCK_T // 2
    n, g, k_idx, t0, bt = _program(T, B)
    offs0 = tl.arange(0, HB)
    offs1 = HB + offs0
    in0 = offs0 < T
    in1 = offs1 < T
    offs_h = tl.arange(0, HW)
    h_ok = (offs_h < P)[None, :]
    base = qkv + k_idx * s_qk
    dbase = dqkv + k_idx * s_qk
    dout_k = dout + k_idx * s_dok
    out_k = out + k_idx * s_ok
    cos0, sin0 = _trig(cos_ptr, sin_ptr, offs0, in0, P, HW)
    cos1, sin1 = _trig(cos_ptr, sin_ptr, offs1, in1, P, HW)
    # fmt: off
    k0, k0_q, v0 = _key_half(base, g, t0, offs0, in0, bt, cos0, sin0, qk_scale, H, G, P, HW, VW,
                             HB, FOLD)
    k1, k1_q, v1 = _key_half(base, g, t0, offs1, in1, bt, cos1, sin1, qk_scale, H, G, P, HW, VW,
                             HB, FOLD)
    # fmt: on
    dk0 = tl.zeros((HB, 2 * HW), dtype=tl.float32)
    dk1 = tl.zeros((HB, 2 * HW), dtype=tl.float32)
    dv0 = tl.zeros((HB, VW), dtype=tl.float32)
    dv1 = tl.zeros((HB, VW), dtype=tl.float32)
    for r in range(H // G):
        h = g * (H // G) + r
        row = (n * H + h) * T
        # fmt: off
        q0, lse0, do0, delta0 = _bwd_query_half(base, dout_k, out_k, lse_ptr, row, h, t0, offs0,
                                                in0, bt, cos0, sin0, s_dok_c, s_dok_t, P, HW,
                                                VW, HB, FOLD)
        q1, lse1, do1, delta1 = _bwd_query_half(base, dout_k, out_k, lse_ptr, row, h, t0, offs1,
                                                in1, bt, cos1, sin1, s_dok_c, s_dok_t, P, HW,
                                                VW, HB, FOLD)
        dv, dq0, dk = _bwd_block_pair(q0, k0, k0_q, v0, do0, lse0, delta0, offs0, offs0, True,
                                      FOLD)
        dv0 += dv
        dk0 += dk
        dv, dq1, dk = _bwd_block_pair(q1, k0, k0_q, v0, do1, lse1, delta1, offs1, offs0, False,
                                      FOLD)
        dv0 += dv
        dk0 += dk
        dv, dq, dk = _bwd_block_pair(q1, k1, k1_q, v1, do1, lse1, delta1, offs1, offs1, True,
                                     FOLD)
        # fmt: on
        dv1 += dv
        dk1 += dk
        dq1 += dq
        dq0 = _unrotate(dq0 * scale, cos0, sin0, HB, HW)
        dq_ptr = _head_ptrs(dbase, h, t0, offs0, offs_h, bt, P)
        tl.store(dq_ptr, dq0.to(qkv.dtype.element_ty), mask=in0[:, None] & h_ok)
        dq1 = _unrotate(dq1 * scale, cos1, sin1, HB, HW)
        dq_ptr = _head_ptrs(dbase, h, t0, offs1, offs_h, bt, P)
        tl.store(dq_ptr, dq1.to(qkv.dtype.element_ty), mask=in1[:, None] & h_ok)
    _store_key_half(dbase, g, t0, offs0, in0, bt, dk0, dv0, cos0, sin0, scale, H, G, P, HW, VW, HB)
    _store_key_half(dbase, g, t0, offs1, in1, bt, dk1, dv1, cos1, sin1, scale, H, G, P, HW, VW, HB)


@triton.jit
def _store_key_half(dbase, g, t0, offs, valid, bt, dk, dv, cos, sin, scale, H: tl.constexpr,
                    G: tl.constexpr, P: tl.constexpr, HW: tl.constexpr, VW: tl.constexpr,
                    ROWS: tl.constexpr):  # fmt: skip  # pragma: no cover - Triton
    """dK (unrotated, scaled) and dV of one half of kv head ``g``'s rows, stored."""
    dt = dbase.dtype.element_ty
    offs_h = tl.arange(0, HW)
    offs_v = tl.arange(0, VW)
    dk = _unrotate(dk * scale, cos, sin, ROWS, HW)
    dk_ptr = _head_ptrs(dbase, H + g, t0, offs, offs_h, bt, P)
    tl.store(dk_ptr, dk.to(dt), mask=valid[:, None] & (offs_h < P)[None, :])
    dv_ptr = _head_ptrs(dbase, H + G + g, t0, offs, offs_v, bt, P)
    tl.store(dv_ptr, dv.to(dt), mask=valid[:, None] & (offs_v < P)[None, :])


def _block_t(t: int) -> int:
    return max(16, triton.next_power_of_2(t))


def _launch_args(t: int, p: int) -> dict[str, int]:
    """The shape constants; in the interpreter also the (otherwise tuned) query block."""
    args = {
        "HW": max(8, triton.next_power_of_2(p)),
        "VW": max(16, triton.next_power_of_2(p)),
        "BLOCK_T": _block_t(t),
    }
    if INTERPRETED:
        args["BLOCK_M"] = min(32, args["BLOCK_T"])
    return args


@torch.library.custom_op("aira::tiny_attention_fwd", mutates_args=())
def tiny_attention_fwd(
    qkv: Tensor, cos: Tensor, sin: Tensor, seq_len: int, n_heads: int, kv_heads: int
) -> tuple[Tensor, Tensor]:
    """Args: qkv (K, C, B·T) contiguous; cos, sin± (T, P) fp32, columns j and j + P/2 at the
    same frequency (:func:`primitives.attention.rotary_cos_sin`'s tables); seq_len T.

    Returns: o (K, H·P, B·T) and the base-2 log-sum-exp of each score row in log2 units,
    log2 Σ_t 2^(s_t · log2 e), (K·B, H, T) fp32.
    """
    k, c, bt = qkv.shape
    p = c // (n_heads + 2 * kv_heads)
    b = bt // seq_len
    out = torch.empty(k, n_heads * p, bt, device=qkv.device, dtype=qkv.dtype)
    lse = torch.empty(k * b, n_heads, seq_len, device=qkv.device, dtype=torch.float32)
    _fwd_kernel[(k * b, n_heads)](
        qkv,
        cos,
        sin,
        out,
        lse,
        seq_len,
        b,
        qkv.stride(0),
        out.stride(0),
        0.5 * p**-0.5 * LOG2E,
        H=n_heads,
        G=kv_heads,
        P=p,
        **_launch_args(seq_len, p),
    )
    return out, lse


@tiny_attention_fwd.register_fake
def _(
    qkv: Tensor, cos: Tensor, sin: Tensor, seq_len: int, n_heads: int, kv_heads: int
) -> tuple[Tensor, Tensor]:
    k, c, bt = qkv.shape
    p = c // (n_heads + 2 * kv_heads)
    out = qkv.new_empty(k, n_heads * p, bt)
    return out, qkv.new_empty(k * (bt // seq_len), n_heads, seq_len, dtype=torch.float32)


@torch.library.custom_op("aira::tiny_attention_bwd", mutates_args=())
def tiny_attention_bwd(
    dout: Tensor,
    qkv: Tensor,
    cos: Tensor,
    sin: Tensor,
    out: Tensor,
    lse: Tensor,
    seq_len: int,
    n_heads: int,
    kv_heads: int,
) -> Tensor:
    """The gradient with respect to qkv, (K, C, B·T); dout may be strided."""
    k, c, bt = qkv.shape
    p = c // (n_heads + 2 * kv_heads)
    b = bt // seq_len
    if dout.stride(2) != 1 and dout.stride(1) != 1:
        dout = dout.contiguous()
    dqkv = torch.empty_like(qkv)
    args = _launch_args(seq_len, p)
    # Δ folded into the dP product where there are two spare value columns and Δ fits the dtype
    fold = p + 2 <= args["VW"] and qkv.dtype != torch.float16
    kernel = _bwd_kernel
    if args["BLOCK_T"] >= 32 and os.environ.get("AIRA_ATTENTION_BWD_HALVES", "1") != "0":
        kernel = _bwd_halves_kernel  # the sequence in two halves, three tiles of four
        args.pop("BLOCK_M", None)
    kernel[(k * b, kv_heads)](
        qkv,
        cos,
        sin,
        out,
        dout,
        lse,
        dqkv,
        seq_len,
        b,
        qkv.stride(0),
        out.stride(0),
        dout.stride(0),
        dout.stride(1),
        dout.stride(2),
        0.5 * p**-0.5 * LOG2E,
        p**-0.5,
        H=n_heads,
        G=kv_heads,
        P=p,
        FOLD=fold,
        **args,
    )
    return dqkv


@tiny_attention_bwd.register_fake
def _(
    dout: Tensor,
    qkv: Tensor,
    cos: Tensor,
    sin: Tensor,
    out: Tensor,
    lse: Tensor,
    seq_len: int,
    n_heads: int,
    kv_heads: int,
) -> Tensor:
    return torch.empty_like(qkv)


def _setup(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple) -> None:  # type: ignore[type-arg]
    qkv, cos, sin, seq_len, n_heads, kv_heads = inputs
    out, lse = output
    ctx.save_for_backward(qkv, cos, sin, out, lse)
    ctx.dims = (seq_len, n_heads, kv_heads)  # type: ignore[attr-defined]


def _backward(ctx: torch.autograd.function.FunctionCtx, dout: Tensor, _dlse: Tensor) -> tuple:  # type: ignore[type-arg]
    qkv, cos, sin, out, lse = ctx.saved_tensors  # type: ignore[attr-defined]
    dqkv = tiny_attention_bwd(dout, qkv, cos, sin, out, lse, *ctx.dims)  # type: ignore[attr-defined]
    return dqkv, None, None, None, None, None


tiny_attention_fwd.register_autograd(_backward, setup_context=_setup)
