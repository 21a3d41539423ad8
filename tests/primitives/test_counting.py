"""Closed-form parameter and FLOP counts against the built model and torch's FLOP counter."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from primitives.counting import (
    count_flops,
    count_parameters,
    flops_breakdown,
    layer_parameters,
    parameter_breakdown,
)
from primitives.model import ModelConfig, build_model

CONFIGS = [
    {"layers": ("mA",), "d_model": 32, "n_heads": 4},
    {"layers": ("M",), "d_model": 48, "vocab_size": 7},
    {"layers": ("Mb",), "d_model": 32, "d_state": 8, "headdim": 16},
    {"layers": ("mA", "M") * 3, "d_model": 64, "n_heads": 8, "n_kv_heads": 2},
    {
        "layers": ("mA", "M", "Mb"),
        "d_model": 32,
        "n_heads": 2,
        "n_kv_heads": 1,
        "d_state": 16,
        "headdim": 8,
        "expand": 3,
        "d_conv": 3,
    },
    {"layers": ("Mb", "M"), "d_model": 64, "d_state": 16, "headdim": 32, "ngroups": 2},
    {"layers": ("M", "mA"), "d_model": 40, "n_heads": 5, "mlp_hidden": 72, "vocab_size": 300},
    {
        "layers": ("mA", "Mb", "M", "mA"),
        "d_model": 32,
        "n_heads": 4,
        "d_state": 8,
        "headdim": 16,
        "head": "compression",
        "seq_len": 32,
    },
    {"layers": ("Mb",), "d_model": 128, "headdim": 64, "vocab_size": 16},  # MAD defaults
    {"layers": ("M", "M"), "d_model": 16, "head": "compression", "seq_len": 8, "vocab_size": 3},
]


@pytest.mark.parametrize("kwargs", CONFIGS, ids=lambda k: "-".join(k["layers"]))
def test_closed_form_equals_numel(kwargs: dict[str, object]) -> None:
    cfg = ModelConfig(**kwargs)  # type: ignore[arg-type]
    model = build_model(cfg)
    assert count_parameters(cfg) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("kwargs", CONFIGS[3:5], ids=lambda k: "-".join(k["layers"]))
def test_breakdown_matches_modules(kwargs: dict[str, object]) -> None:
    cfg = ModelConfig(**kwargs)  # type: ignore[arg-type]
    model = build_model(cfg)
    parts = parameter_breakdown(cfg)
    assert parts["embedding"] == model.embed.weight.numel()
    for i, (kind, layer) in enumerate(zip(cfg.layers, model.layers, strict=True)):
        n = sum(p.numel() for p in layer.parameters())
        assert parts[f"layers.{i}.{kind}"] == n == layer_parameters(cfg, kind)
    assert sum(parts.values()) == count_parameters(cfg)


def _counted_flops(cfg: ModelConfig, seq_len: int) -> int:
    model = build_model(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (1, seq_len))
    # The math SDPA backend runs as two batched matmuls that the counter sees.
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model(tokens)
    return int(fc.get_total_flops())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"layers": ("mA", "M"), "d_model": 32, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 11},
        {
            "layers": ("M", "mA", "M"),
            "d_model": 16,
            "n_heads": 2,
            "head": "compression",
            "seq_len": 24,
        },
    ],
)
def test_flops_match_torch_counter_for_attention_and_mlp(kwargs: dict[str, object]) -> None:
    cfg = ModelConfig(**kwargs)  # type: ignore[arg-type]
    assert count_flops(cfg, 24) == _counted_flops(cfg, 24)


@pytest.mark.parametrize("seq_len", [24, 5])
def test_flops_match_torch_counter_for_mamba(seq_len: int) -> None:
    cfg = ModelConfig(layers=("Mb", "M"), d_model=32, d_state=8, headdim=16, chunk_size=8)
    counted = _counted_flops(cfg, seq_len)
    # F.conv1d computes d_conv - 1 extra (discarded) outputs that count_flops leaves out.
    m = cfg.mamba_config()
    discarded = 2 * (m.d_conv - 1) * m.conv_dim * m.d_conv
    assert count_flops(cfg, seq_len) == counted - discarded


def test_flops_scaling() -> None:
    cfg = ModelConfig(layers=("mA",), d_model=32, n_heads=4)
    parts_1, parts_2 = flops_breakdown(cfg, 64), flops_breakdown(cfg, 128)
    # Projections double, the T² attention terms quadruple.
    assert 2 * parts_1["layers.0.mA"] < parts_2["layers.0.mA"] < 4 * parts_1["layers.0.mA"]
    assert parts_2["head"] == 2 * parts_1["head"]
    with pytest.raises(ValueError, match="seq_len"):
        count_flops(cfg, 0)
