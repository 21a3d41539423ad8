"""Search policies over one agent's tree: greedy (aira-dojo/AIDE rules) and MCTS (UCT)."""

from __future__ import annotations

from populations.policies.base import BasePolicy
from populations.policies.greedy import GreedyConfig, GreedyPolicy
from populations.policies.mcts import MCTSConfig, MCTSPolicy
from populations.policies.registry import POLICIES, make_policy

__all__ = [
    "POLICIES",
    "BasePolicy",
    "GreedyConfig",
    "GreedyPolicy",
    "MCTSConfig",
    "MCTSPolicy",
    "make_policy",
]
