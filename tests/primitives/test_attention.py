"""mA: the SDPA module against the written-out masked softmax, GQA, causality, RoPE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from primitives.attention import (
    Attention,
    AttentionConfig,
    apply_rotary,
    attention_ref,
    rotary_cos_sin,
)

FP32 = {"atol": 1e-5, "rtol": 1e-5}


def test_config_defaults_and_validation() -> None:
    cfg = AttentionConfig(d_model=32, n_heads=4)
    assert cfg.n_kv_heads == 4 and cfg.kv_heads == 4 and cfg.head_dim == 8
    assert cfg.rope_theta == 10000.0
    with pytest.raises(ValueError, match="divisible by n_heads"):
        AttentionConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="n_kv_heads"):
        AttentionConfig(d_model=32, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="even"):
        AttentionConfig(d_model=12, n_heads=4)  # P = 3
    with pytest.raises(TypeError):
        AttentionConfig(32, 4)  # type: ignore[misc]  # keyword-only


@pytest.mark.parametrize("n_kv", [4, 2, 1])
def test_ref_matches_sdpa(n_kv: int) -> None:
    torch.manual_seed(0)
    q = torch.randn(2, 4, 11, 8)
    k = torch.randn(2, n_kv, 11, 8)
    v = torch.randn(2, n_kv, 11, 8)
    rep = 4 // n_kv
    expected = F.scaled_dot_product_attention(
        q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), is_causal=True
    )
    assert_close(attention_ref(q, k, v), expected, **FP32)


@pytest.mark.parametrize("n_kv", [None, 2, 1])
def test_module_matches_reference(n_kv: int | None) -> None:
    torch.manual_seed(1)
    cfg = AttentionConfig(d_model=32, n_heads=4, n_kv_heads=n_kv)
    attn = Attention(cfg)
    x = torch.randn(3, 13, 32, requires_grad=True)
    y = attn(x)
    q, k, v = attn.qkv(x)
    assert q.shape == (3, 4, 13, 8) and k.shape == (3, cfg.kv_heads, 13, 8)
    y_ref = attn.o_proj(attention_ref(q, k, v).transpose(1, 2).reshape(3, 13, 32))
    assert y.shape == (3, 13, 32)
    assert_close(y, y_ref, **FP32)
    (gx,) = torch.autograd.grad(y.square().sum(), x)
    (gx_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    assert_close(gx, gx_ref, **FP32)


def test_parameters_have_no_bias() -> None:
    attn = Attention(AttentionConfig(d_model=32, n_heads=4, n_kv_heads=2))
    shapes = {name: tuple(p.shape) for name, p in attn.named_parameters()}
    assert shapes == {
        "q_proj.weight": (32, 32),
        "k_proj.weight": (16, 32),
        "v_proj.weight": (16, 32),
        "o_proj.weight": (32, 32),
    }


@pytest.mark.parametrize("n_kv", [4, 1])
def test_causal(n_kv: int) -> None:
    torch.manual_seed(2)
    attn = Attention(AttentionConfig(d_model=32, n_heads=4, n_kv_heads=n_kv))
    x = torch.randn(2, 10, 32)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(2, 4, 32)  # change the future from position 6 on
    y, y2 = attn(x), attn(x2)
    assert torch.equal(y[:, :6], y2[:, :6])
    assert not torch.allclose(y[:, 6:], y2[:, 6:])


def test_rotary_scores_depend_only_on_offset() -> None:
    torch.manual_seed(3)
    cos, sin = rotary_cos_sin(20, 8, 10000.0, device=torch.device("cpu"), dtype=torch.float32)
    q = apply_rotary(torch.randn(1, 1, 1, 8).expand(1, 1, 20, 8), cos, sin)[0, 0]  # (T, P)
    k = apply_rotary(torch.randn(1, 1, 1, 8).expand(1, 1, 20, 8), cos, sin)[0, 0]  # (T, P)
    scores = q @ k.T  # (T, T)
    # Same offset i - j, same score: compare the diagonals at offsets 0 and 3.
    assert_close(scores.diagonal(0), scores.diagonal(0)[:1].expand(20), atol=1e-4, rtol=1e-4)
    assert_close(scores.diagonal(-3), scores.diagonal(-3)[:1].expand(17), atol=1e-4, rtol=1e-4)
    # Rotation keeps norms.
    assert_close(q.norm(dim=-1), q.norm(dim=-1)[:1].expand(20), atol=1e-5, rtol=1e-5)
