"""Extrapolation: a small searched arrangement -> a large Llama-3.2-shaped model (FACTS §4).

Composer's two strategies, on sequences of primitives (depth counted in primitives, so one Llama
layer "mA M" is two):

- **stretch** scales every contiguous run of one primitive by ``T / L`` (target depth over source
  depth), keeping the interleaving. Rounding: run k of the source covers source positions
  ``[c_{k-1}, c_k)`` (``c_k`` the cumulative run lengths); it is mapped to target positions
  ``[r(c_{k-1}·T/L), r(c_k·T/L))`` with ``r(x) = floor(x + 1/2)`` computed exactly in integers.
  The boundaries telescope, so the total is exactly T, and every run keeps its relative depth.
  With T ≥ L (which `stretch` requires) every run keeps at least one layer, so the interleaving
  (the sequence of run kinds) is unchanged. Examples, checked by hand:

  - ``mA M M mA`` (runs 1, 2, 1) to 8: boundaries 2, 6, 8 -> ``mA mA M M M M mA mA``;
  - ``mA M M`` to 4: boundaries r(4/3) = 1, 4 -> ``mA M M M``;
  - a 16-layer search result ``mA M M mA M M mA M M mA M M mA M M M`` (1:2 striped, runs
    1,2,1,2,1,2,1,2,1,3) to 32: every run doubles -> ``mA mA M M M M mA mA ... M M M M M M``.

- **stack** repeats the whole arrangement until the target depth: ``(layers × ⌈T/L⌉)[:T]``; when
  T is not a multiple of L the last copy is cut (e.g. 16 -> 56 primitives is 3½ copies).

Presets (:data:`PRESETS`) follow Llama 3.2, whose large-scale shapes Composer compares with:
vocabulary 128,256, 8 key/value heads, RoPE θ 500,000, tied embeddings, no head bias, RMSNorm
before every primitive (two per Llama layer, as Llama has):

- ``1B``: 16 layers (32 primitives), D 2048, 32 query heads (P = 64), F 8192: 1,235,814,400
  parameters for ``(mA M)×16``, which is Llama 3.2 1B's count;
- ``3B``: 28 layers (56 primitives), D 3072, 24 query heads (P = 128), F 8192: 3,212,749,824;
- ``350M``: derived the same way (not a released Llama size): the 1B recipe at half the width,
  D 1024, head dimension 64 (16 query heads), the family's 8 key/value heads, F = 4·D = 4096 as
  in 1B, 16 layers (32 primitives, so 16-primitive searches stretch or stack by exactly 2):
  383,026,176 parameters for ``(mA M)×16`` (131,334,144 of them the tied embedding).

Mamba2 (``Mb``) layers use :class:`primitives.mamba2.Mamba2Config`'s defaults (expand 2,
headdim 64, d_state 128) at the preset width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from primitives.counting import count_flops, count_parameters, parameter_breakdown
from primitives.model import PRIMITIVES, ModelConfig

__all__ = [
    "MODES",
    "PRESETS",
    "Extrapolation",
    "Preset",
    "extrapolate",
    "preset_config",
    "runs",
    "stack",
    "stretch",
]

Mode = Literal["stretch", "stack"]
MODES: tuple[str, ...] = ("stretch", "stack")


@dataclass(frozen=True, slots=True, kw_only=True)
class Preset:
    """A Llama-3.2-shaped model size; ``depth`` counts primitives (two per Llama layer)."""

    name: str
    depth: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    mlp_hidden: int
    vocab_size: int = 128_256
    rope_theta: float = 500_000.0
    tie_embeddings: bool = True


PRESETS: dict[str, Preset] = {
    "350M": Preset(name="350M", depth=32, d_model=1024, n_heads=16, n_kv_heads=8, mlp_hidden=4096),
    "1B": Preset(name="1B", depth=32, d_model=2048, n_heads=32, n_kv_heads=8, mlp_hidden=8192),
    "3B": Preset(name="3B", depth=56, d_model=3072, n_heads=24, n_kv_heads=8, mlp_hidden=8192),
}
"""The target sizes by name."""


def _check_layers(layers: Sequence[str]) -> tuple[str, ...]:
    out = tuple(layers)
    if not out:
        raise ValueError("layers must not be empty")
    bad = [p for p in out if p not in PRIMITIVES]
    if bad:
        raise ValueError(f"layers hold unknown primitives {bad}; allowed: {', '.join(PRIMITIVES)}")
    return out


def runs(layers: Sequence[str]) -> list[tuple[str, int]]:
    """Contiguous runs of one primitive: ``mA M M mA`` -> [(mA, 1), (M, 2), (mA, 1)]."""
    out: list[tuple[str, int]] = []
    for kind in _check_layers(layers):
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + 1)
        else:
            out.append((kind, 1))
    return out


def stretch(layers: Sequence[str], depth: int) -> tuple[str, ...]:
    """Scale every run by ``depth / len(layers)`` (module docstring: exact rounding).

    Raises:
        ValueError: ``depth`` is smaller than ``len(layers)`` (runs could vanish) or not positive.
    """
    source = _check_layers(layers)
    n = len(source)
    if depth < n:
        raise ValueError(f"stretch needs depth >= {n} (the source depth), got {depth}")
    out: list[str] = []
    covered, placed = 0, 0
    for kind, length in runs(source):
        covered += length
        boundary = (2 * covered * depth + n) // (2 * n)  # floor(covered·depth/n + 1/2)
        out.extend([kind] * (boundary - placed))
        placed = boundary
    assert len(out) == depth  # the last boundary is floor(depth + 1/2) = depth
    return tuple(out)


def stack(layers: Sequence[str], depth: int) -> tuple[str, ...]:
    """Repeat the whole arrangement to ``depth`` primitives, cutting the last copy if needed."""
    source = _check_layers(layers)
    if depth < 1:
        raise ValueError(f"depth must be positive, got {depth}")
    copies = -(-depth // len(source))
    return (source * copies)[:depth]


def preset_config(layers: Sequence[str], preset: str | Preset) -> ModelConfig:
    """The model of ``preset``'s shape with exactly these layers (no stretching)."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    return ModelConfig(
        layers=_check_layers(layers),
        d_model=p.d_model,
        vocab_size=p.vocab_size,
        n_heads=p.n_heads,
        n_kv_heads=p.n_kv_heads,
        mlp_hidden=p.mlp_hidden,
        rope_theta=p.rope_theta,
        head_bias=False,
        tie_embeddings=p.tie_embeddings,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Extrapolation:
    """A source arrangement carried to a preset: the model config and its exact counts.

    ``flops`` is the forward FLOPs of one sequence of ``seq_len`` tokens
    (:func:`primitives.counting.count_flops`); ``n_params_embedding`` is the (tied) embedding.
    """

    source: tuple[str, ...]
    mode: str
    preset: str
    config: ModelConfig
    n_params: int
    n_params_embedding: int
    seq_len: int
    flops: int

    @property
    def layers(self) -> tuple[str, ...]:
        return self.config.layers

    @property
    def flops_per_token(self) -> float:
        return self.flops / self.seq_len


def extrapolate(
    layers: Sequence[str],
    preset: str,
    mode: str = "stretch",
    *,
    depth: int | None = None,
    seq_len: int = 2048,
) -> Extrapolation:
    """Stretch or stack ``layers`` to ``preset``'s depth (or ``depth``) at its shape, and count.

    Raises:
        ValueError: an unknown preset or mode, or a depth stretch cannot reach.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown target {preset!r}; known: {', '.join(PRESETS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    target = PRESETS[preset].depth if depth is None else depth
    source = _check_layers(layers)
    scaled = stretch(source, target) if mode == "stretch" else stack(source, target)
    cfg = preset_config(scaled, preset)
    return Extrapolation(
        source=source,
        mode=mode,
        preset=preset,
        config=cfg,
        n_params=count_parameters(cfg),
        n_params_embedding=parameter_breakdown(cfg)["embedding"],
        seq_len=seq_len,
        flops=count_flops(cfg, seq_len),
    )
