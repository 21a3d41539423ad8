"""Mamba2's SSD for sequences of one chunk, stacked candidates, in two Triton kernels.

With one chunk and no initial state the SSD is y = (C Bᵀ ∘ L)(x ∘ dt) + D·x, L the causal decay
(:func:`primitives.mamba2.ssd_one_chunk`). As batched products around ``torch.compile``-d
elementwise kernels, every (T, T) intermediate of every head (the decay, C Bᵀ ∘ L and their
gradients, 64 KB per head and sequence in fp32) goes to memory and back, and the backward pass
concatenates the x, B and C gradients. Here one program per (sequence, group) keeps them in
registers: the forward writes y only, the backward the gradients of xbc (in xbc's layout), dt,
A and D.

It reads x, B and C straight from the block's conv output xbc (K, B, T, H·P + 2·G·N).

Scope: CUDA in bf16 or fp16 (autocast's dtypes), T <= :data:`MAX_LEN`, head and state widths
up to :data:`MAX_WIDTH`. fp32 stays with the batched products, as for the SwiGLU kernels
(:mod:`primitives.kernels.swiglu`): IEEE fp32 (T, N) x (N, T) tiles take no tensor cores.
Triton's CPU interpreter runs fp32 (the tests). Callers check :func:`ssd_supported`;
``AIRA_TRITON_SSD=0`` switches the kernels off. Triton is imported on first use only.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from primitives.kernels._triton import HALF_DTYPES, triton_available

__all__ = ["MAX_LEN", "MAX_WIDTH", "ssd_supported", "ssd_xbc"]

MAX_LEN = 128
MAX_WIDTH = 128


def ssd_supported(
    device: torch.device, seq_len: int, head_dim: int, d_state: int, dtype: torch.dtype
) -> bool:
    """Whether :func:`ssd_xbc` runs these shapes in ``dtype`` on this device."""
    return (
        device.type == "cuda"
        and dtype in HALF_DTYPES
        and 1 <= seq_len <= MAX_LEN
        and 1 <= head_dim <= MAX_WIDTH
        and 1 <= d_state <= MAX_WIDTH
        and os.environ.get("AIRA_TRITON_SSD", "1") != "0"
        and triton_available()
    )


def ssd_xbc(
    xbc: Tensor, step: Tensor, a: Tensor, d: Tensor, *, heads: int, groups: int, d_state: int
) -> Tensor:
    """The one-chunk SSD of every sequence, differentiable.

    Args:
        xbc: (K, B, T, H·P + 2·G·N): x by head, then B and C by group.
        step: (K, B, T, H) positive step sizes dt (softplus-ed and biased).
        a: (K, H) negative decay rates.
        d: (K, H) skip weights.
        heads, groups, d_state: H, G (dividing H) and N.

    Returns:
        y (K, B, T, H·P) in xbc's dtype, bf16 or fp16 on CUDA (products accumulate in fp32, the
        decay is fp32).
    """
    k, b, t, c = xbc.shape
    p, rest = divmod(c - 2 * groups * d_state, heads)
    if heads % groups or rest or p <= 0:
        raise ValueError(
            f"xbc {tuple(xbc.shape)} does not hold {heads} heads and {groups} groups of state "
            f"{d_state}: expected H·P + 2·G·N channels with G dividing H"
        )
    if step.shape != (k, b, t, heads) or a.shape != (k, heads) or d.shape != (k, heads):
        raise ValueError(
            f"step {tuple(step.shape)}, a {tuple(a.shape)} and d {tuple(d.shape)} do not match "
            f"xbc {tuple(xbc.shape)}: expected ({k}, {b}, {t}, {heads}) and ({k}, {heads})"
        )
    if t > MAX_LEN or p > MAX_WIDTH or d_state > MAX_WIDTH:
        raise ValueError(
            f"T={t}, P={p}, N={d_state}: the kernels take T <= {MAX_LEN} and widths <= {MAX_WIDTH}"
        )
    if xbc.is_cuda and xbc.dtype not in HALF_DTYPES:
        raise ValueError(f"{xbc.dtype} on CUDA: the kernels take bf16 or fp16 (module doc)")
    from primitives.kernels._ssd_triton import ssd_xbc_fwd

    y = ssd_xbc_fwd(
        xbc.contiguous(),
        step.float().contiguous(),
        a.float().contiguous(),
        d.float().contiguous(),
        heads,
        groups,
        d_state,
    )
    assert isinstance(y, Tensor)
    return y
