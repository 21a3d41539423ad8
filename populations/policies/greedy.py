"""Greedy policy: aira-dojo / AIDE rules (FACTS §2).

Each step, in order:

1. while fewer than `num_drafts` drafts exist, Draft: all missing drafts form one step, so their
   evaluations run concurrently;
2. with probability `debug_prob`, Debug a uniformly chosen buggy leaf whose debug depth is at most
   `max_debug_depth` (aira-dojo's ``<=``: a chain may hold ``max_debug_depth + 1`` repairs);
3. if no good node exists, Draft;
4. else Improve the best good node (the earliest on ties).

Steps after the drafts hold one action. The policy keeps no statistics (`on_result` returns {}).
The rng is drawn from in a fixed pattern (one `random()` per post-draft step, one `choice()` when
debugging), so the same tree and rng state give the same step.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from populations.policies.base import BasePolicy, debug, draft, improve, require_finished
from populations.records import Action, NodeStats
from populations.tree import SearchTree


@dataclass(frozen=True, slots=True, kw_only=True)
class GreedyConfig:
    """Settings of the greedy policy.

    Attributes:
        num_drafts: drafts to make before anything else (aira-dojo: 5).
        debug_prob: chance per step of debugging a buggy leaf (aira-dojo: 0.5; its best run 1.0).
        max_debug_depth: largest debug depth of a leaf that may be debugged (aira-dojo: 3; 20).
        maximize: True when a higher validation fitness is better.
        step_limit: largest number of nodes in the tree, or None.
    """

    num_drafts: int = 5
    debug_prob: float = 0.5
    max_debug_depth: int = 3
    maximize: bool = True
    step_limit: int | None = None

    def __post_init__(self) -> None:
        if self.num_drafts < 1:
            raise ValueError(f"num_drafts must be >= 1, got {self.num_drafts}")
        if not 0.0 <= self.debug_prob <= 1.0:
            raise ValueError(f"debug_prob must be in [0, 1], got {self.debug_prob}")
        if self.max_debug_depth < 0:
            raise ValueError(f"max_debug_depth must be >= 0, got {self.max_debug_depth}")
        if self.step_limit is not None and self.step_limit < 1:
            raise ValueError(f"step_limit must be >= 1 or None, got {self.step_limit}")


class GreedyPolicy(BasePolicy):
    """The greedy scaffold of aira-dojo (see the module docstring).

    Args:
        config: the policy's settings; defaults to `GreedyConfig()`.
    """

    name: ClassVar[str] = "greedy"

    def __init__(self, config: GreedyConfig | None = None) -> None:
        self.config = config if config is not None else GreedyConfig()

    @property
    def step_limit(self) -> int | None:
        return self.config.step_limit

    def debuggable(self, tree: SearchTree) -> list[int]:
        """Buggy leaves whose debug depth is at most `max_debug_depth`, ascending by id."""
        return [
            r.node_id
            for r in tree.buggy_leaves()
            if tree.debug_depth(r.node_id) <= self.config.max_debug_depth
        ]

    def next_actions(
        self, tree: SearchTree, stats: Mapping[int, NodeStats], rng: random.Random
    ) -> list[Action]:
        require_finished(tree)
        if self.is_done(tree):
            return []
        cfg = self.config
        missing = cfg.num_drafts - tree.n_drafts
        if missing > 0:
            return self._cap([draft() for _ in range(missing)], tree)
        if rng.random() < cfg.debug_prob:
            candidates = self.debuggable(tree)
            if candidates:
                return [debug(rng.choice(candidates))]
        best = tree.best_node(maximize=cfg.maximize)
        if best is None:
            return [draft()]
        return [improve(best.node_id)]

    def __repr__(self) -> str:
        return f"GreedyPolicy({self.config})"
