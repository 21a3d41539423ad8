"""Model assembly: config validation, heads, every primitive mix, causality, JSON roundtrip."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from primitives.model import PRIMITIVES, ModelConfig, build_model, sincos_1d

# Small shapes so that every test runs in well under a second on two CPU cores.
SMALL = {"d_model": 32, "n_heads": 4, "d_state": 8, "headdim": 16, "chunk_size": 8}

MIXES = [
    *[(p,) for p in PRIMITIVES],
    *itertools.permutations(PRIMITIVES, 2),
    ("mA", "M", "Mb", "M"),
    ("Mb", "Mb", "mA", "M", "mA"),
]


def test_primitives_constant() -> None:
    assert PRIMITIVES == ("mA", "M", "Mb")


@pytest.mark.parametrize("bad", ["mb", "MLP", "", "attn"])
def test_bad_layer_names_raise(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        ModelConfig(layers=("mA", bad, "M"))
    message = str(info.value)
    assert repr(bad) in message and "layers[1]" in message
    assert all(p in message for p in PRIMITIVES)


def test_empty_and_other_invalid_configs() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        ModelConfig(layers=())
    with pytest.raises(ValueError, match="seq_len"):
        ModelConfig(layers=("M",), head="compression")
    with pytest.raises(ValueError, match="head"):
        ModelConfig(layers=("M",), head="cls")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_heads"):
        ModelConfig(layers=("mA",), d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="headdim"):
        ModelConfig(layers=("Mb",), d_model=24, headdim=64)
    # Settings of primitives that are not used are not validated.
    assert ModelConfig(layers=("M",), d_model=24, headdim=64).layers == ("M",)


def test_layers_accepts_string_and_list() -> None:
    assert ModelConfig(layers="mA M  Mb").layers == ("mA", "M", "Mb")  # type: ignore[arg-type]
    assert ModelConfig(layers=["M", "mA"]).layers == ("M", "mA")  # type: ignore[arg-type]


@pytest.mark.parametrize("layers", MIXES, ids=lambda m: "-".join(m))
def test_every_mix_builds_and_runs(layers: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(layers=layers, vocab_size=13, **SMALL)
    model = build_model(cfg)
    tokens = torch.randint(0, 13, (2, 11))
    logits = model(tokens)
    assert logits.shape == (2, 11, 13) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert len(model.layers) == len(layers)


def test_lm_model_is_causal() -> None:
    torch.manual_seed(1)
    model = build_model(ModelConfig(layers=("Mb", "mA", "M", "Mb"), vocab_size=13, **SMALL))
    tokens = torch.randint(0, 13, (2, 17))
    changed = tokens.clone()
    changed[:, 9:] = (changed[:, 9:] + 1) % 13
    a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :9], b[:, :9], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_compression_head() -> None:
    torch.manual_seed(2)
    cfg = ModelConfig(layers=("mA", "M"), vocab_size=16, head="compression", seq_len=32, **SMALL)
    model = build_model(cfg)
    tokens = torch.randint(0, 16, (3, 32))
    logits = model(tokens)
    assert logits.shape == (3, 32, 16)
    # Positions differ only through the fixed sin-cos table: every row is different.
    assert not torch.allclose(logits[:, 0], logits[:, 1])
    # Everything flows through the last position: earlier tokens still matter (via attention),
    # and a shorter input decodes the first T positions.
    assert model(tokens[:, :20]).shape == (3, 20, 16)
    with pytest.raises(ValueError, match="seq_len"):
        model(torch.randint(0, 16, (1, 33)))
    assert "dec_pos" not in model.state_dict()


def test_sincos_table() -> None:
    table = sincos_1d(32, 8)
    assert table.shape == (32, 8)
    assert torch.equal(table[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert sincos_1d(4, 5)[:, -1].abs().sum() == 0


def test_embedding_init_and_head() -> None:
    torch.manual_seed(3)
    model = build_model(ModelConfig(layers=("M",), vocab_size=4096, d_model=64))
    std = float(model.embed.weight.detach().std())
    assert 0.018 < std < 0.022
    assert model.head.bias is not None and torch.equal(model.head.bias, torch.zeros(4096))


def test_json_roundtrip() -> None:
    cfg = ModelConfig(
        layers=("mA", "M", "Mb"),
        n_kv_heads=2,
        mlp_hidden=96,
        head="compression",
        seq_len=32,
        impl="torch",
        **SMALL,
    )
    text = cfg.to_json()
    assert json.loads(text)["layers"] == ["mA", "M", "Mb"]
    back = ModelConfig.from_json(text)
    assert back == cfg and back.to_json() == text
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    blocks = cfg.block_configs()
    assert [b["kind"] for b in blocks] == ["mA", "M", "Mb"]
    assert blocks[1]["d_hidden"] == 96 and blocks[0]["n_kv_heads"] == 2
    json.dumps(blocks)  # the arrangement as block configs is JSON
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**cfg.to_dict(), "dropout": 0.1})
    with pytest.raises(ValueError, match="format_version"):
        ModelConfig.from_dict({**cfg.to_dict(), "format_version": 99})
    with pytest.raises(ValueError, match="layers"):
        ModelConfig.from_json(json.dumps({**cfg.to_dict(), "layers": ["mA", "X"]}))


def test_config_is_frozen_and_keyword_only() -> None:
    cfg = ModelConfig(layers=("M",))
    with pytest.raises(AttributeError):
        cfg.d_model = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        ModelConfig(("M",))  # type: ignore[misc]
