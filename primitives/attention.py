"""mA: causal multi-head self-attention with rotary positions and grouped-query attention.

Three parts, as for every primitive: :class:`AttentionConfig`, the module :class:`Attention`
(fast path: ``F.scaled_dot_product_attention(is_causal=True)``), and :func:`attention_ref`, the
plain masked-softmax math it must agree with.

Rotary embedding uses the "rotate half" layout (the first and second halves of each head's
P features form the rotated pairs), as in Llama and MAD-lab. Query head h reads key/value head
``h // (H // G)``. No projection has a bias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Attention", "AttentionConfig", "apply_rotary", "attention_ref", "rotary_cos_sin"]


@dataclass(frozen=True, kw_only=True)
class AttentionConfig:
    """Shape of one attention layer.

    Attributes:
        d_model: model width D.
        n_heads: query heads H; D must be divisible by H, and the head dimension P = D / H must
            be even (rotary pairs).
        n_kv_heads: key/value heads G (grouped-query attention); None means G = H. H must be
            divisible by G.
        rope_theta: rotary base.
    """

    d_model: int
    n_heads: int
    n_kv_heads: int | None = None
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.d_model <= 0:
            raise ValueError(f"d_model must be positive, got {self.d_model}")
        if self.n_heads <= 0:
            raise ValueError(f"n_heads must be positive, got {self.n_heads}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.head_dim % 2 != 0:
            raise ValueError(
                f"head dimension d_model/n_heads = {self.head_dim} must be even for rotary "
                "embeddings"
            )
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if self.kv_heads <= 0 or self.n_heads % self.kv_heads != 0:
            raise ValueError(
                f"n_kv_heads ({self.n_kv_heads}) must be positive and divide n_heads "
                f"({self.n_heads})"
            )
        if not self.rope_theta > 0:
            raise ValueError(f"rope_theta must be positive, got {self.rope_theta}")

    @property
    def head_dim(self) -> int:
        """P = D / H."""
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        """G, with the None default resolved."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads


def rotary_cos_sin(
    seq_len: int, head_dim: int, theta: float, *, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Rotary tables for positions 0..T-1.

    Returns:
        (cos, sin), each (T, P); column j and j + P/2 share the frequency theta^(-2j/P).
    """
    half = head_dim // 2
    inv_freq = theta ** (-torch.arange(half, device=device, dtype=torch.float32) / half)  # (P/2,)
    pos = torch.arange(seq_len, device=device, dtype=torch.float32)  # (T,)
    angles = torch.outer(pos, inv_freq)  # (T, P/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, P)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate feature pairs (j, j + P/2) of x by the position angle.

    Args:
        x: (B, H, T, P) queries or keys.
        cos, sin: (T, P) from :func:`rotary_cos_sin`.

    Returns:
        (B, H, T, P).
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]  # (B, H, T, P/2) each
    rotated = torch.cat([-x2, x1], dim=-1)  # (B, H, T, P)
    return x * cos + rotated * sin


def _repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """(B, G, T, P) -> (B, G*n_rep, T, P); head h reads kv head h // n_rep."""
    if n_rep == 1:
        return x
    return x.repeat_interleave(n_rep, dim=1)  # (B, H, T, P)


def attention_ref(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal attention written out: softmax(q kᵀ / sqrt(P) + causal mask) v.

    Args:
        q: (B, H, T, P) queries.
        k: (B, G, T, P) keys, G dividing H (G = H for plain multi-head attention).
        v: (B, G, T, P) values.

    Returns:
        (B, H, T, P).
    """
    n_heads, n_kv = q.shape[1], k.shape[1]
    if n_heads % n_kv != 0:
        raise ValueError(f"key/value heads ({n_kv}) must divide query heads ({n_heads})")
    k = _repeat_kv(k, n_heads // n_kv)  # (B, H, T, P)
    v = _repeat_kv(v, n_heads // n_kv)  # (B, H, T, P)
    t = q.shape[2]
    scores = torch.einsum("bhip,bhjp->bhij", q, k) / math.sqrt(q.shape[-1])  # (B, H, T, T)
    future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(diagonal=1)  # (T, T)
    scores = scores.masked_fill(future, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)  # (B, H, T, T)
    return torch.einsum("bhij,bhjp->bhip", weights, v)  # (B, H, T, P)


class Attention(nn.Module):
    """Causal multi-head self-attention with RoPE and grouped-query attention.

    Parameters: q_proj (H·P × D), k_proj and v_proj (G·P × D), o_proj (D × H·P); no biases.
    """

    def __init__(self, cfg: AttentionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, p = cfg.d_model, cfg.head_dim
        self.q_proj = nn.Linear(d, cfg.n_heads * p, bias=False)
        self.k_proj = nn.Linear(d, cfg.kv_heads * p, bias=False)
        self.v_proj = nn.Linear(d, cfg.kv_heads * p, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * p, d, bias=False)

    def qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Project and rotate.

        Args:
            x: (B, T, D).

        Returns:
            q (B, H, T, P) and k, v (B, G, T, P), with rotary positions applied to q and k.
        """
        b, t, _ = x.shape
        h, g, p = self.cfg.n_heads, self.cfg.kv_heads, self.cfg.head_dim
        q = self.q_proj(x).view(b, t, h, p).transpose(1, 2)  # (B, H, T, P)
        k = self.k_proj(x).view(b, t, g, p).transpose(1, 2)  # (B, G, T, P)
        v = self.v_proj(x).view(b, t, g, p).transpose(1, 2)  # (B, G, T, P)
        cos, sin = rotary_cos_sin(t, p, self.cfg.rope_theta, device=x.device, dtype=x.dtype)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, T, D). Returns: (B, T, D)."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x)
        n_rep = self.cfg.n_heads // self.cfg.kv_heads
        k, v = _repeat_kv(k, n_rep), _repeat_kv(v, n_rep)  # (B, H, T, P) each
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, P)
        y = y.transpose(1, 2).reshape(b, t, self.cfg.n_heads * self.cfg.head_dim)  # (B, T, H·P)
        out: Tensor = self.o_proj(y)  # (B, T, D)
        return out
