"""Diversity functions against values computed by hand on a five-node population.

The population (agent 1 drafts node 1 and breeds 2 and 3 from it; agent 2 drafts node 4 and
improves node 2, a migrant it received, into node 5):

    id agent parent arrangement   fitness
    1  1     -      mA mA M       0.5
    2  1     1      mA M  M       0.7
    3  1     1      mA mA M       0.4   (a duplicate of node 1)
    4  2     -      M  M  M       0.9
    5  2     2      M  M  mA      0.8
"""

from __future__ import annotations

import math

import pytest

from populations import diversity
from populations.records import NodeRecord, NodeStatus
from tests.populations.conftest import record

A1, A2, A3, A4 = ("mA", "mA", "M"), ("mA", "M", "M"), ("M", "M", "M"), ("M", "M", "mA")


@pytest.fixture
def population() -> list[NodeRecord]:
    return [
        record(1, None, proposal="mA mA M", fitness=0.5, agent_id=1),
        record(2, 1, proposal="mA M M", fitness=0.7, agent_id=1),
        record(3, 1, proposal="mA mA M", fitness=0.4, agent_id=1),
        record(4, None, proposal="M M M", fitness=0.9, agent_id=2),
        record(5, 2, proposal="M M mA", fitness=0.8, agent_id=2),
    ]


def h2(p: float) -> float:
    """Binary entropy in bits, written out."""
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def test_layer_frequencies_and_entropy(population: list[NodeRecord]) -> None:
    assert diversity.layer_frequencies(population) == [
        {"M": 0.4, "mA": 0.6},
        {"M": 0.6, "mA": 0.4},
        {"M": 0.8, "mA": 0.2},
    ]
    assert diversity.layer_entropy(population) == pytest.approx([h2(0.6), h2(0.6), h2(0.8)])
    # 0.97095 + 0.97095 + 0.72193 = 2.66383 bits over 3 layers, divided by log2(2) = 1
    assert diversity.mean_layer_entropy(population) == pytest.approx(0.887943, abs=1e-6)
    # with three primitives possible, divide by log2(3) as well
    assert diversity.mean_layer_entropy(population, n_primitives=3) == pytest.approx(
        0.887943 / math.log2(3), abs=1e-6
    )


def test_unique_duplicates_and_hamming(population: list[NodeRecord]) -> None:
    assert diversity.unique_arrangements(population) == [A1, A2, A3, A4]
    assert diversity.unique_count(population) == 4
    assert diversity.duplicate_rate(population) == pytest.approx(0.2)
    # d(A1,A2)=1 d(A1,A3)=2 d(A1,A4)=3 d(A2,A3)=1 d(A2,A4)=2 d(A3,A4)=1
    assert diversity.pairwise_hamming(population) == [1, 2, 3, 1, 2, 1]
    assert diversity.histogram(diversity.pairwise_hamming(population)) == {1: 3, 2: 2, 3: 1}
    # with the duplicate: node 3 repeats node 1, so one more pair at distance 0
    assert diversity.pairwise_hamming(population, unique=False).count(0) == 1


def test_lineages(population: list[NodeRecord]) -> None:
    # node 5's lineage runs through the migrant 2 back to agent 1's draft 1
    assert diversity.lineage_roots(population) == {1: 1, 2: 1, 3: 1, 4: 4, 5: 1}
    assert diversity.lineage_depths(population) == {1: 0, 2: 1, 3: 1, 4: 0, 5: 2}
    # roots 1 x4 and 4 x1: 2 ** H(0.8, 0.2) = 2 ** 0.72193 = 1.64938
    assert diversity.effective_lineages(population) == pytest.approx(1.649385, abs=1e-6)
    # parents of the children: 1, 1, 2 -> 2 ** H(2/3, 1/3) = 2 ** 0.918296 = 1.88988
    assert diversity.effective_ancestors(population) == pytest.approx(1.889882, abs=1e-6)
    # agent 2 alone: node 5's parent is outside, unless the whole run is the context
    agent2 = population[3:]
    assert diversity.lineage_roots(agent2) == {4: 4, 5: 5}
    assert diversity.lineage_roots(agent2, population) == {4: 4, 5: 1}
    assert diversity.effective_number([1, 1, 1, 1]) == pytest.approx(4.0)
    assert diversity.effective_number([]) == 0.0


