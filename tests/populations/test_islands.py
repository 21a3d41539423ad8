"""Island rules (topologies, schedule, migrant selection) and migrants in a receiving tree."""

from __future__ import annotations

import random

import pytest

from populations import islands
from populations.islands import MigrationRule, Topology
from populations.policies import GreedyConfig, GreedyPolicy, MCTSConfig, MCTSPolicy
from populations.records import ROOT_ID, NodeStatus, Operator
from populations.tree import SearchTree
from tests.populations.conftest import RecordFactory, record

NAMES = ("a", "b", "c", "d")


def test_topologies() -> None:
    ring = MigrationRule(topology=Topology.RING)
    assert [islands.neighbours(NAMES, s, ring) for s in NAMES] == [("b",), ("c",), ("d",), ("a",)]
    full = MigrationRule(topology=Topology.FULL)
    assert islands.neighbours(NAMES, "b", full) == ("a", "c", "d")
    rand = MigrationRule(topology=Topology.RANDOM, n_random=2, seed=5)
    picks = [islands.neighbours(NAMES, "a", rand, r) for r in range(20)]
    assert picks == [islands.neighbours(NAMES, "a", rand, r) for r in range(20)]  # seeded
    assert all(len(p) == 2 and "a" not in p for p in picks)
    assert len(set(picks)) > 1  # rounds draw anew
    assert islands.neighbours(("solo",), "solo", ring) == ()
    with pytest.raises(ValueError, match="unknown island"):
        islands.neighbours(NAMES, "z", ring)


def test_schedule_and_rule_validation() -> None:
    rule = MigrationRule(every_nodes=5, every_s=60.0)
    assert [islands.rounds_due(n, rule) for n in (0, 4, 5, 14, 15)] == [0, 0, 1, 2, 3]
    assert not islands.time_due(59.9, rule) and islands.time_due(60.0, rule)
    off = MigrationRule()
    assert not off.enabled and islands.rounds_due(100, off) == 0
    assert not islands.time_due(1e9, off)
    assert MigrationRule(topology="full", top_k=3).policy == "full:top3"  # type: ignore[arg-type]
    for bad in ({"every_nodes": 0}, {"every_s": -1.0}, {"top_k": 0}, {"topology": "star"}):
        with pytest.raises(ValueError):
            MigrationRule(**bad)  # type: ignore[arg-type]


def test_select_migrants_best_first_without_ping_pong_or_duplicates() -> None:
    pool = [
        record(1, fitness=0.9, proposal="mA M", agent_id=1),
        record(2, fitness=0.9, proposal="M M", agent_id=1),  # tie with 1: the earlier id first
        record(3, fitness=0.95, proposal="mA M", agent_id=1),  # same key as 1: sent once
        record(4, fitness=0.99, proposal="Mb M", agent_id=2),  # from the target: never back
        record(5, fitness=0.8, proposal="M mA", agent_id=1),  # already received
        record(6, fitness=0.7, proposal="Mb Mb", agent_id=1),  # the target holds this key
        record(7, fitness=0.6, proposal="mA mA", agent_id=1),
        record(8, fitness=None, proposal="M Mb", agent_id=1),  # buggy: never
    ]
    chosen = islands.select_migrants(
        pool, k=5, maximize=True, target_agents={2}, received={5}, target_keys={"Mb Mb"}
    )
    assert [r.node_id for r in chosen] == [3, 2, 7]
    lowest = islands.select_migrants(pool, k=2, maximize=False)
    assert [r.node_id for r in lowest] == [7, 6]
    assert islands.select_migrants([], k=1, maximize=True) == []


def test_best_island() -> None:
    pools = {
        "a": [record(1, fitness=0.5)],
        "b": [record(2, fitness=0.9)],
        "c": [record(3, fitness=0.9)],
        "d": [record(4, fitness=None)],
    }
    assert islands.best_island(pools, maximize=True, exclude="a") == "b"  # tie: by name
    assert islands.best_island(pools, maximize=True, exclude="b") == "c"
    assert islands.best_island(pools, maximize=False, exclude="d") == "a"
    assert islands.best_island({"d": pools["d"]}, maximize=True, exclude="a") is None


