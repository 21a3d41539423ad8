"""Causal attention with rotary embeddings for tiny heads and short sequences (Triton).

The MAD proxy's attention has 16 heads of 8 features over at most 128 tokens. General flash
attention kernels pad such heads to 64 or more features and tile for long sequences; on the
fused evaluator's K·B sequences they spent about half of a training step (H200 profile in
bench/results). Here one Triton program holds a whole (sequence, head) score matrix in
registers, reads queries, keys and values straight from the packed qkv projection and applies
RoPE as it loads them, so the rotated and transposed copies are never written either.

Scope: CUDA tensors, T <= 128, an even head dimension P <= 16, any GQA ratio. Callers check
:func:`tiny_attention_supported` and otherwise use
:func:`torch.nn.functional.scaled_dot_product_attention`. Triton is imported on first use only.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from primitives.attention import rotary_cos_sin
from primitives.kernels._triton import triton_available

__all__ = ["MAX_SEQ_LEN", "tiny_attention", "tiny_attention_supported"]

MAX_SEQ_LEN = 128
MAX_HEAD_DIM = 16


def tiny_attention_supported(seq_len: int, head_dim: int, device: torch.device) -> bool:
    """Whether :func:`tiny_attention` runs this shape on this device (``AIRA_TINY_ATTENTION=0``
    in the environment switches the kernel off everywhere)."""
    return (
        device.type == "cuda"
        and os.environ.get("AIRA_TINY_ATTENTION", "1") != "0"
        and seq_len <= MAX_SEQ_LEN
        and head_dim % 2 == 0
        and head_dim <= MAX_HEAD_DIM
        and triton_available()
    )


def tiny_attention(
    qkv: Tensor, *, seq_len: int, n_heads: int, kv_heads: int, rope_theta: float
) -> Tensor:
    """softmax(rope(q) rope(k)ᵀ / sqrt(P) + causal mask) v for B·K sequences, differentiable.

    Args:
        qkv: (K, C, B·T) channels-first packed projection, C = (H + 2G)·P: H query heads, then G
            key heads, then G value heads, P features each; column b·T + t is token t of
            sequence b (e.g. ``torch.bmm(w_qkv, x.transpose(1, 2))`` for x (K, B·T, D)).
        seq_len: T. n_heads, kv_heads: H and G (dividing H). rope_theta: the rotary base.

    Returns:
        (K, H·P, B·T), the heads' outputs channels-first.
    """
    if n_heads % kv_heads:
        raise ValueError(f"kv_heads {kv_heads} must divide n_heads {n_heads}")
    _, width, cols = qkv.shape
    head_dim = width // (n_heads + 2 * kv_heads)
    if width != (n_heads + 2 * kv_heads) * head_dim or cols % seq_len or head_dim % 2:
        raise ValueError(
            f"qkv (K, {width}, {cols}) is not (K, (H + 2G)·P, B·T) for H {n_heads}, "
            f"G {kv_heads}, T {seq_len}"
        )
    from primitives.kernels._tiny_attention_triton import tiny_attention_fwd

    cos, sin = rotary_cos_sin(
        seq_len, head_dim, rope_theta, device=qkv.device, dtype=torch.float32
    )
    sign = torch.ones(head_dim, device=qkv.device)
    sign[: head_dim // 2] = -1.0
    out, _ = tiny_attention_fwd(
        qkv.contiguous(), cos, (sin * sign).contiguous(), seq_len, n_heads, kv_heads
    )
    assert isinstance(out, Tensor)
    return out
