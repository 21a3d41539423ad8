"""SearchTree's incremental indexes and MCTS's exact totals against from-scratch definitions."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable

import pytest

from populations.exactsum import from_units, to_units
from populations.policies import MCTSConfig, MCTSPolicy
from populations.records import ROOT_ID, NodeRecord, NodeStatus, Operator
from populations.tree import SearchTree

RecordFactory = Callable[..., NodeRecord]

_FITNESS = (0.0, -0.0, 0.5, 0.25, 1.0, -1.0, 1e-300, 5e-324, 0.1, 0.2, 0.3)


def _random_fitness(rng: random.Random) -> float | None:
    roll = rng.random()
    if roll < 0.2:
        return None
    if roll < 0.5:
        return rng.choice(_FITNESS)
    return rng.random() * rng.choice((1.0, -1.0, 1e-20, 1e20))


def _random_tree_ops(
    rng: random.Random, make_record: RecordFactory, n_ops: int
) -> tuple[SearchTree, list[SearchTree]]:
    """Random adds (ids out of order too), imports of migrants and updates; returns the tree
    and snapshots of it."""
    tree = SearchTree()
    ids = rng.sample(range(1, 4 * n_ops), n_ops)
    snapshots = []
    for node_id in ids:
        own = [r for r in tree.records() if not tree.is_imported(r.node_id)]
        if own and rng.random() < 0.4:
            target = rng.choice(own)
            fitness = _random_fitness(rng)
            status = rng.choice(list(NodeStatus)) if fitness is None else NodeStatus.COMPLETE
            tree.update(
                dataclasses.replace(
                    target,
                    val_fitness=fitness,
                    status=status,
                    operator=rng.choice(list(Operator)),
                    proposal_key=rng.choice(("", "a", "b", "c")),
                )
            )
        existing = [r.node_id for r in tree if r.node_id < node_id]
        parent = rng.choice([None, *existing]) if existing else None
        fitness = _random_fitness(rng)
        key = rng.choice(("", "a", "b", "c", "d"))
        if rng.random() < 0.15:  # a migrant from another agent, finished, from anywhere
            tree.import_migrant(
                make_record(node_id, rng.choice([None, 1]), fitness=fitness, proposal=key,
                            agent_id=99)
            )  # fmt: skip
        else:
            tree.add(make_record(node_id, parent, fitness=fitness, proposal=key))
        snapshots.append(tree.copy())
    return tree, snapshots


def _check_indexes(tree: SearchTree) -> None:
    records = tree.records()
    assert [r.node_id for r in records] == sorted(r.node_id for r in records)
    parents = {r.parent_id for r in records}
    leaves = [r for r in records if r.node_id not in parents]
    assert tree.leaves() == leaves
    assert tree.good_nodes() == [r for r in records if r.is_good]
    assert tree.buggy_nodes() == [r for r in records if r.is_buggy]
    assert tree.buggy_leaves() == [r for r in leaves if r.is_buggy]
    assert tree.unfinished() == [r for r in records if not r.status.finished]
    assert tree.drafts() == [r for r in records if r.operator is Operator.DRAFT]
    assert tree.imported() == [r for r in records if r.agent_id == 99]
    assert all(r.operator is Operator.MIGRATE and r.parent_id is None for r in tree.imported())
    assert tree.n_own == len(records) - len(tree.imported())
    assert tree.n_drafts == len(tree.drafts())
    keys = frozenset(r.proposal_key for r in records if r.proposal_key)
    assert tree.proposal_keys() == keys
    assert all(tree.has_proposal_key(k) == (k in keys) for k in ("", "a", "b", "c", "d", "e"))
    for node_id in [ROOT_ID, *(r.node_id for r in records)]:
        below = [r for r in records if r.parent_id == (None if node_id == ROOT_ID else node_id)]
        assert tree.children(node_id) == below
        assert tree.descendants(node_id) == sorted(
            n for n in tree.graph.nodes if n != node_id and node_id in tree.path_to_root(n)
        )
    values = [r.val_fitness for r in records if r.is_good and r.val_fitness is not None]
    bounds = tree.fitness_bounds()
    assert bounds == ((min(values), max(values)) if values else None)
    if bounds is not None:  # the very elements min/max pick, signed zeros included
        assert (math.copysign(1, bounds[0]), math.copysign(1, bounds[1])) == (
            math.copysign(1, min(values)),
            math.copysign(1, max(values)),
        )
    good = [(r.val_fitness, r) for r in records if r.is_good and r.val_fitness is not None]
    for maximize in (True, False):
        best: tuple[float, NodeRecord] | None = None
        for value, r in good:
            if best is None or (value > best[0] if maximize else value < best[0]):
                best = (value, r)
        assert tree.best_node(maximize=maximize) == (None if best is None else best[1])


@pytest.mark.parametrize("seed", range(8))
def test_incremental_indexes_equal_a_rebuild(seed: int, make_record: RecordFactory) -> None:
    tree, snapshots = _random_tree_ops(random.Random(seed), make_record, 40)
    _check_indexes(tree)
    for snapshot in snapshots[::7]:
        _check_indexes(snapshot)


def test_nan_fitness_keeps_min_max_semantics(make_record: RecordFactory) -> None:
    nan = math.nan
    tree = SearchTree([make_record(1, fitness=0.3), make_record(2, fitness=0.1)])
    tree.add(make_record(3, fitness=nan))
    tree.add(make_record(4, fitness=0.9))
    assert tree.fitness_bounds() == (0.1, 0.9)
    best = tree.best_node()
    assert best is not None and best.node_id == 4
    nan_first = SearchTree([make_record(1, fitness=nan), make_record(2, fitness=0.5)])
    bounds = nan_first.fitness_bounds()
    assert bounds is not None and all(math.isnan(b) for b in bounds)
    best = nan_first.best_node()
    assert best is not None and best.node_id == 1
    nan_first.update(make_record(1, fitness=0.7))
    assert nan_first.fitness_bounds() == (0.5, 0.7)


def test_exact_units_round_like_fsum() -> None:
    rng = random.Random(0)
    special = (0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.0, 1e-16, 1e16, 0.1, 1e300)
    for _ in range(3000):
        values = [
            rng.choice(special) * rng.choice((1, -1))
            if rng.random() < 0.4
            else math.ldexp(rng.random() - 0.5, rng.randint(-1074, 900))
            for _ in range(rng.randint(0, 7))
        ]
        units = [to_units(v) for v in values]
        assert None not in units
        total = from_units(sum(u for u in units if u is not None))
        assert total.hex() == math.fsum(values).hex()
    assert to_units(math.inf) is None and to_units(math.nan) is None
    assert to_units(2.0**1000) is None


def _stats_match(policy: MCTSPolicy, tree: SearchTree, record: NodeRecord) -> None:
    fast = policy.on_result(tree, record, {})
    ref = policy.on_result_ref(tree, record, {})
    assert fast.keys() == ref.keys()
    for node_id, stats in fast.items():
        assert stats.visits == ref[node_id].visits
        assert stats.value_sum.hex() == ref[node_id].value_sum.hex()


@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_mcts_on_result_equals_its_definition(
    seed: int, maximize: bool, make_record: RecordFactory
) -> None:
    """Whether the tree holds `record`, an older version of it, or not yet, and with fitness
    values that are inexact (inf) for the fast path."""
    rng = random.Random(seed)
    policy = MCTSPolicy(MCTSConfig(maximize=maximize))
    tree, _ = _random_tree_ops(rng, make_record, 60)
    for held in rng.sample(tree.records(), 20):
        fitness = rng.choice(_FITNESS)
        final = dataclasses.replace(held, status=NodeStatus.COMPLETE, val_fitness=fitness)
        _stats_match(policy, tree, final)
    new_id = max(tree.node_ids()) + 1
    for parent in (None, *rng.sample(tree.node_ids(), 5)):
        _stats_match(policy, tree, make_record(new_id, parent, fitness=rng.random()))
    tree.add(make_record(new_id, None, fitness=math.inf))
    assert tree.good_subtree_totals(ROOT_ID) is None
    _stats_match(policy, tree, make_record(new_id + 1, None, fitness=0.5))
