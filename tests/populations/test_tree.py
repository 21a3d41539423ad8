"""SearchTree: structure, queries, mutation rules, and structural equality."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from typing import Any

import networkx as nx
import pytest

from populations.records import ROOT_ID, NodeRecord, NodeStatus, Operator
from populations.tree import SearchTree

RecordFactory = Callable[..., NodeRecord]


@pytest.fixture
def records(make_record: RecordFactory) -> list[NodeRecord]:
    """root ─ 1 (0.4) ─ 3 (0.9) ─ 6 (buggy) ─ 7 debug (buggy) ─ 8 debug (buggy)
    └ 2 (buggy) ─ 4 debug (0.6)
    └ 5 (0.9)"""
    r = make_record
    return [
        r(1, None, fitness=0.4),
        r(2, None, fitness=None, error="oom"),
        r(3, 1, fitness=0.9, proposal="mA mA"),
        r(4, 2, operator=Operator.DEBUG, fitness=0.6),
        r(5, None, fitness=0.9, proposal="M M"),
        r(6, 3, fitness=None),
        r(7, 6, operator=Operator.DEBUG, fitness=None),
        r(8, 7, operator=Operator.DEBUG, fitness=None),
    ]


@pytest.fixture
def tree(records: list[NodeRecord]) -> SearchTree:
    return SearchTree(records)


def test_construction_is_order_independent(records: list[NodeRecord]) -> None:
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    a, b = SearchTree(records), SearchTree(shuffled)
    assert a == b
    assert a.signature() == b.signature()
    assert nx.utils.graphs_equal(a.graph, b.graph)
    incremental = SearchTree()
    for rec in records:
        incremental.add(rec)
    assert incremental == a


def test_structure_queries(tree: SearchTree) -> None:
    assert len(tree) == 8 and tree.agent_id == 7
    assert ROOT_ID not in tree and 3 in tree and 99 not in tree
    assert [r.node_id for r in tree.children(ROOT_ID)] == [1, 2, 5]
    assert [r.node_id for r in tree.children(1)] == [3]
    assert tree.parent(1) is None
    parent = tree.parent(3)
    assert parent is not None and parent.node_id == 1
    assert [r.node_id for r in tree.leaves()] == [4, 5, 8]
    assert tree.path_to_root(8) == [8, 7, 6, 3, 1, ROOT_ID]
    assert tree.descendants(1) == [3, 6, 7, 8]
    order = tree.postorder()
    assert order[-1] == ROOT_ID and sorted(order) == [ROOT_ID, *range(1, 9)]
    assert all(order.index(c) < order.index(p) for p, c in tree.graph.edges)
    assert [r.node_id for r in tree] == list(range(1, 9))


def test_debug_depth_and_chain(tree: SearchTree) -> None:
    assert [tree.debug_depth(i) for i in (1, 2, 4, 6, 7, 8)] == [0, 0, 1, 0, 1, 2]
    assert [r.node_id for r in tree.debug_chain(8)] == [6, 7, 8]
    assert [r.node_id for r in tree.debug_chain(3)] == [3]


def test_selections(tree: SearchTree) -> None:
    assert [r.node_id for r in tree.good_nodes()] == [1, 3, 4, 5]
    assert [r.node_id for r in tree.buggy_nodes()] == [2, 6, 7, 8]
    assert [r.node_id for r in tree.buggy_leaves()] == [8]
    assert tree.n_drafts == 3 and [r.node_id for r in tree.drafts()] == [1, 2, 5]
    assert tree.unfinished() == []
    assert tree.proposal_keys() == {"mA M", "mA mA", "M M"}
    assert tree.complexity_hint(ROOT_ID) == "normal"
    assert tree.complexity_hint(8) == "simple"


def test_best_node_direction_and_ties(tree: SearchTree) -> None:
    best = tree.best_node()
    assert best is not None and best.node_id == 3  # 3 and 5 tie at 0.9: the earlier wins
    worst = tree.best_node(maximize=False)
    assert worst is not None and worst.node_id == 1
    assert SearchTree().best_node() is None


def test_complete_without_metric_is_buggy(make_record: RecordFactory) -> None:
    tree = SearchTree([make_record(1, fitness=None, status=NodeStatus.COMPLETE)])
    assert [r.node_id for r in tree.buggy_leaves()] == [1]
    assert tree.best_node() is None


def test_add_and_update(tree: SearchTree, make_record: RecordFactory) -> None:
    tree.add(make_record(9, 5, status=NodeStatus.RUNNING, fitness=None))
    assert [r.node_id for r in tree.unfinished()] == [9]
    assert tree.is_leaf(9) and not tree.is_leaf(5)
    tree.update(make_record(9, 5, fitness=0.95))
    best = tree.best_node()
    assert best is not None and best.node_id == 9
    assert tree.unfinished() == []


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"node_id": 3, "parent_id": 1}, "already in the tree"),
        ({"node_id": 9, "parent_id": 42}, "unknown parent 42"),
        ({"node_id": ROOT_ID, "parent_id": None}, "reserved for the virtual root"),
        ({"node_id": 9, "parent_id": None, "agent_id": 8}, "belongs to agent 8"),
    ],
)
def test_add_rejects(
    tree: SearchTree, make_record: RecordFactory, node: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        tree.add(make_record(**node))


def test_update_rejects(tree: SearchTree, make_record: RecordFactory) -> None:
    with pytest.raises(ValueError, match="may not change parent"):
        tree.update(make_record(3, 5))
    with pytest.raises(KeyError):
        tree.update(make_record(99, None))


def test_constructor_rejects(make_record: RecordFactory) -> None:
    r = make_record
    with pytest.raises(ValueError, match="duplicate node id 1"):
        SearchTree([r(1), r(1)])
    with pytest.raises(ValueError, match="unknown parent 5"):
        SearchTree([r(1), r(2, 5)])
    with pytest.raises(ValueError, match="parent cycle"):
        SearchTree([r(1), r(2, 3), r(3, 2)])


def test_lookup_errors(tree: SearchTree) -> None:
    with pytest.raises(KeyError):
        tree[ROOT_ID]
    with pytest.raises(KeyError):
        tree.children(99)
    with pytest.raises(KeyError):
        tree.path_to_root(99)


def test_graph_is_a_read_only_view(tree: SearchTree) -> None:
    graph = tree.graph
    assert graph.nodes[ROOT_ID]["record"] is None
    assert graph.nodes[3]["record"] == tree[3]
    with pytest.raises(nx.NetworkXError):
        graph.add_node(99)


def test_memory(tree: SearchTree, make_record: RecordFactory) -> None:
    tree.add(make_record(9, 5, status=NodeStatus.RUNNING, fitness=None))
    memory = tree.memory()
    assert [m.node_id for m in memory] == list(range(1, 9))  # running nodes are not shown
    entry = memory[1]
    assert entry.buggy and entry.metric is None and entry.error == "oom"
    assert entry.plan == "plan 2" and entry.operator is Operator.DRAFT
    assert memory[2].metric == 0.9 and memory[2].proposal == "mA mA" and memory[2].parent_id == 1
    assert [m.node_id for m in tree.memory(include_buggy=False)] == [1, 3, 4, 5]
    assert [m.node_id for m in tree.memory(limit=2)] == [7, 8]
    assert tree.memory(limit=0) == []


def test_equality_and_serialisation(tree: SearchTree, records: list[NodeRecord]) -> None:
    copy = tree.copy()
    assert copy == tree and copy is not tree
    copy.update(dataclasses.replace(copy[4], val_fitness=0.61))
    assert copy != tree
    assert copy.signature() != tree.signature()
    rows = tree.to_dicts()
    assert json.loads(json.dumps(rows)) == rows
    assert rows[3] == {
        "node_id": 4,
        "parent_id": 2,
        "operator": "debug",
        "proposal_key": "mA M",
        "status": "complete",
        "val_fitness": 0.6,
        "error": None,
    }
    assert tree != records  # comparing with a non-tree is not an error
    assert "n_nodes=8" in repr(tree)
