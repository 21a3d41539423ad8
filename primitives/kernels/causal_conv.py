"""Mamba2's depthwise causal conv and SiLU for stacked candidates (Triton).

The fused evaluator's Mamba2 block convolves every channel of xBC over the last W tokens of its
own sequence: out[t, c] = silu(b[c] + Σ_j w[c, j] · x[t - (W - 1 - j), c]), zeros before the
sequence. Written as W shifted products, ``torch.compile`` made it three elementwise and
reduction kernels that ran at about a quarter of the memory bandwidth (a third of the Mamba2
step in the H200 profile in bench/results). Here the forward is one pass over x, and the
backward two: one forms dL/d(pre-activation), one applies the transposed conv for dL/dx and,
walking whole sequences, sums the weight and bias gradients per sequence.

Scope: CUDA tensors whose channels are contiguous (rows may be strided, as in a slice of the
in_proj output), W <= 4 taps (Mamba2's default is 4). Callers check
:func:`causal_conv_supported`; ``AIRA_TRITON_CONV=0`` switches the kernel off. Triton is
imported on first use only.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from primitives.kernels._triton import triton_available

__all__ = ["MAX_TAPS", "causal_conv_silu", "causal_conv_supported"]

MAX_TAPS = 4


def causal_conv_supported(device: torch.device, taps: int) -> bool:
    """Whether :func:`causal_conv_silu` runs a conv of ``taps`` taps on this device."""
    return (
        device.type == "cuda"
        and 1 <= taps <= MAX_TAPS
        and os.environ.get("AIRA_TRITON_CONV", "1") != "0"
        and triton_available()
    )


def causal_conv_silu(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """silu(causal depthwise conv(x) + bias) per candidate, differentiable.

    Args:
        x: (K, B, T, C), channels contiguous.
        weight: (K, C, W) taps, the last one applied to the current token.
        bias: (K, C).

    Returns:
        (K, B, T, C) contiguous, in x's dtype (accumulated in fp32).
    """
    k, _, _, c = x.shape
    if weight.dim() != 3 or weight.shape[:2] != (k, c) or bias.shape != (k, c):
        raise ValueError(
            f"weight {tuple(weight.shape)} and bias {tuple(bias.shape)} do not match "
            f"x {tuple(x.shape)}: expected (K, C, W) and (K, C)"
        )
    if not 1 <= weight.shape[-1] <= MAX_TAPS:
        raise ValueError(f"{weight.shape[-1]} taps: the kernel takes 1 to {MAX_TAPS}")
    from primitives.kernels._causal_conv_triton import causal_conv_silu_fwd

    y = causal_conv_silu_fwd(x, weight.contiguous(), bias.contiguous())
    assert isinstance(y, Tensor)
    return y
