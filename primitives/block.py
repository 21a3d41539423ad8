"""The residual shell every layer of an arrangement lives in: x + mixer(RMSNorm(x)).

One shell for all primitives (attention, MLP, Mamba2), as in mamba-ssm's ``Block``: the
primitive is built by a factory so the shell knows nothing of what it wraps.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["NORM_EPS", "Block"]

NORM_EPS = 1e-5


class Block(nn.Module):
    """Pre-norm residual layer: ``x = x + mixer(norm(x))``.

    Args:
        d_model: width D of the residual stream.
        mixer_factory: builds the wrapped module, which maps (B, T, D) -> (B, T, D).
        norm_eps: epsilon of the RMSNorm (its only parameter is a weight of D ones).
    """

    def __init__(
        self,
        d_model: int,
        mixer_factory: Callable[[], nn.Module],
        *,
        norm_eps: float = NORM_EPS,
    ) -> None:
        super().__init__()
        if d_model <= 0:
            raise ValueError(f"d_model must be positive, got {d_model}")
        self.norm = nn.RMSNorm(d_model, eps=norm_eps)
        self.mixer = mixer_factory()

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, T, D). Returns: (B, T, D)."""
        out: Tensor = x + self.mixer(self.norm(x))  # (B, T, D)
        return out
