"""The search-policy interface: which expansions an agent runs next, and what statistics change.

Contract shared by every policy (checked by ``PolicyContract`` in tests/populations):

- **Steps.** `BasePolicy.next_actions` returns the actions of one *step*: a list whose nodes are
  proposed and evaluated concurrently (MCTS's five children of one expansion, greedy's 5 drafts).
  The daemon calls it again only after every node of the previous step of this agent finished, so
  the tree it sees holds no PENDING or RUNNING node (`next_actions` raises ValueError otherwise).
- **Determinism.** The result depends only on the arguments ``(tree, stats, rng)``: the same tree,
  statistics and rng state give the same actions. A policy object keeps no mutable state, so one
  object can serve many agents and a resumed daemon behaves exactly like one that never stopped.
- **Statistics.** `BasePolicy.on_result` returns the `NodeStats` entries that change when one node
  finishes; the daemon persists them in the same transaction as the node. The result must not
  depend on the order in which the nodes of one step finish; applying it twice must be harmless.
- **Validity.** Every action names `ROOT_ID`'s children (``parent_id=None``, Draft only) or an
  existing finished node; Improve targets good nodes, Debug targets buggy leaves.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

from populations.records import Action, NodeRecord, NodeStats, Operator
from populations.tree import SearchTree


class BasePolicy(ABC):
    """A search scaffold over one agent's tree (see the module docstring for the contract).

    Subclasses set `name` and take a frozen config as their only constructor argument.
    """

    name: ClassVar[str]

    @property
    @abstractmethod
    def step_limit(self) -> int | None:
        """Largest number of nodes the agent's tree may hold, or None for no limit."""

    @abstractmethod
    def next_actions(
        self, tree: SearchTree, stats: Mapping[int, NodeStats], rng: random.Random
    ) -> list[Action]:
        """The actions of the next step (empty when `is_done`).

        Args:
            tree: the agent's tree; every node in it has finished.
            stats: persisted statistics by node id (`ROOT_ID` for the root); missing = zero.
            rng: the agent's random stream; the only source of randomness.

        Raises:
            ValueError: if the tree holds unfinished nodes.
        """

    def on_result(
        self, tree: SearchTree, record: NodeRecord, stats: Mapping[int, NodeStats]
    ) -> dict[int, NodeStats]:
        """Statistics that change because `record` finished (default: none).

        Args:
            tree: the agent's tree; it may or may not already hold `record`'s final version.
            record: the finished node.
            stats: the persisted statistics before this result.

        Returns:
            New `NodeStats` by node id, only for the entries that change.
        """
        return {}

    def rebuild_stats(self, tree: SearchTree) -> dict[int, NodeStats]:
        """The statistics implied by a tree of finished nodes (default: none).

        A resumed daemon may compare this with the persisted table to check it.
        """
        return {}

    def is_done(self, tree: SearchTree) -> bool:
        """True once the tree holds `step_limit` of the agent's own nodes (imports don't count)."""
        return self.step_limit is not None and tree.n_own >= self.step_limit

    def _budget(self, tree: SearchTree) -> int | None:
        """How many more nodes may be created (None = unlimited)."""
        if self.step_limit is None:
            return None
        return max(0, self.step_limit - tree.n_own)

    def _cap(self, actions: list[Action], tree: SearchTree) -> list[Action]:
        budget = self._budget(tree)
        return actions if budget is None else actions[:budget]


def require_finished(tree: SearchTree) -> None:
    """Raise ValueError naming the unfinished nodes, if any (step contract)."""
    unfinished = [r.node_id for r in tree.unfinished()]
    if unfinished:
        raise ValueError(
            f"next_actions needs a tree without unfinished nodes; unfinished: {unfinished}"
        )


def draft() -> Action:
    return Action(operator=Operator.DRAFT, parent_id=None)


def improve(node_id: int) -> Action:
    return Action(operator=Operator.IMPROVE, parent_id=node_id)


def debug(node_id: int) -> Action:
    return Action(operator=Operator.DEBUG, parent_id=node_id)
