"""Classical proposers: valid, seeded, parent-aware, non-repeating proposals."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from populations.arrangement import PRIMITIVES, TWO_PRIMITIVES, Arrangement, hamming_distance
from populations.proposers import (
    MUTATIONS,
    BaseProposer,
    EvolutionProposer,
    RandomProposer,
    make_proposer,
)
from populations.records import Action, NodeRecord, Operator
from populations.tree import SearchTree

RecordFactory = Callable[..., NodeRecord]

PARENT = "mA M mA M mA M mA M Mb Mb Mb Mb M M M M"
DRAFT = Action(operator=Operator.DRAFT, parent_id=None)


def improve(node_id: int = 1) -> Action:
    return Action(operator=Operator.IMPROVE, parent_id=node_id)


def debug(node_id: int = 1) -> Action:
    return Action(operator=Operator.DEBUG, parent_id=node_id)


@pytest.fixture
def tree(make_record: RecordFactory) -> SearchTree:
    return SearchTree([make_record(1, proposal=PARENT)])


@pytest.fixture(params=["random", "evolution"])
def proposer(request: pytest.FixtureRequest) -> BaseProposer:
    return make_proposer(request.param)


def test_draft_is_a_valid_seeded_arrangement(proposer: BaseProposer, tree: SearchTree) -> None:
    p = proposer.propose(DRAFT, tree, random.Random(0))
    assert p.action == DRAFT and p.error is None and p.plan.startswith("draft")
    assert Arrangement.parse(p.text, length=16).key == p.text
    assert p == proposer.propose(DRAFT, tree, random.Random(0))
    assert p != proposer.propose(DRAFT, tree, random.Random(1))


def test_alphabet_and_length_are_respected(tree: SearchTree) -> None:
    for cls in (RandomProposer, EvolutionProposer):
        proposer = cls(alphabet=TWO_PRIMITIVES, length=8)
        texts = [proposer.propose(DRAFT, tree, random.Random(s)).text for s in range(30)]
        assert all(Arrangement.parse(t, alphabet=TWO_PRIMITIVES, length=8) for t in texts)


def test_random_improve_is_a_point_mutation(tree: SearchTree) -> None:
    parent = Arrangement.parse(PARENT)
    for seed in range(20):
        p = RandomProposer().propose(improve(), tree, random.Random(seed))
        assert hamming_distance(Arrangement.parse(p.text), parent) == 1
        assert p.plan.startswith("point mutation: layer ")


def test_evolution_mutations_are_named_and_shaped(tree: SearchTree) -> None:
    parent = Arrangement.parse(PARENT)
    plans: Counter[str] = Counter()
    for seed in range(60):
        p = EvolutionProposer().propose(improve(), tree, random.Random(seed))
        child = Arrangement.parse(p.text, length=16)
        distance = hamming_distance(child, parent)
        assert distance >= 1
        if p.plan.startswith("point mutation"):
            assert distance == 1
            plans["point"] += 1
        elif p.plan.startswith("swap"):
            assert distance == 2 and sorted(child) == sorted(parent)
            plans["swap"] += 1
        else:
            assert p.plan.startswith("segment copy: layers ")
            plans["segment_copy"] += 1
    assert set(plans) == set(MUTATIONS)


def test_segment_copy_copies_the_named_segment(tree: SearchTree) -> None:
    proposer = EvolutionProposer(mutations=("segment_copy",))
    parent = PARENT.split()
    for seed in range(20):
        p = proposer.propose(improve(), tree, random.Random(seed))
        # "segment copy: layers a-b (...) copied over layers c-d"
        words = p.plan.split()
        a, b = (int(x) for x in words[3].split("-"))
        c, d = (int(x) for x in words[-1].split("-"))
        child = p.text.split()
        assert child[c - 1 : d] == parent[a - 1 : b]
        assert child[: c - 1] == parent[: c - 1] and child[d:] == parent[d:]


def test_swap_of_uniform_parent_falls_back_to_point(make_record: RecordFactory) -> None:
    tree = SearchTree([make_record(1, proposal="M M M M")])
    p = EvolutionProposer(length=4, mutations=("swap",)).propose(improve(), tree, random.Random(0))
    assert p.plan.startswith("point mutation") and p.text != "M M M M"


def test_avoids_arrangements_already_in_the_tree(make_record: RecordFactory) -> None:
    space = ["mA mA", "mA M", "M mA", "M M"]
    tree = SearchTree([make_record(i, proposal=k) for i, k in enumerate(space[:3], start=1)])
    proposer = RandomProposer(alphabet=TWO_PRIMITIVES, length=2, max_tries=60)
    assert {proposer.propose(DRAFT, tree, random.Random(s)).text for s in range(10)} == {"M M"}
    tree.add(make_record(4, proposal="M M"))
    p = proposer.propose(DRAFT, tree, random.Random(0))
    assert p.text in space and "repeated" in p.plan


def test_debug_of_an_evaluation_failure_perturbs_the_parent(make_record: RecordFactory) -> None:
    tree = SearchTree([make_record(1, proposal=PARENT, fitness=None, error="oom")])
    p = RandomProposer().propose(debug(), tree, random.Random(0))
    assert p.plan.startswith("debug: evaluation failed (oom); retry with point mutation")
    assert hamming_distance(Arrangement.parse(p.text), Arrangement.parse(PARENT)) == 1


@pytest.mark.parametrize(
    ("bad", "plan"),
    [
        ("mA M mA", "debug: repaired alphabet and length"),
        ("Mb Mb M M", "debug: repaired alphabet and length"),
        ("mA banana", "debug: proposal unreadable"),
    ],
)
def test_debug_repairs_or_resamples_an_invalid_proposal(
    make_record: RecordFactory, bad: str, plan: str
) -> None:
    tree = SearchTree([make_record(1, proposal=bad, fitness=None)])
    for proposer in (RandomProposer, EvolutionProposer):
        p = proposer(alphabet=TWO_PRIMITIVES, length=4).propose(debug(), tree, random.Random(0))
        assert p.plan.startswith(plan)
        assert Arrangement.parse(p.text, alphabet=TWO_PRIMITIVES, length=4).key == p.text
    repaired = RandomProposer(length=4).propose(
        debug(), SearchTree([make_record(1, proposal="mA M mA")]), random.Random(0)
    )
    assert repaired.text.split()[:3] == ["mA", "M", "mA"]


def test_improve_of_an_invalid_parent_drafts(make_record: RecordFactory) -> None:
    tree = SearchTree([make_record(1, proposal="not an arrangement")])
    p = EvolutionProposer().propose(improve(), tree, random.Random(0))
    assert "drafting instead" in p.plan and len(Arrangement.parse(p.text)) == 16


def test_malformed_actions_raise(proposer: BaseProposer, tree: SearchTree) -> None:
    with pytest.raises(ValueError, match="needs a parent"):
        proposer.propose(Action(operator=Operator.IMPROVE, parent_id=None), tree, random.Random(0))
    with pytest.raises(ValueError, match="needs a parent"):
        proposer.propose(debug(42), tree, random.Random(0))
    with pytest.raises(ValueError, match="cannot answer operator 'analyze'"):
        proposer.propose(Action(operator=Operator.ANALYZE, parent_id=1), tree, random.Random(0))


def test_make_proposer_and_validation() -> None:
    p = make_proposer("evolution", alphabet=["mA", "M"], length=8, mutations=["swap"])
    assert p == EvolutionProposer(alphabet=TWO_PRIMITIVES, length=8, mutations=("swap",))
    assert make_proposer("random") == RandomProposer(alphabet=PRIMITIVES, length=16)
    with pytest.raises(ValueError, match="'oracle'; known: bo, evolution, random"):
        make_proposer("oracle")
    with pytest.raises(ValueError, match="unknown parameter"):
        make_proposer("random", mutations=("swap",))
    for kwargs in ({"alphabet": ("X",)}, {"length": 0}, {"max_tries": 0}):
        with pytest.raises(ValueError):
            RandomProposer(**kwargs)
    with pytest.raises(ValueError, match="mutations"):
        EvolutionProposer(mutations=("crossover",))
