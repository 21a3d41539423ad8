"""M: SwiGLU module against its written-out math; the default hidden width rule."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from primitives.mlp import MLPConfig, SwiGLU, swiglu_hidden, swiglu_ref


@pytest.mark.parametrize(
    ("d_model", "hidden"), [(16, 48), (64, 176), (128, 352), (2048, 5472), (3, 16)]
)
def test_default_hidden_rule(d_model: int, hidden: int) -> None:
    assert swiglu_hidden(d_model) == hidden
    assert MLPConfig(d_model=d_model).d_hidden == hidden


def test_config_validation() -> None:
    assert MLPConfig(d_model=8, d_hidden=20).hidden == 20
    with pytest.raises(ValueError, match="d_model"):
        MLPConfig(d_model=0)
    with pytest.raises(ValueError, match="d_hidden"):
        MLPConfig(d_model=8, d_hidden=-1)
    with pytest.raises(ValueError, match="multiple_of"):
        swiglu_hidden(8, multiple_of=0)


def test_module_matches_reference() -> None:
    torch.manual_seed(0)
    mlp = SwiGLU(MLPConfig(d_model=24, d_hidden=40))
    x = torch.randn(2, 7, 24)
    expected = swiglu_ref(x, mlp.w1.weight, mlp.w3.weight, mlp.w2.weight)
    assert_close(mlp(x), expected, atol=1e-5, rtol=1e-5)
    shapes = {name: tuple(p.shape) for name, p in mlp.named_parameters()}
    assert shapes == {"w1.weight": (40, 24), "w3.weight": (40, 24), "w2.weight": (24, 40)}
