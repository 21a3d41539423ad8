"""Extrapolation: hand-checked stretch and stack, Llama-3.2 presets with exact counts."""

from __future__ import annotations

import pytest
import torch

from primitives.counting import count_flops, count_parameters, parameter_breakdown
from primitives.extrapolate import PRESETS, extrapolate, preset_config, runs, stack, stretch
from primitives.model import ModelConfig, build_model

LLAMA_1B = ("mA", "M") * 16


def split(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def test_runs() -> None:
    assert runs(split("mA M M mA")) == [("mA", 1), ("M", 2), ("mA", 1)]


def test_stretch_hand_checked() -> None:
    # runs 1, 2, 1 of 4 to 8: boundaries r(2) = 2, r(6) = 6, r(8) = 8
    assert stretch(split("mA M M mA"), 8) == split("mA mA M M M M mA mA")
    # runs 1, 2 of 3 to 4: boundaries r(4/3) = 1, r(4) = 4
    assert stretch(split("mA M M"), 4) == split("mA M M M")
    # runs 2, 1 of 3 to 4: boundaries r(8/3) = 3, 4
    assert stretch(split("M M mA"), 4) == split("M M M mA")
    # runs 1, 1, 1 of 3 to 5: boundaries r(5/3) = 2, r(10/3) = 3, 5
    assert stretch(split("mA M Mb"), 5) == split("mA mA M Mb Mb")
    assert stretch(split("mA M"), 2) == split("mA M")  # factor 1: unchanged


def test_stretch_a_16_layer_search_result_to_32() -> None:
    searched = split("mA M M mA M M mA M M mA M M mA M M M")  # runs 1,2,1,2,1,2,1,2,1,3
    expected = split("mA mA M M M M mA mA M M M M mA mA M M M M mA mA M M M M mA mA M M M M M M")
    assert stretch(searched, 32) == expected
    # To 56 (3B): factor 3.5, boundaries r(3.5)=4, r(10.5)=11, r(14)=14, r(21)=21, ...
    to_56 = stretch(searched, 56)
    assert len(to_56) == 56
    assert [n for _, n in runs(to_56)] == [4, 7, 3, 7, 4, 7, 3, 7, 4, 10]
    assert [k for k, _ in runs(to_56)] == [k for k, _ in runs(searched)]


def test_stack_hand_checked() -> None:
    llama16 = ("mA", "M") * 8
    assert stack(llama16, 32) == LLAMA_1B
    assert stack(split("mA M M"), 7) == split("mA M M mA M M mA")
    with pytest.raises(ValueError, match="stretch needs depth"):
        stretch(llama16, 8)


def test_1b_preset_is_llama_3_2_1b() -> None:
    cfg = preset_config(LLAMA_1B, "1B")
    assert (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.mlp_hidden) == (2048, 32, 8, 8192)
    assert (cfg.vocab_size, cfg.rope_theta) == (128_256, 500_000.0)
    assert cfg.tie_embeddings and not cfg.head_bias
    assert count_parameters(cfg) == 1_235_814_400
    parts = parameter_breakdown(cfg)
    assert parts["head"] == 0 and parts["embedding"] == 128_256 * 2048
    with torch.device("meta"):  # no 5 GB allocation
        model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == 1_235_814_400
    assert model.head.weight is model.embed.weight and model.head.bias is None


@pytest.mark.parametrize(
    ("preset", "expected"), [("350M", 383_026_176), ("1B", 1_235_814_400), ("3B", 3_212_749_824)]
)
def test_preset_counts_match_a_meta_build(preset: str, expected: int) -> None:
    result = extrapolate(("mA", "M") * 8, preset, "stack")
    assert result.layers == ("mA", "M") * (PRESETS[preset].depth // 2)
    assert result.n_params == expected
    with torch.device("meta"):
        model = build_model(result.config)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_extrapolation_counts_and_round_trip() -> None:
    result = extrapolate(split("Mb M mA M") * 4, "1B", "stretch", seq_len=1024)
    assert result.layers == split("Mb Mb M M mA mA M M") * 4
    assert result.n_params == count_parameters(result.config)
    assert result.flops == count_flops(result.config, 1024)
    assert ModelConfig.from_json(result.config.to_json()) == result.config
    with torch.device("meta"):
        model = build_model(result.config)
    assert sum(p.numel() for p in model.parameters()) == result.n_params


def test_a_tied_model_runs_and_old_configs_keep_their_head() -> None:
    cfg = ModelConfig(layers=("mA", "M"), d_model=16, n_heads=2, vocab_size=11,
                      tie_embeddings=True, head_bias=False)  # fmt: skip
    model = build_model(cfg)
    assert model(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, 11)
    assert count_parameters(cfg) == sum(p.numel() for p in model.parameters())
    old = ModelConfig.from_dict({"layers": ["M"], "d_model": 8, "vocab_size": 5})
    assert old.head_bias and not old.tie_embeddings
    assert parameter_breakdown(old)["head"] == 8 * 5 + 5


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown target"):
        extrapolate(("mA",), "7B")
    with pytest.raises(ValueError, match="unknown mode"):
        extrapolate(("mA",), "1B", "squeeze")
