"""Build policies by name, as population presets name them (``policy = "mcts"``)."""

from __future__ import annotations

from typing import Any

from populations.policies.base import BasePolicy
from populations.policies.greedy import GreedyConfig, GreedyPolicy
from populations.policies.mcts import MCTSConfig, MCTSPolicy

POLICIES: dict[str, tuple[type[BasePolicy], type[Any]]] = {
    GreedyPolicy.name: (GreedyPolicy, GreedyConfig),
    MCTSPolicy.name: (MCTSPolicy, MCTSConfig),
}
"""Policy class and config class by name."""


def make_policy(name: str, **params: Any) -> BasePolicy:
    """Build a policy (``"greedy"`` or ``"mcts"``) from fields of its config.

    Example: ``make_policy("mcts", num_children=5, uct_c=0.25, maximize=False)``.

    Raises:
        ValueError: for an unknown name, an unknown parameter, or an invalid value.
    """
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}")
    policy_cls, config_cls = POLICIES[name]
    fields = set(config_cls.__dataclass_fields__)
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for policy {name!r}; "
            f"known: {', '.join(sorted(fields))}"
        )
    policy: BasePolicy = policy_cls(config_cls(**params))  # type: ignore[call-arg]
    return policy
