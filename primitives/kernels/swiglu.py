"""The MLP block of stacked candidates, x + SwiGLU(RMSNorm(x)), in two Triton kernels.

The fused evaluator's MLP layer computes x + (silu(n w1ᵀ) ⊙ (n w3ᵀ)) w2ᵀ with n = RMSNorm(x) for
K candidates at once. As batched matrix products, the (K, B·T, 2F) gate-and-up activation goes
to memory and back in both passes (1.4 KB per token at width 128, F = 352) and SwiGLU's
elementwise kernels ran at the memory roofline (the H200 profiles in bench/results). Here one
kernel walks the hidden channels of a block of tokens, keeps the (tokens, hidden) tiles in
registers and writes only the block's output and a = silu(g) ⊙ u (needed for dL/dw2); the
backward recomputes n, g and u, forms dL/dx in the same walk and writes dh = [dL/dg | dL/du]
and n for dL/dw13 = dhᵀ n. The weight gradients are two batched products. The kernels hold
whole rows, so the norm (its statistics in fp32), its backward and the residual add ride in
them instead of taking passes of their own over the stream.

Scope: CUDA with the products in bf16 or fp16 (autocast's dtypes; the stream may be fp32),
width D <= :data:`MAX_WIDTH` (the tiles hold whole rows). fp32 products stay with the batched
products: IEEE fp32 tiles of (rows, 128) x (128, hidden) take no tensor cores, and the fp32 GPU
check of one (4, 2032, 128, 352) layer, compiling and timing its configurations, had not
finished after minutes on an H200 (stop 13). Triton's CPU interpreter runs fp32 (the tests).
Callers check :func:`swiglu_supported`; ``AIRA_TRITON_SWIGLU=0`` switches the kernels off.
Triton is imported on first use only.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from primitives.kernels._triton import HALF_DTYPES, triton_available

__all__ = ["MAX_WIDTH", "swiglu_block", "swiglu_supported"]

MAX_WIDTH = 256


def swiglu_supported(device: torch.device, d_model: int, dtype: torch.dtype) -> bool:
    """Whether :func:`swiglu_block` runs a layer of width ``d_model`` with its products in
    ``dtype`` on this device."""
    return (
        device.type == "cuda"
        and dtype in HALF_DTYPES
        and 1 <= d_model <= MAX_WIDTH
        and os.environ.get("AIRA_TRITON_SWIGLU", "1") != "0"
        and triton_available()
    )


def swiglu_block(x: Tensor, weight: Tensor, w13: Tensor, w2: Tensor, eps: float) -> Tensor:
    """x + (silu(n w1ᵀ) ⊙ (n w3ᵀ)) w2ᵀ with n = x / rms(x) ⊙ weight per candidate,
    differentiable.

    Args:
        x: (K, M, D) rows of each candidate (the residual stream, any float dtype).
        weight: (K, D), the norm's weight.
        w13: (K, 2F, D), the gate rows w1 then the up rows w3.
        w2: (K, D, F), in w13's dtype: the products' (bf16 or fp16 on CUDA).
        eps: the norm's epsilon, inside the root: rms(x) = sqrt(mean(x²) + eps).

    Returns:
        (K, M, D) in x's dtype (the norm and the products accumulate in fp32).
    """
    k, _, d = x.shape
    if w13.dim() != 3 or w2.dim() != 3 or w13.shape[0] != k or w2.shape[:2] != (k, d):
        raise ValueError(
            f"w13 {tuple(w13.shape)} and w2 {tuple(w2.shape)} do not match x {tuple(x.shape)}: "
            "expected (K, 2F, D) and (K, D, F)"
        )
    if w13.shape[1:] != (2 * w2.shape[2], d):
        raise ValueError(
            f"w13 {tuple(w13.shape)} is not the gate and up rows of w2 {tuple(w2.shape)}: "
            f"expected ({k}, {2 * w2.shape[2]}, {d})"
        )
    if weight.shape != (k, d):
        raise ValueError(
            f"norm weight {tuple(weight.shape)} does not match x: expected ({k}, {d})"
        )
    if d > MAX_WIDTH:
        raise ValueError(f"width {d}: the kernels take rows of at most {MAX_WIDTH}")
    if w13.dtype != w2.dtype:
        raise ValueError(f"mixed product dtypes: w13 {w13.dtype}, w2 {w2.dtype}")
    if x.is_cuda and w13.dtype not in HALF_DTYPES:
        raise ValueError(
            f"{w13.dtype} products on CUDA: the kernels take bf16 or fp16 (module doc)"
        )
    from primitives.kernels._swiglu_triton import swiglu_block_fwd

    out, _ = swiglu_block_fwd(
        x.contiguous(), weight.contiguous(), w13.contiguous(), w2.contiguous(), float(eps)
    )
    assert isinstance(out, Tensor)
    return out