def test_clusters(population: list[NodeRecord]) -> None:
    assert diversity.clusters(population, radius=1) == [
        diversity.Cluster(leader=A1, members=(A1, A2)),  # d(A1, A2) = 1
        diversity.Cluster(leader=A3, members=(A3, A4)),  # d(A1, A3) = 2 > 1; d(A3, A4) = 1
    ]
    assert len(diversity.clusters(population, radius=0)) == 4
    assert len(diversity.clusters(population, radius=3)) == 1


def test_primitive_ratios_against_fitness(population: list[NodeRecord]) -> None:
    assert diversity.primitive_ratios(population[1]) == {"M": 2 / 3, "mA": 1 / 3}
    # fraction of M: 1/3 2/3 1/3 1 2/3 (mean 0.6); fitness .5 .7 .4 .9 .8 (mean .66)
    # sxy = 0.22, sxx = 0.31111, syy = 0.172 -> r = 0.22 / sqrt(0.31111 * 0.172) = 0.951045
    corr = diversity.ratio_fitness_correlation(population)
    assert corr["M"] == pytest.approx(0.951045, abs=1e-6)
    assert corr["mA"] == pytest.approx(-0.951045, abs=1e-6)
    assert diversity.pearson([1.0, 1.0], [0.0, 1.0]) is None


def test_migration_effect(population: list[NodeRecord]) -> None:
    migrants, others = diversity.migration_effect(population)
    # node 5 (agent 2) improved node 2 (agent 1): 0.8 > 0.7
    assert (migrants.n_children, migrants.n_good, migrants.n_better_than_parent) == (1, 1, 1)
    assert migrants.mean_fitness == pytest.approx(0.8) and migrants.improve_rate == 1.0
    # nodes 2 and 3 bred from node 1 (0.5): 0.7 better, 0.4 not
    assert (others.n_children, others.n_good, others.n_better_than_parent) == (2, 2, 1)
    assert others.mean_fitness == pytest.approx(0.55) and others.improve_rate == 0.5
    lower = diversity.migration_effect(population, maximize=False)
    assert (lower[0].n_better_than_parent, lower[1].n_better_than_parent) == (0, 1)


def test_summaries(population: list[NodeRecord]) -> None:
    whole = diversity.summarize(population, radius=1)
    assert (whole.n_nodes, whole.n_unique, whole.n_clusters, whole.max_depth) == (5, 4, 2, 2)
    assert whole.duplicate_rate == pytest.approx(0.2)
    assert whole.mean_hamming == pytest.approx(10 / 6)
    assert whole.mean_depth == pytest.approx(0.8)
    assert whole.best == 0.9
    assert diversity.summarize(population, maximize=False).best == 0.4
    by_agent = diversity.summarize_by(population, lambda r: f"agent-{r.agent_id}", radius=1)
    assert list(by_agent) == ["agent-1", "agent-2"]
    assert by_agent["agent-1"].duplicate_rate == pytest.approx(1 / 3)
    assert by_agent["agent-2"].mean_hamming == 1.0  # d(A3, A4)
    assert by_agent["agent-2"].max_depth == 2  # lineages followed through the whole run


def test_unusable_records_are_left_out(population: list[NodeRecord]) -> None:
    broken = record(6, None, proposal="not an arrangement at all", fitness=None)
    empty = record(7, None, proposal="", fitness=None, status=NodeStatus.FAILED)
    assert diversity.usable([*population, broken, empty]) == population
    assert diversity.layer_frequencies([]) == []
    assert diversity.duplicate_rate([]) == 0.0
    assert diversity.summarize([]).mean_hamming is None
