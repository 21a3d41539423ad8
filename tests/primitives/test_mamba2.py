"""Mb: chunked SSD against the step-by-step recurrence (forward and gradients, genuine fp32),
the module against a written-out forward, causality, odd lengths, parameter names, kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.testing import assert_close

from primitives.kernels import INSTALL_HINT, load_mamba_chunk_scan_combined, mamba_ssm_available
from primitives.mamba2 import Mamba2, Mamba2Config, ssd_chunked, ssd_one_chunk, ssd_ref

# Genuine fp32 on both paths, small-magnitude inputs (|x|, |B|, |C| ~ 0.5, dt in [0.01, 0.21]).
FP32 = {"atol": 1e-5, "rtol": 1e-5}
BATCH, HEADS, HEADDIM, GROUPS, STATE = 2, 4, 8, 2, 6


def _ssd_inputs(t: int, seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "x": 0.5 * torch.randn(BATCH, t, HEADS, HEADDIM, generator=g),
        "dt": 0.01 + 0.2 * torch.rand(BATCH, t, HEADS, generator=g),
        "A": -(0.2 + 2.0 * torch.rand(HEADS, generator=g)),
        "B": 0.5 * torch.randn(BATCH, t, GROUPS, STATE, generator=g),
        "C": 0.5 * torch.randn(BATCH, t, GROUPS, STATE, generator=g),
        "D": torch.randn(HEADS, generator=g),
        "initial_states": 0.3 * torch.randn(BATCH, HEADS, HEADDIM, STATE, generator=g),
    }


def _leaves(inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.clone().requires_grad_() for k, v in inputs.items()}


@pytest.mark.parametrize("t", [16, 48, 37, 5])
@pytest.mark.parametrize("with_init", [True, False])
def test_chunked_matches_ref_forward_and_grad(t: int, with_init: bool) -> None:
    inputs = _ssd_inputs(t, seed=t)
    if not with_init:
        inputs.pop("initial_states")
    fast, ref = _leaves(inputs), _leaves(inputs)
    y, final = ssd_chunked(chunk_size=16, return_final_states=True, **fast)
    y_ref, final_ref = ssd_ref(return_final_states=True, **ref)
    assert y.dtype == torch.float32 and y.shape == (BATCH, t, HEADS, HEADDIM)
    assert_close(y, y_ref, **FP32)
    assert_close(final, final_ref, **FP32)
    g = torch.Generator().manual_seed(99)
    w_y, w_s = torch.randn(y.shape, generator=g), torch.randn(final.shape, generator=g)
    ((y * w_y).sum() + (final * w_s).sum()).backward()
    ((y_ref * w_y).sum() + (final_ref * w_s).sum()).backward()
    for name in fast:
        assert_close(fast[name].grad, ref[name].grad, **FP32, msg=f"grad of {name}")


@pytest.mark.parametrize("t", [1, 5, 37, 64])
def test_one_chunk_matches_ref_forward_and_grad(t: int) -> None:
    inputs = _ssd_inputs(t, seed=100 + t)
    inputs.pop("initial_states")
    fast, ref = _leaves(inputs), _leaves(inputs)
    y, y_ref = ssd_one_chunk(**fast), ssd_ref(**ref)
    assert isinstance(y_ref, Tensor)
    assert y.dtype == torch.float32 and y.shape == (BATCH, t, HEADS, HEADDIM)
    assert_close(y, y_ref, **FP32)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
    (y * w).sum().backward()
    (y_ref * w).sum().backward()
    for name in fast:
        assert_close(fast[name].grad, ref[name].grad, **FP32, msg=f"grad of {name}")


def test_one_chunk_leading_dims_are_independent_problems() -> None:
    """Leading dimensions (the fused evaluator's candidates) each solve their own SSD, with their
    own A and D broadcast over the batch."""
    per = [_ssd_inputs(19, seed=s) for s in (1, 2, 3)]
    stacked = {k: torch.stack([p[k] for p in per]) for k in ("x", "dt", "B", "C")}
    a = torch.stack([p["A"] for p in per])[:, None, :]  # (3, 1, H)
    d = torch.stack([p["D"] for p in per])[:, None, :]  # (3, 1, H)
    y = ssd_one_chunk(A=a, D=d, **stacked)  # (3, B, T, H, P)
    for j, p in enumerate(per):
        p.pop("initial_states")
        assert_close(y[j], ssd_ref(**p), **FP32)


def test_one_chunk_fp64_and_shape_errors() -> None:
    inputs = {k: v.double() for k, v in _ssd_inputs(23, seed=4).items() if k != "initial_states"}
    y_ref = ssd_ref(**inputs)
    assert isinstance(y_ref, Tensor)
    y = ssd_one_chunk(**inputs)
    assert y.dtype == torch.float64
    assert_close(y, y_ref, atol=1e-12, rtol=1e-12)
    bad = dict(inputs, dt=inputs["dt"][:, :-1])
    with pytest.raises(ValueError, match=r"dt \(\.\.\., T, H\)"):
        ssd_one_chunk(**bad)
    three = dict(inputs, B=inputs["B"][:, :, :1].expand(-1, -1, 3, -1))
    three["C"] = three["B"]
    with pytest.raises(ValueError, match="groups G=3 must divide heads H=4"):
        ssd_one_chunk(**three)


def test_chunk_size_and_split_invariance() -> None:
    inputs = _ssd_inputs(40, seed=7)
    full = ssd_chunked(chunk_size=16, **inputs)
    assert_close(ssd_chunked(chunk_size=3, **inputs), full, **FP32)
    assert_close(ssd_chunked(chunk_size=1000, **inputs), full, **FP32)
    # Running 25 steps, then the remaining 15 from the carried state, equals one pass.
    head = {
        k: (v[:, :25] if v.dim() >= 3 and k != "initial_states" else v) for k, v in inputs.items()
    }
    tail = {
        k: (v[:, 25:] if v.dim() >= 3 and k != "initial_states" else v) for k, v in inputs.items()
    }
    y_head, state = ssd_chunked(chunk_size=16, return_final_states=True, **head)
    tail["initial_states"] = state
    y_tail = ssd_chunked(chunk_size=16, **tail)
    assert_close(torch.cat([y_head, y_tail], dim=1), full, **FP32)


def test_headwise_d_and_shape_errors() -> None:
    inputs = _ssd_inputs(9, seed=3)
    inputs["D"] = torch.randn(HEADS, HEADDIM)
    assert_close(ssd_chunked(chunk_size=4, **inputs), ssd_ref(**inputs), **FP32)
    with pytest.raises(ValueError, match="dt must be"):
        ssd_chunked(chunk_size=4, **{**inputs, "dt": inputs["dt"][:, :3]})
    with pytest.raises(ValueError, match="chunk_size"):
        ssd_chunked(chunk_size=0, **inputs)


def _small_cfg(**overrides: object) -> Mamba2Config:
    base: dict[str, object] = {"d_model": 32, "d_state": 16, "headdim": 16, "chunk_size": 8}
    return Mamba2Config(**{**base, **overrides})  # type: ignore[arg-type]


def _mamba2_forward_ref(m: Mamba2, u: Tensor) -> Tensor:
    """The module's math written out with ssd_ref and an explicit causal convolution."""
    cfg = m.cfg
    b, t, _ = u.shape
    h, p, g, n, e = cfg.nheads, cfg.headdim, cfg.ngroups, cfg.d_state, cfg.d_inner
    zxbcdt = u @ m.in_proj.weight.T  # (B, T, 2E + 2GN + H)
    z, xbc, dt = zxbcdt.split([e, cfg.conv_dim, h], dim=-1)
    w = m.conv1d.weight[:, 0, :]  # (conv_dim, d_conv); tap d_conv-1 sees the current step
    conv = m.conv1d.bias.expand(b, t, -1).clone()
    for j in range(cfg.d_conv):
        shift = cfg.d_conv - 1 - j
        shifted = F.pad(xbc, (0, 0, shift, 0))[:, :t]  # xbc[t - shift], zeros before 0
        conv = conv + shifted * w[:, j]
    xbc = F.silu(conv)
    x, bm, cm = xbc.split([e, g * n, g * n], dim=-1)
    step = F.softplus(dt + m.dt_bias)
    y = ssd_ref(
        x.reshape(b, t, h, p),
        step,
        -torch.exp(m.A_log),
        bm.reshape(b, t, g, n),
        cm.reshape(b, t, g, n),
        D=m.D,
    )
    assert isinstance(y, Tensor)
    gated = y.reshape(b, t, e) * F.silu(z)
    grouped = gated.reshape(b, t, g, e // g)
    normed = grouped / torch.sqrt(grouped.pow(2).mean(-1, keepdim=True) + cfg.norm_eps)
    return (normed.reshape(b, t, e) * m.norm.weight) @ m.out_proj.weight.T


@pytest.mark.parametrize("ngroups", [1, 2])
def test_module_matches_written_out_forward(ngroups: int) -> None:
    torch.manual_seed(0)
    m = Mamba2(_small_cfg(ngroups=ngroups, impl="torch"))
    u = torch.randn(2, 19, 32)
    assert_close(m(u), _mamba2_forward_ref(m, u), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("t", [1, 7, 19])
def test_module_odd_lengths_and_grad(t: int) -> None:
    torch.manual_seed(t)
    m = Mamba2(_small_cfg())
    u = torch.randn(3, t, 32, requires_grad=True)
    y = m(u)
    assert y.shape == (3, t, 32)
    y.square().mean().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_module_is_causal() -> None:
    torch.manual_seed(4)
    m = Mamba2(_small_cfg())
    u = torch.randn(2, 21, 32)
    u2 = u.clone()
    u2[:, 11:] = torch.randn(2, 10, 32)
    y, y2 = m(u), m(u2)
    assert_close(y[:, :11], y2[:, :11], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(y[:, 11:], y2[:, 11:])


def test_parameter_names_shapes_and_init_match_mamba_ssm() -> None:
    cfg = Mamba2Config(d_model=64)  # FACTS §6 defaults: N 128, P 64, expand 2, d_conv 4
    assert (cfg.d_inner, cfg.nheads, cfg.conv_dim, cfg.d_in_proj) == (128, 2, 384, 514)
    m = Mamba2(cfg)
    shapes = {name: tuple(p.shape) for name, p in m.named_parameters()}
    assert shapes == {
        "in_proj.weight": (514, 64),
        "conv1d.weight": (384, 1, 4),
        "conv1d.bias": (384,),
        "dt_bias": (2,),
        "A_log": (2,),
        "D": (2,),
        "norm.weight": (128,),
        "out_proj.weight": (64, 128),
    }
    dt = F.softplus(m.dt_bias)
    assert bool(((dt >= cfg.dt_init_floor) & (dt <= cfg.dt_max * (1 + 1e-5))).all())
    a = torch.exp(m.A_log)
    assert bool(((a >= 1.0) & (a <= 16.0)).all())
    assert torch.equal(m.D.detach(), torch.ones(2))
    assert all(getattr(p, "_no_weight_decay", False) for p in (m.dt_bias, m.A_log, m.D))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="headdim"):
        Mamba2Config(d_model=24, headdim=64)
    with pytest.raises(ValueError, match="ngroups"):
        Mamba2Config(d_model=96, headdim=64, ngroups=2)  # 3 heads
    with pytest.raises(ValueError, match="impl"):
        Mamba2Config(d_model=64, impl="cuda")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="A_init_range"):
        Mamba2Config(d_model=64, A_init_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="dt_min"):
        Mamba2Config(d_model=64, dt_min=0.2, dt_max=0.1)


def test_triton_impl_on_cpu_tensor_raises_and_auto_falls_back() -> None:
    u = torch.randn(1, 5, 32)
    with pytest.raises(ValueError, match="CUDA"):
        Mamba2(_small_cfg(impl="triton"))(u)
    torch.manual_seed(5)
    auto = Mamba2(_small_cfg(impl="auto"))
    torch.manual_seed(5)
    plain = Mamba2(_small_cfg(impl="torch"))
    assert torch.equal(auto(u), plain(u))


def test_kernel_loader_names_install_step() -> None:
    assert isinstance(mamba_ssm_available(), bool)
    assert "pip install aira-async[cuda]" in INSTALL_HINT
    assert "MAMBA_FORCE_BUILD=TRUE" in INSTALL_HINT
    if mamba_ssm_available():
        assert callable(load_mamba_chunk_scan_combined())
    else:
        with pytest.raises(ImportError, match=r"aira-async\[cuda\]"):
            load_mamba_chunk_scan_combined()


def test_init_is_reproducible_under_seed() -> None:
    torch.manual_seed(11)
    a = Mamba2(_small_cfg())
    torch.manual_seed(11)
    b = Mamba2(_small_cfg())
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb), name