def _own_tree() -> SearchTree:
    return SearchTree([record(i, None, fitness=0.1 * i, agent_id=7) for i in (1, 2, 3)])


def test_import_migrant_is_a_parent_not_a_draft(make_record: RecordFactory) -> None:
    tree = _own_tree()
    foreign = make_record(50, 40, operator=Operator.IMPROVE, fitness=0.9, agent_id=8)
    held = tree.import_migrant(foreign)
    assert (held.parent_id, held.operator, held.agent_id) == (None, Operator.MIGRATE, 8)
    assert tree.imported() == [held] and tree.is_imported(50)
    assert [r.node_id for r in tree.children(ROOT_ID)] == [1, 2, 3, 50]
    assert (tree.n_drafts, tree.n_own, len(tree)) == (3, 3, 4)
    assert tree.best_node() == held and tree.has_proposal_key(foreign.proposal_key)
    # greedy improves the migrant, the best node it can see
    greedy = GreedyPolicy(GreedyConfig(num_drafts=3, debug_prob=0.0))
    actions = greedy.next_actions(tree, {}, random.Random(0))
    assert [(a.operator, a.parent_id) for a in actions] == [(Operator.IMPROVE, 50)]
    # an own child of the migrant, and a tree rebuilt from records + imports, agree
    tree.add(make_record(60, 50, fitness=0.95, agent_id=7))
    rebuilt = SearchTree([r for r in tree if not tree.is_imported(r.node_id)], imported=[foreign])
    assert rebuilt == tree and tree.copy() == tree
    assert tree.path_to_root(60) == [60, 50, ROOT_ID]
    with pytest.raises(ValueError, match="unknown parent"):
        SearchTree([r for r in tree if not tree.is_imported(r.node_id)])


def test_import_refusals(make_record: RecordFactory) -> None:
    tree = _own_tree()
    with pytest.raises(ValueError, match="not finished"):
        tree.import_migrant(make_record(9, fitness=None, status=NodeStatus.RUNNING, agent_id=8))
    with pytest.raises(ValueError, match="own"):
        tree.import_migrant(make_record(9, agent_id=7))
    with pytest.raises(ValueError, match="already"):
        tree.import_migrant(make_record(2, agent_id=8))
    tree.import_migrant(make_record(9, agent_id=8))
    with pytest.raises(ValueError, match="cannot change"):
        tree.update(tree[9])


def test_mcts_selects_a_migrant_and_counts_it_in_statistics(make_record: RecordFactory) -> None:
    policy = MCTSPolicy(MCTSConfig(num_children=2))
    tree = _own_tree()
    stats = policy.rebuild_stats(tree)
    tree.import_migrant(make_record(50, fitness=0.05, agent_id=8))
    # unvisited live children come first, even a weak migrant
    actions = policy.next_actions(tree, stats, random.Random(0))
    assert {(a.operator, a.parent_id) for a in actions} == {(Operator.IMPROVE, 50)}
    child = make_record(60, 50, fitness=0.5, agent_id=7)
    changes = policy.on_result(tree, child, stats)
    assert changes[50].visits == 2 and changes[ROOT_ID].visits == 5
    tree.add(child)
    assert policy.rebuild_stats(tree)[50] == changes[50]


def test_step_limit_counts_own_nodes_only(make_record: RecordFactory) -> None:
    policy = GreedyPolicy(GreedyConfig(num_drafts=3, step_limit=4))
    tree = _own_tree()
    for i in range(10):
        tree.import_migrant(make_record(100 + i, agent_id=8, proposal=f"m{i}"))
    assert not policy.is_done(tree)
    assert len(policy.next_actions(tree, {}, random.Random(0))) == 1
