"""M: the SwiGLU MLP, w2(silu(w1 x) * w3 x), no biases.

Default hidden width (:func:`swiglu_hidden`), used whenever a config leaves it unset: the
Llama/MAD-lab rule, two thirds of 4·D rounded up to a multiple of 16,

    F = 16 · ceil(floor(8·D/3) / 16)

so D = 128 gives F = 352 (MAD-lab's SwiGLU at width 128) and D = 2048 gives F = 5472. The
parameter count of one layer is 3·D·F. Large-scale shapes (Llama 3.2 1B: F = 8192) set F
explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MLPConfig", "SwiGLU", "swiglu_hidden", "swiglu_ref"]

DEFAULT_MULTIPLE_OF = 16


def swiglu_hidden(d_model: int, multiple_of: int = DEFAULT_MULTIPLE_OF) -> int:
    """The default SwiGLU hidden width F for model width D (see the module docstring)."""
    if d_model <= 0:
        raise ValueError(f"d_model must be positive, got {d_model}")
    if multiple_of <= 0:
        raise ValueError(f"multiple_of must be positive, got {multiple_of}")
    raw = (8 * d_model) // 3
    return multiple_of * ((raw + multiple_of - 1) // multiple_of)


@dataclass(frozen=True, kw_only=True)
class MLPConfig:
    """Shape of one SwiGLU layer.

    Attributes:
        d_model: model width D.
        d_hidden: hidden width F; None means :func:`swiglu_hidden` (d_model).
    """

    d_model: int
    d_hidden: int | None = None

    def __post_init__(self) -> None:
        if self.d_model <= 0:
            raise ValueError(f"d_model must be positive, got {self.d_model}")
        if self.d_hidden is None:
            object.__setattr__(self, "d_hidden", swiglu_hidden(self.d_model))
        if self.hidden <= 0:
            raise ValueError(f"d_hidden must be positive, got {self.d_hidden}")

    @property
    def hidden(self) -> int:
        """F, with the None default resolved."""
        return swiglu_hidden(self.d_model) if self.d_hidden is None else self.d_hidden


def swiglu_ref(x: Tensor, w1: Tensor, w3: Tensor, w2: Tensor) -> Tensor:
    """The SwiGLU math with explicit weights.

    Args:
        x: (B, T, D).
        w1, w3: (F, D) gate and up projections.
        w2: (D, F) down projection.

    Returns:
        (B, T, D).
    """
    gate = x @ w1.T  # (B, T, F)
    up = x @ w3.T  # (B, T, F)
    return (gate * torch.sigmoid(gate) * up) @ w2.T  # (B, T, D)


class SwiGLU(nn.Module):
    """SwiGLU MLP: w1 (gate) and w3 (up) map D -> F, w2 (down) maps F -> D; no biases."""

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.w1 = nn.Linear(cfg.d_model, cfg.hidden, bias=False)
        self.w3 = nn.Linear(cfg.d_model, cfg.hidden, bias=False)
        self.w2 = nn.Linear(cfg.hidden, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, T, D). Returns: (B, T, D)."""
        hidden = F.silu(self.w1(x)) * self.w3(x)  # (B, T, F)
        out: Tensor = self.w2(hidden)  # (B, T, D)
        return out
