"""MCTS policy: UCT over normalised values, as in aira-dojo's MCTS solver (FACTS §2).

**Step.** A step is either a *debug step* or an *expansion*:

- *Debug step*: while some buggy leaf has debug depth < `max_debug_depth`, the step debugs every
  such leaf at once. A buggy child therefore starts a debug chain that runs to its end (fixed, or
  `max_debug_depth` repairs) before the next selection, as aira-dojo's ``debug_cycle`` does; the
  chains of one expansion's buggy children run side by side.
- *Expansion*: select a leaf from the root by UCT and create `num_children` children of it in one
  step: Draft under the root, Improve elsewhere.

**Selection.** From the root, repeatedly move to the child with the largest
``UCT = Q_norm + c * sqrt(ln N_parent / N_child)`` until reaching a node without *live* children.
Q = value_sum / visits, where value_sum adds direction-signed metrics (the metric when maximising,
its negative when minimising), so Q is always higher-is-better; Q_norm is Q min-max normalised over
the signed metrics of every good node of the tree (0.5 when they are all equal). Unvisited live
children come first (UCT = +inf). Ties go to the smaller node id, so selection needs no rng.
A child is *live* if it is good or has visits, i.e. its subtree holds a good node. A buggy child
whose debug chain never produced a good node is dead: it is never selected (aira-dojo scores it
-1e8 and only reaches it when all siblings are dead too, then improves a buggy node; we instead
treat a node without live children as a leaf and expand it again, e.g. re-drafting when every
draft failed).

**Back-propagation (aira-dojo's rule).** A good node adds one visit and its signed metric to every
node on its path, `ROOT_ID` included. A buggy node back-propagates nothing: no visit, no value.
When a debug chain fixes a node, the fixed node's path runs through the buggy node and the failed
repairs, so they receive the fixed metric, exactly as aira-dojo back-propagates over
``path + debug_path``.

`on_result` computes each changed entry from the tree rather than by incrementing: the stats of a
node are the count and the `math.fsum` of the signed metrics of the good nodes in its subtree. This
equals the incremental rule, is exactly independent of the order in which a step's nodes finish
(float addition is not associative; fsum is exactly rounded), and is idempotent, so replaying a
result on resume never counts it twice. `rebuild_stats` recomputes the whole table from a tree.
The tree keeps each subtree's count and exact fitness sum current
(`SearchTree.good_subtree_totals`: integers that round as `math.fsum` does), so `on_result` costs
O(depth);
`on_result_ref` is the plain O(n * depth) definition, used when a fitness has no exact form.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from populations.exactsum import from_units, to_units
from populations.policies.base import BasePolicy, debug, draft, improve, require_finished
from populations.records import ROOT_ID, Action, NodeRecord, NodeStats
from populations.tree import SearchTree

_ZERO = NodeStats()


@dataclass(frozen=True, slots=True, kw_only=True)
class MCTSConfig:
    """Settings of the MCTS policy.

    Attributes:
        num_children: children created by one expansion (aira-dojo: 5).
        uct_c: exploration constant c of UCT (aira-dojo: 0.25).
        max_debug_depth: a buggy leaf is debugged while its debug depth is below this.
        maximize: True when a higher validation fitness is better.
        step_limit: largest number of nodes in the tree, or None.
    """

    num_children: int = 5
    uct_c: float = 0.25
    max_debug_depth: int = 3
    maximize: bool = True
    step_limit: int | None = None

    def __post_init__(self) -> None:
        if self.num_children < 1:
            raise ValueError(f"num_children must be >= 1, got {self.num_children}")
        if not (self.uct_c >= 0.0 and math.isfinite(self.uct_c)):
            raise ValueError(f"uct_c must be finite and >= 0, got {self.uct_c}")
        if self.max_debug_depth < 0:
            raise ValueError(f"max_debug_depth must be >= 0, got {self.max_debug_depth}")
        if self.step_limit is not None and self.step_limit < 1:
            raise ValueError(f"step_limit must be >= 1 or None, got {self.step_limit}")


class MCTSPolicy(BasePolicy):
    """The MCTS scaffold of aira-dojo (see the module docstring).

    Args:
        config: the policy's settings; defaults to `MCTSConfig()`.
    """

    name: ClassVar[str] = "mcts"

    def __init__(self, config: MCTSConfig | None = None) -> None:
        self.config = config if config is not None else MCTSConfig()

    @property
    def step_limit(self) -> int | None:
        return self.config.step_limit

    def signed(self, metric: float) -> float:
        """The metric oriented so that higher is better."""
        return metric if self.config.maximize else -metric

    # -- selection ------------------------------------------------------------------------------

    def open_debug_leaves(self, tree: SearchTree) -> list[int]:
        """Buggy leaves whose debug chain may continue (depth < `max_debug_depth`), ascending."""
        return [
            r.node_id
            for r in tree.buggy_leaves()
            if r.status.finished and tree.debug_depth(r.node_id) < self.config.max_debug_depth
        ]

    def value_bounds(self, tree: SearchTree) -> tuple[float, float] | None:
        """(min, max) of the signed metrics of all good nodes; None when there is none."""
        bounds = tree.fitness_bounds()
        if bounds is None or self.config.maximize:
            return bounds
        # min/max of the negated list pick the same elements as max/min of the list
        return -bounds[1], -bounds[0]

    def live_children(
        self, tree: SearchTree, stats: Mapping[int, NodeStats], node_id: int
    ) -> list[int]:
        """Finished children whose subtree holds a good node (good, or visited), ascending."""
        return [
            c.node_id
            for c in tree.children(node_id)
            if c.status.finished and (c.is_good or stats.get(c.node_id, _ZERO).visits > 0)
        ]

    def uct_scores(
        self, tree: SearchTree, stats: Mapping[int, NodeStats], node_id: int
    ) -> dict[int, float]:
        """UCT of each live child of `node_id` (+inf for unvisited ones)."""
        bounds = self.value_bounds(tree)
        n_parent = max(stats.get(node_id, _ZERO).visits, 1)
        scores: dict[int, float] = {}
        for child in self.live_children(tree, stats, node_id):
            s = stats.get(child, _ZERO)
            if s.visits == 0:
                scores[child] = math.inf
                continue
            q = s.value
            if bounds is None or bounds[1] == bounds[0]:
                q_norm = 0.5
            else:
                q_norm = (q - bounds[0]) / (bounds[1] - bounds[0])
            scores[child] = q_norm + self.config.uct_c * math.sqrt(math.log(n_parent) / s.visits)
        return scores

    def select_path(self, tree: SearchTree, stats: Mapping[int, NodeStats]) -> list[int]:
        """Ids from `ROOT_ID` down to the leaf that UCT selects for expansion."""
        path = [ROOT_ID]
        while True:
            scores = self.uct_scores(tree, stats, path[-1])
            if not scores:
                return path
            path.append(max(scores, key=lambda c: (scores[c], -c)))

    def next_actions(
        self, tree: SearchTree, stats: Mapping[int, NodeStats], rng: random.Random
    ) -> list[Action]:
        require_finished(tree)
        if self.is_done(tree):
            return []
        open_leaves = self.open_debug_leaves(tree)
        if open_leaves:
            return self._cap([debug(n) for n in open_leaves], tree)
        leaf = self.select_path(tree, stats)[-1]
        n = self.config.num_children
        actions = [draft() for _ in range(n)] if leaf == ROOT_ID else [improve(leaf)] * n
        return self._cap(actions, tree)

    # -- statistics -----------------------------------------------------------------------------

    def on_result(
        self, tree: SearchTree, record: NodeRecord, stats: Mapping[int, NodeStats]
    ) -> dict[int, NodeStats]:
        """New stats of `record`'s path if it is good, else {} (buggy nodes propagate nothing).

        `tree` must hold the final records of every other finished node of the agent; it may or
        may not hold `record` yet. `stats` is not read: entries are recomputed from the tree.
        """
        if not record.is_good:
            return {}
        assert record.val_fitness is not None
        node_id = record.node_id
        own = to_units(record.val_fitness)
        if own is None or tree.good_subtree_totals(ROOT_ID) is None:
            return self.on_result_ref(tree, record, stats)
        # Every entry is its subtree's totals with `record` in place of the tree's version of it.
        d_good, d_units = 1, own
        if node_id in tree:
            path = tree.path_to_root(node_id)
            held = tree[node_id]
            if held.is_good:
                assert held.val_fitness is not None
                held_units = to_units(held.val_fitness)
                assert held_units is not None  # else good_subtree_totals would be None
                d_good, d_units = 0, own - held_units
        else:
            above = [ROOT_ID] if record.parent_id is None else tree.path_to_root(record.parent_id)
            path = [node_id, *above]
        sign = 1 if self.config.maximize else -1
        out: dict[int, NodeStats] = {}
        for member in path:
            held_here = member == ROOT_ID or member in tree
            totals = tree.good_subtree_totals(member) if held_here else (0, 0)
            assert totals is not None
            n_good, units = totals[0] + d_good, totals[1] + d_units
            # signed units, rounded once: fsum of the negated metrics (a zero sum is +0.0)
            out[member] = NodeStats(visits=n_good, value_sum=from_units(sign * units))
        return out

    def on_result_ref(
        self, tree: SearchTree, record: NodeRecord, stats: Mapping[int, NodeStats]
    ) -> dict[int, NodeStats]:
        """`on_result` by its definition: fsum over each path node's subtree (O(n * depth))."""
        if not record.is_good:
            return {}
        metrics = self._good_metrics(tree)
        metrics[record.node_id] = self._metric(record)
        if record.node_id in tree:
            path = tree.path_to_root(record.node_id)
        else:
            above = [ROOT_ID] if record.parent_id is None else tree.path_to_root(record.parent_id)
            path = [record.node_id, *above]
        out: dict[int, NodeStats] = {}
        for node_id in path:
            if node_id == record.node_id:
                members = {node_id, *tree.descendants(node_id)} if node_id in tree else {node_id}
            else:
                members = {node_id, record.node_id, *tree.descendants(node_id)}
            out[node_id] = _stats([metrics[m] for m in sorted(members) if m in metrics])
        return out

    def rebuild_stats(self, tree: SearchTree) -> dict[int, NodeStats]:
        """The full statistics table implied by `tree` (entries with at least one visit)."""
        metrics = self._good_metrics(tree)
        below: dict[int, list[float]] = {}
        for node_id in tree.postorder():
            values = [metrics[node_id]] if node_id in metrics else []
            for child in tree.children(node_id):
                values.extend(below[child.node_id])
            below[node_id] = values
        return {n: _stats(v) for n, v in below.items() if v}

    def _metric(self, record: NodeRecord) -> float:
        assert record.val_fitness is not None
        return self.signed(record.val_fitness)

    def _good_metrics(self, tree: SearchTree) -> dict[int, float]:
        return {r.node_id: self._metric(r) for r in tree.good_nodes()}

    def __repr__(self) -> str:
        return f"MCTSPolicy({self.config})"


def _stats(signed_metrics: list[float]) -> NodeStats:
    return NodeStats(visits=len(signed_metrics), value_sum=math.fsum(signed_metrics))
