"""Shared factories for the populations tests: node records, trees and a seeded search loop."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from populations.arrangement import PRIMITIVES, Arrangement, random_arrangement
from populations.policies.base import BasePolicy
from populations.proposers import BaseProposer
from populations.records import NodeRecord, NodeStats, NodeStatus, Operator
from populations.tree import SearchTree

RecordFactory = Callable[..., NodeRecord]


def record(
    node_id: int,
    parent_id: int | None = None,
    *,
    operator: Operator | None = None,
    fitness: float | None = 0.5,
    status: NodeStatus | None = None,
    proposal: str = "mA M",
    **extra: Any,
) -> NodeRecord:
    """A NodeRecord with sensible defaults: a draft if parentless, else an Improve.

    ``fitness=None`` makes a buggy (FAILED) node unless `status` says otherwise.
    """
    if operator is None:
        operator = Operator.DRAFT if parent_id is None else Operator.IMPROVE
    if status is None:
        status = NodeStatus.COMPLETE if fitness is not None else NodeStatus.FAILED
    return NodeRecord(
        node_id=node_id,
        run_id=1,
        agent_id=extra.pop("agent_id", 7),
        parent_id=parent_id,
        step=extra.pop("step", node_id),
        operator=operator,
        proposal=proposal,
        proposal_key=proposal,
        plan=extra.pop("plan", f"plan {node_id}"),
        status=status,
        val_fitness=fitness,
        **extra,
    )


@pytest.fixture
def make_record() -> RecordFactory:
    return record


HIDDEN_TARGET = random_arrangement(random.Random(12345), PRIMITIVES, 16)


def match_fitness(text: str, target: Arrangement = HIDDEN_TARGET) -> float:
    """Synthetic fitness: fraction of positions that match the hidden target."""
    layers = Arrangement.parse(text, length=len(target)).layers
    return sum(a == b for a, b in zip(layers, target.layers, strict=True)) / len(target)


def simulate(
    policy: BasePolicy,
    proposer: BaseProposer,
    *,
    seed: int = 0,
    n_steps: int = 40,
    fail_rate: float = 0.1,
    fitness: Callable[[str], float] = match_fitness,
    on_step: Callable[[SearchTree, Mapping[int, NodeStats], list[Any]], None] | None = None,
    rng: random.Random | None = None,
    tree: SearchTree | None = None,
    stats: dict[int, NodeStats] | None = None,
) -> tuple[SearchTree, dict[int, NodeStats]]:
    """Run the daemon's loop in miniature: a step's nodes are proposed, then finish in a shuffled
    order; a node fails (buggy) with probability `fail_rate`. Returns the tree and stats.

    Passing `rng`, `tree` and `stats` continues an earlier run (as `aira resume` would)."""
    rng = random.Random(seed) if rng is None else rng
    tree = SearchTree() if tree is None else tree
    stats = {} if stats is None else stats
    next_id = max(tree.node_ids(), default=0) + 1
    first_step = max((r.step for r in tree), default=-1) + 1
    for step in range(first_step, first_step + n_steps):
        actions = policy.next_actions(tree, stats, rng)
        if on_step is not None:
            on_step(tree, stats, actions)
        if not actions:
            break
        running = []
        for action in actions:
            proposal = proposer.propose(action, tree, rng)
            node = record(
                next_id,
                action.parent_id,
                operator=action.operator,
                fitness=None,
                status=NodeStatus.RUNNING,
                proposal=proposal.text,
                plan=proposal.plan,
                step=step,
            )
            tree.add(node)
            running.append(node)
            next_id += 1
        for node in rng.sample(running, len(running)):
            if rng.random() < fail_rate:
                done = dataclasses.replace(node, status=NodeStatus.FAILED, error="oom")
            else:
                score = fitness(node.proposal)
                done = dataclasses.replace(node, status=NodeStatus.COMPLETE, val_fitness=score)
            tree.update(done)
            stats.update(policy.on_result(tree, done, stats))
    return tree, stats


@pytest.fixture
def run_search() -> Callable[..., tuple[SearchTree, dict[int, NodeStats]]]:
    return simulate
