"""Model assembly: an arrangement of primitives -> a MAD-style model (FACTS §5).

``build_model(ModelConfig(layers=("mA", "M", "Mb", ...)))`` gives a module mapping tokens (B, T)
to logits (B, T, V):

- ``head="lm"``: token embedding (N(0, 0.02), no positional embedding) -> for each layer
  ``x = x + layer(RMSNorm(x))`` -> final RMSNorm -> linear head (with bias, as in MAD-lab).
- ``head="compression"`` (the MAD compression task): the same encoder stack; its LAST position
  is broadcast over ``seq_len`` positions and added to fixed sin-cos position embeddings (seq_len
  × D), then a decoder MLP (RMSNorm, Linear D→D, GELU, RMSNorm, Linear D→D, GELU), then the
  final RMSNorm and linear head: logits for all T input tokens. Decoder linears are N(0, 0.02)
  with zero bias; the head's bias starts at zero.
- Llama-style shapes (:mod:`primitives.extrapolate`) set ``head_bias=False`` and
  ``tie_embeddings=True``: the head has no bias and reuses the embedding matrix (V, D) as its
  weight, so the pair is counted once.

:class:`ModelConfig` is the JSON-serialisable genome-plus-shape that crosses process boundaries;
:meth:`ModelConfig.block_configs` lists one config per layer (the arrangement as block configs).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
from torch import Tensor, nn

from primitives.attention import Attention, AttentionConfig
from primitives.block import NORM_EPS, Block
from primitives.mamba2 import Mamba2, Mamba2Config, MambaImpl
from primitives.mlp import MLPConfig, SwiGLU

__all__ = ["HEADS", "PRIMITIVES", "ArrangementModel", "ModelConfig", "build_model", "sincos_1d"]

PRIMITIVES: tuple[str, ...] = ("mA", "M", "Mb")
HEADS: tuple[str, ...] = ("lm", "compression")
FORMAT_VERSION = 1
EMBED_INIT_STD = 0.02


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Everything needed to build (and count) one model.

    Attributes:
        layers: the arrangement, e.g. ("mA", "M", "Mb"); each entry in :data:`PRIMITIVES`. A
            whitespace-separated string or a list is accepted and stored as a tuple.
        d_model: width D. vocab_size: V.
        n_heads, n_kv_heads, rope_theta: attention shape (:class:`AttentionConfig`); 16 heads
            as in MAD-lab's multi-head attention at width 128.
        mlp_hidden: SwiGLU width F; None means :func:`primitives.mlp.swiglu_hidden` (d_model).
        d_state, headdim, expand, d_conv, ngroups, chunk_size, impl: Mamba2 settings
            (:class:`Mamba2Config`); ``impl`` only selects the Mamba2 compute path.
        head: "lm" (next-token logits) or "compression" (MAD compression decoder).
        seq_len: length the compression decoder reconstructs; required for that head.
        norm_eps: epsilon of every RMSNorm.
        head_bias: whether the linear head has a bias (MAD-lab: yes; Llama: no).
        tie_embeddings: whether the head's weight is the embedding matrix (Llama 3.2: yes).
    """

    layers: tuple[str, ...]
    d_model: int = 128
    vocab_size: int = 16
    n_heads: int = 16
    n_kv_heads: int | None = None
    mlp_hidden: int | None = None
    rope_theta: float = 10000.0
    d_state: int = 128
    headdim: int = 64
    expand: int = 2
    d_conv: int = 4
    ngroups: int = 1
    chunk_size: int = 256
    impl: MambaImpl = "auto"
    head: Literal["lm", "compression"] = "lm"
    seq_len: int | None = None
    norm_eps: float = NORM_EPS
    head_bias: bool = True
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        layers: Any = self.layers
        if isinstance(layers, str):
            layers = layers.split()
        layers = tuple(layers)
        if not layers:
            raise ValueError(f"layers must be a non-empty sequence of {PRIMITIVES}, got none")
        for i, name in enumerate(layers):
            if name not in PRIMITIVES:
                raise ValueError(
                    f"layers[{i}] = {name!r} is not a primitive; allowed: {', '.join(PRIMITIVES)}"
                )
        object.__setattr__(self, "layers", layers)
        if self.d_model <= 0 or self.vocab_size <= 0:
            raise ValueError(
                f"d_model and vocab_size must be positive, got {self.d_model}, {self.vocab_size}"
            )
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.head == "compression" and (self.seq_len is None or self.seq_len <= 0):
            raise ValueError("head='compression' needs a positive seq_len")
        # Build the sub-configs of the primitives in use: their validation names the problem.
        for kind in dict.fromkeys(layers):
            self.primitive_config(kind)

    def attention_config(self) -> AttentionConfig:
        return AttentionConfig(
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_kv_heads=self.n_kv_heads,
            rope_theta=self.rope_theta,
        )

    def mlp_config(self) -> MLPConfig:
        return MLPConfig(d_model=self.d_model, d_hidden=self.mlp_hidden)

    def mamba_config(self) -> Mamba2Config:
        return Mamba2Config(
            d_model=self.d_model,
            d_state=self.d_state,
            d_conv=self.d_conv,
            expand=self.expand,
            headdim=self.headdim,
            ngroups=self.ngroups,
            chunk_size=self.chunk_size,
            impl=self.impl,
        )

    def primitive_config(self, kind: str) -> AttentionConfig | MLPConfig | Mamba2Config:
        """The config of one primitive kind ("mA", "M" or "Mb") at this model's shape."""
        if kind == "mA":
            return self.attention_config()
        if kind == "M":
            return self.mlp_config()
        if kind == "Mb":
            return self.mamba_config()
        raise ValueError(f"unknown primitive {kind!r}; allowed: {', '.join(PRIMITIVES)}")

    def block_configs(self) -> list[dict[str, Any]]:
        """The arrangement as a JSON-serialisable list of block configs, one per layer."""
        return [{"kind": kind, **asdict(self.primitive_config(kind))} for kind in self.layers]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; ``layers`` becomes a list; carries a ``format_version``."""
        data = asdict(self)
        data["layers"] = list(self.layers)
        data["format_version"] = FORMAT_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`. Raises ValueError on unknown keys or another version."""
        data = dict(data)
        version = data.pop("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"format_version {version!r} is not {FORMAT_VERSION}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {unknown}")
        if "layers" in data:
            data["layers"] = tuple(data["layers"])
        return cls(**data)

    def to_json(self) -> str:
        """A compact, key-sorted JSON string (stable: equal configs give equal strings)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("ModelConfig JSON must be an object")
        return cls.from_dict(data)


def sincos_1d(n_positions: int, dim: int) -> Tensor:
    """Fixed sinusoidal position table, (n_positions, dim), fp32.

    Columns [0, dim/2) hold sin(t·ω_i), columns [dim/2, 2·(dim/2)) cos(t·ω_i), with
    ω_i = 10000^(-i/(dim/2 - 1)); an odd last column is zero (MAD-lab's ``posemb_sincos_1d``).
    """
    half = dim // 2
    step = math.log(10000.0) / max(half - 1, 1)
    freqs = torch.exp(-step * torch.arange(half, dtype=torch.float32))  # (dim/2,)
    angles = torch.outer(torch.arange(n_positions, dtype=torch.float32), freqs)  # (T, dim/2)
    table = torch.cat([angles.sin(), angles.cos()], dim=-1)  # (T, 2·(dim/2))
    if dim % 2:
        table = torch.cat([table, torch.zeros(n_positions, 1)], dim=-1)  # (T, dim)
    return table


def _make_block(cfg: ModelConfig, kind: str) -> Block:
    if kind == "mA":
        attn_cfg = cfg.attention_config()
        return Block(cfg.d_model, lambda: Attention(attn_cfg), norm_eps=cfg.norm_eps)
    if kind == "M":
        mlp_cfg = cfg.mlp_config()
        return Block(cfg.d_model, lambda: SwiGLU(mlp_cfg), norm_eps=cfg.norm_eps)
    mamba_cfg = cfg.mamba_config()
    return Block(cfg.d_model, lambda: Mamba2(mamba_cfg), norm_eps=cfg.norm_eps)


class ArrangementModel(nn.Module):
    """Embedding -> residual blocks -> [compression decoder] -> RMSNorm -> linear head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        nn.init.normal_(self.embed.weight, mean=0.0, std=EMBED_INIT_STD)
        self.layers = nn.ModuleList(_make_block(cfg, kind) for kind in cfg.layers)
        self.decoder: nn.Sequential | None = None
        if cfg.head == "compression":
            assert cfg.seq_len is not None  # validated by ModelConfig
            self.register_buffer("dec_pos", sincos_1d(cfg.seq_len, d), persistent=False)
            self.decoder = nn.Sequential(
                nn.RMSNorm(d, eps=cfg.norm_eps),
                nn.Linear(d, d),
                nn.GELU(),
                nn.RMSNorm(d, eps=cfg.norm_eps),
                nn.Linear(d, d),
                nn.GELU(),
            )
            for module in self.decoder:
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, mean=0.0, std=EMBED_INIT_STD)
                    nn.init.zeros_(module.bias)
        self.norm_f = nn.RMSNorm(d, eps=cfg.norm_eps)
        self.head = nn.Linear(d, cfg.vocab_size, bias=cfg.head_bias)
        if cfg.head_bias:
            nn.init.zeros_(self.head.bias)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight  # (V, D), one tensor for both

    def encode(self, tokens: Tensor) -> Tensor:
        """Args: tokens (B, T) int64. Returns: the residual stream after all layers, (B, T, D)."""
        x: Tensor = self.embed(tokens)  # (B, T, D)
        for layer in self.layers:
            x = layer(x)  # (B, T, D)
        return x

    def forward(self, tokens: Tensor) -> Tensor:
        """Args: tokens (B, T) int64. Returns: logits (B, T, V)."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (B, T), got shape {tuple(tokens.shape)}")
        x = self.encode(tokens)  # (B, T, D)
        if self.decoder is not None:
            t = tokens.shape[1]
            pos = self.get_buffer("dec_pos")  # (seq_len, D)
            if t > pos.shape[0]:
                raise ValueError(
                    f"sequence length {t} exceeds the decoder's seq_len {pos.shape[0]}"
                )
            last = x[:, -1:, :]  # (B, 1, D)
            x = self.decoder(last + pos[:t].to(x.dtype))  # (B, T, D)
        logits: Tensor = self.head(self.norm_f(x))  # (B, T, V)
        return logits


def build_model(cfg: ModelConfig) -> ArrangementModel:
    """Build the model described by ``cfg`` on the CPU in fp32 (the caller moves and casts it)."""
    return ArrangementModel(cfg)
