"""The collapse monitor: metrics over an island's latest window, thresholds, rule checks."""

from __future__ import annotations

import pytest

from populations.collapse import CollapseRule, Response, checks_due, measure
from populations.records import NodeRecord, NodeStatus
from tests.populations.conftest import record


def _chain(keys: list[str]) -> list[NodeRecord]:
    """One lineage: node 1 a draft, every later node the child of the one before."""
    return [record(i + 1, i or None, proposal=k) for i, k in enumerate(keys)]


def test_a_healthy_island_breaches_nothing() -> None:
    drafts = [
        record(i, None, proposal=p) for i, p in enumerate(["mA M", "M mA", "M M", "mA mA"], 1)
    ]
    health = measure("a", drafts, CollapseRule(window=4))
    assert health.duplicate_rate == 0.0
    assert health.entropy == pytest.approx(1.0)  # each layer: mA and M half each
    assert health.lineages == pytest.approx(4.0)  # four drafts, four lineages
    assert not health.collapsed and health.n_nodes == 4


def test_a_collapsed_island_breaches_every_threshold() -> None:
    nodes = _chain(["mA M", "mA M", "mA M", "mA M", "M M"])
    rule = CollapseRule(window=4, max_duplicate_rate=0.5, min_entropy=0.2, min_lineages=1.5)
    health = measure("a", nodes, rule)
    # the window is nodes 2..5: keys mA M x3 + M M -> 2 distinct of 4 = 0.5 duplicates
    assert health.duplicate_rate == pytest.approx(0.5)
    # layer 1: mA 3/4, M 1/4 -> H = 0.811278; layer 2: all M -> 0; mean / log2(2) = 0.405639
    assert health.entropy == pytest.approx(0.405639, abs=1e-6)
    assert health.lineages == pytest.approx(1.0)  # one lineage (node 1, found via the context)
    assert health.breached == ("lineages",)
    strict = CollapseRule(window=4, max_duplicate_rate=0.4, min_entropy=0.5, min_lineages=None)
    assert measure("a", nodes, strict).breached == ("duplicate_rate", "entropy")
    assert measure("a", nodes, strict).as_dict()["breached"] == ["duplicate_rate", "entropy"]


def test_young_islands_and_unfinished_nodes_are_not_judged() -> None:
    nodes = _chain(["mA M", "mA M", "mA M"])
    assert not measure("a", nodes, CollapseRule(window=4)).collapsed
    running = record(9, 3, proposal="mA M", fitness=None, status=NodeStatus.RUNNING)
    assert measure("a", [*nodes, running], CollapseRule(window=4)).n_nodes == 3


def test_rule() -> None:
    rule = CollapseRule(every_nodes=10, response="reseed")  # type: ignore[arg-type]
    assert rule.response is Response.RESEED and rule.enabled
    assert [checks_due(n, rule) for n in (0, 9, 10, 35)] == [0, 0, 1, 3]
    assert checks_due(100, CollapseRule()) == 0 and not CollapseRule().enabled
    for bad in ({"window": 1}, {"min_entropy": 2.0}, {"response": "panic"}, {"every_nodes": 0}):
        with pytest.raises(ValueError):
            CollapseRule(**bad)  # type: ignore[arg-type]
