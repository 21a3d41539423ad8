"""Parameter and FLOP counts in closed form from a :class:`ModelConfig` (nothing is built).

Parameters (every trainable tensor of :func:`primitives.model.build_model`):

- embedding V·D; per layer an RMSNorm weight D plus its primitive:
  - mA: q and o projections D·H·P each, k and v D·G·P each (no biases);
  - M: 3·D·F;
  - Mb: in_proj D·(2·E + 2·G·N + H) with E = expand·D, depthwise conv (E + 2·G·N)·(d_conv + 1)
    (weights and bias), dt_bias, A_log and D (H each), gated-norm weight E, out_proj E·D
    (here G = ngroups, H = E / headdim);
- compression decoder: two RMSNorms (D each) and two Linear D→D with bias (D² + D each);
- final RMSNorm D; head D·V + V, less D·V when the head is tied to the embedding
  (``tie_embeddings``) and less V without a bias (``head_bias=False``).

FLOPs (:func:`count_flops`): forward pass of one sequence of length T, counting only
multiply-accumulates, each as 2 FLOPs (a matmul (m×k)·(k×n) is 2·m·n·k):

- every Linear: 2·T·in·out (biases, norms, activations, softmax, RoPE, gating, exp and the
  D·x skip are elementwise and not counted; the embedding is a lookup);
- attention scores q·kᵀ and the weighted sum of values, 2·H·T²·P each, dense (the causal mask
  is not used to halve them, the usual convention and what SDPA's dense math does);
- Mb: the causal conv 2·T·(E + 2·G·N)·d_conv, and the chunked SSD as
  :func:`primitives.mamba2.ssd_chunked` computes it with K = min(chunk_size, T), C = ⌈T/K⌉
  chunks and T' = C·K padded steps: within-chunk scores C·Bᵀ 2·T'·K·H·N, their product with x
  2·T'·K·H·P, chunk states 2·T'·H·P·N, the inter-chunk recurrence 2·(C+1)²·H·P·N and the
  state read-out 2·T'·H·P·N;
- the compression decoder runs its two Linear layers and the head on all T positions.
"""

from __future__ import annotations

from primitives.model import PRIMITIVES, ModelConfig

__all__ = [
    "count_flops",
    "count_parameters",
    "flops_breakdown",
    "layer_flops",
    "layer_parameters",
    "parameter_breakdown",
]


def _mixer_parameters(cfg: ModelConfig, kind: str) -> int:
    d = cfg.d_model
    if kind == "mA":
        a = cfg.attention_config()
        return 2 * d * a.n_heads * a.head_dim + 2 * d * a.kv_heads * a.head_dim
    if kind == "M":
        return 3 * d * cfg.mlp_config().hidden
    if kind == "Mb":
        m = cfg.mamba_config()
        conv = m.conv_dim * m.d_conv + m.conv_dim
        return d * m.d_in_proj + conv + 3 * m.nheads + m.d_inner + m.d_inner * d
    raise ValueError(f"unknown primitive {kind!r}; allowed: {', '.join(PRIMITIVES)}")


def layer_parameters(cfg: ModelConfig, kind: str) -> int:
    """Parameters of one residual block of primitive ``kind`` (its RMSNorm included)."""
    return cfg.d_model + _mixer_parameters(cfg, kind)


def parameter_breakdown(cfg: ModelConfig) -> dict[str, int]:
    """Parameters per part, in model order.

    Keys: ``embedding``, ``layers.{i}.{kind}`` for each layer, ``decoder`` (compression head
    only), ``norm_f``, ``head``.
    """
    d, v = cfg.d_model, cfg.vocab_size
    parts = {"embedding": v * d}
    for i, kind in enumerate(cfg.layers):
        parts[f"layers.{i}.{kind}"] = layer_parameters(cfg, kind)
    if cfg.head == "compression":
        parts["decoder"] = 2 * d + 2 * (d * d + d)
    parts["norm_f"] = d
    parts["head"] = (0 if cfg.tie_embeddings else d * v) + (v if cfg.head_bias else 0)
    return parts


def count_parameters(cfg: ModelConfig) -> int:
    """Total trainable parameters of ``build_model(cfg)``, in closed form."""
    return sum(parameter_breakdown(cfg).values())


def layer_flops(cfg: ModelConfig, kind: str, seq_len: int) -> int:
    """Forward FLOPs of one block of primitive ``kind`` on one sequence of ``seq_len`` tokens."""
    if seq_len <= 0:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    t, d = seq_len, cfg.d_model
    if kind == "mA":
        a = cfg.attention_config()
        h, g, p = a.n_heads, a.kv_heads, a.head_dim
        projections = 2 * t * d * (2 * h * p + 2 * g * p)
        return projections + 2 * (2 * h * t * t * p)
    if kind == "M":
        return 2 * t * 3 * d * cfg.mlp_config().hidden
    if kind == "Mb":
        m = cfg.mamba_config()
        h, p, n = m.nheads, m.headdim, m.d_state
        k = min(m.chunk_size, t)
        n_chunks = -(-t // k)
        t_pad = n_chunks * k
        projections = 2 * t * d * m.d_in_proj + 2 * t * m.d_inner * d
        conv = 2 * t * m.conv_dim * m.d_conv
        intra = 2 * t_pad * k * h * n + 2 * t_pad * k * h * p
        states = 2 * t_pad * h * p * n
        carry = 2 * (n_chunks + 1) ** 2 * h * p * n
        readout = 2 * t_pad * h * p * n
        return projections + conv + intra + states + carry + readout
    raise ValueError(f"unknown primitive {kind!r}; allowed: {', '.join(PRIMITIVES)}")


def flops_breakdown(cfg: ModelConfig, seq_len: int) -> dict[str, int]:
    """Forward FLOPs per part for one sequence; keys as in :func:`parameter_breakdown`."""
    if seq_len <= 0:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    t, d, v = seq_len, cfg.d_model, cfg.vocab_size
    parts = {"embedding": 0}
    for i, kind in enumerate(cfg.layers):
        parts[f"layers.{i}.{kind}"] = layer_flops(cfg, kind, t)
    if cfg.head == "compression":
        parts["decoder"] = 2 * (2 * t * d * d)
    parts["norm_f"] = 0
    parts["head"] = 2 * t * d * v
    return parts


def count_flops(cfg: ModelConfig, seq_len: int) -> int:
    """Forward FLOPs of ``build_model(cfg)`` on one sequence of ``seq_len`` tokens."""
    return sum(flops_breakdown(cfg, seq_len).values())
