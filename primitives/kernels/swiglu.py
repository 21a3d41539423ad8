"""The SwiGLU MLP of stacked candidates in two Triton kernels.

The fused evaluator's MLP layer computes y = (silu(x w1ᵀ) ⊙ (x w3ᵀ)) w2ᵀ for K candidates at
once. As batched matrix products, the (K, B·T, 2F) gate-and-up activation goes to memory and back
in both passes (1.4 KB per token at width 128, F = 352) and SwiGLU's elementwise kernels ran at
the memory roofline (the H200 profiles in bench/results). Here one kernel walks the hidden
channels of a block of tokens, keeps the (tokens, hidden) tiles in registers and writes only y
and a = silu(g) ⊙ u (needed for dL/dw2); the backward recomputes g and u, forms dL/dx in the same
walk and writes dh = [dL/dg | dL/du] for dL/dw13 = dhᵀ x. The weight gradients are two batched
products.

Scope: CUDA in bf16 or fp16 (autocast's dtypes), width D <= :data:`MAX_WIDTH` (the tiles hold
whole rows). fp32 stays with the batched products: IEEE fp32 tiles of (rows, 128) x (128, hidden)
take no tensor cores, and the fp32 GPU check of one (4, 2032, 128, 352) layer, compiling and
timing its configurations, had not finished after minutes on an H200 (stop 13).
Triton's CPU interpreter runs fp32 (the tests). Callers check :func:`swiglu_supported`;
``AIRA_TRITON_SWIGLU=0`` switches the kernels off. Triton is imported on first use only.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from primitives.kernels._triton import HALF_DTYPES, triton_available

__all__ = ["MAX_WIDTH", "swiglu_mlp", "swiglu_supported"]

MAX_WIDTH = 256


def swiglu_supported(device: torch.device, d_model: int, dtype: torch.dtype) -> bool:
    """Whether :func:`swiglu_mlp` runs a layer of width ``d_model`` in ``dtype`` on this device."""
    return (
        device.type == "cuda"
        and dtype in HALF_DTYPES
        and 1 <= d_model <= MAX_WIDTH
        and os.environ.get("AIRA_TRITON_SWIGLU", "1") != "0"
        and triton_available()
    )


def swiglu_mlp(x: Tensor, w13: Tensor, w2: Tensor) -> Tensor:
    """(silu(x w1ᵀ) ⊙ (x w3ᵀ)) w2ᵀ per candidate, differentiable.

    Args:
        x: (K, M, D) rows of each candidate.
        w13: (K, 2F, D), the gate rows w1 then the up rows w3.
        w2: (K, D, F).

    Returns:
        (K, M, D) in the common dtype of the three, bf16 or fp16 on CUDA (products accumulate
        in fp32).
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
    if d > MAX_WIDTH:
        raise ValueError(f"width {d}: the kernels take rows of at most {MAX_WIDTH}")
    if not x.dtype == w13.dtype == w2.dtype:
        raise ValueError(f"mixed dtypes: x {x.dtype}, w13 {w13.dtype}, w2 {w2.dtype}")
    if x.is_cuda and x.dtype not in HALF_DTYPES:
        raise ValueError(f"{x.dtype} on CUDA: the kernels take bf16 or fp16 (module doc)")
    from primitives.kernels._swiglu_triton import swiglu_mlp_fwd

    y, _ = swiglu_mlp_fwd(x.contiguous(), w13.contiguous(), w2.contiguous())
    assert isinstance(y, Tensor)
    return y
