"""Policies: the `PolicyContract` suite, run on greedy and MCTS, then each policy's own rules."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from populations.policies import (
    BasePolicy,
    GreedyConfig,
    GreedyPolicy,
    MCTSConfig,
    MCTSPolicy,
    make_policy,
)
from populations.proposers import EvolutionProposer, RandomProposer
from populations.records import ROOT_ID, Action, NodeRecord, NodeStats, NodeStatus, Operator
from populations.tree import SearchTree

RecordFactory = Callable[..., NodeRecord]
Simulate = Callable[..., tuple[SearchTree, dict[int, NodeStats]]]

DR, IM, DB = Operator.DRAFT, Operator.IMPROVE, Operator.DEBUG


def kinds(actions: list[Action]) -> list[tuple[Operator, int | None]]:
    return [(a.operator, a.parent_id) for a in actions]


@dataclasses.dataclass(frozen=True)
class Spec:
    """How the contract suite builds a policy and what its debug-chain bound is."""

    name: str
    max_chain: Callable[[int], int]  # max_debug_depth -> deepest debug node allowed

    def make(self, **params: Any) -> BasePolicy:
        return make_policy(self.name, **params)


SPECS = [
    # aira-dojo's greedy debugs leaves of depth <= max, so a chain reaches max + 1.
    Spec("greedy", lambda m: m + 1),
    Spec("mcts", lambda m: m),
]


@pytest.fixture(params=SPECS, ids=lambda s: s.name)
def spec(request: pytest.FixtureRequest) -> Spec:
    spec: Spec = request.param
    return spec


class TestPolicyContract:
    """Behaviour every policy must have (see populations/policies/base.py)."""

    def test_first_step_drafts_in_parallel(self, spec: Spec) -> None:
        actions = spec.make().next_actions(SearchTree(), {}, random.Random(0))
        assert kinds(actions) == [(DR, None)] * 5

    def test_deterministic_under_seed(self, spec: Spec, run_search: Simulate) -> None:
        policy = spec.make()
        a = run_search(policy, EvolutionProposer(), seed=11, n_steps=30)
        b = run_search(policy, EvolutionProposer(), seed=11, n_steps=30)
        c = run_search(policy, EvolutionProposer(), seed=12, n_steps=30)
        assert a[0] == b[0] and a[1] == b[1]
        assert a[0] != c[0]  # the seed matters, so the equality above is not vacuous
        tree, stats = a
        rngs = random.Random(5), random.Random(5)
        assert policy.next_actions(tree, stats, rngs[0]) == policy.next_actions(
            tree, stats, rngs[1]
        )

    def test_actions_reference_valid_nodes(self, spec: Spec, run_search: Simulate) -> None:
        seen: list[Operator] = []

        def check(tree: SearchTree, stats: Mapping[int, NodeStats], actions: list[Action]) -> None:
            assert actions
            for action in actions:
                seen.append(action.operator)
                if action.operator is Operator.DRAFT:
                    assert action.parent_id is None
                    continue
                assert action.parent_id is not None and action.parent_id in tree
                parent = tree[action.parent_id]
                if action.operator is Operator.IMPROVE:
                    assert parent.is_good
                else:
                    assert action.operator is Operator.DEBUG
                    assert parent.is_buggy and tree.is_leaf(parent.node_id)

        run_search(spec.make(), RandomProposer(), seed=3, fail_rate=0.3, on_step=check)
        assert {Operator.DRAFT, Operator.IMPROVE, Operator.DEBUG} <= set(seen)

    def test_refuses_a_tree_with_unfinished_nodes(
        self, spec: Spec, make_record: RecordFactory
    ) -> None:
        tree = SearchTree(
            [make_record(1), make_record(2, status=NodeStatus.RUNNING, fitness=None)]
        )
        with pytest.raises(ValueError, match=r"unfinished: \[2\]"):
            spec.make().next_actions(tree, {}, random.Random(0))

    def test_step_limit(self, spec: Spec, make_record: RecordFactory) -> None:
        policy = spec.make(step_limit=3)
        assert len(policy.next_actions(SearchTree(), {}, random.Random(0))) == 3
        full = SearchTree([make_record(i) for i in (1, 2, 3)])
        assert policy.is_done(full)
        assert policy.next_actions(full, {}, random.Random(0)) == []
        assert not spec.make().is_done(full)

    @pytest.mark.parametrize("max_debug_depth", [0, 1, 3])
    def test_debug_chain_respects_max_depth(
        self, spec: Spec, run_search: Simulate, max_debug_depth: int
    ) -> None:
        params: dict[str, Any] = {"max_debug_depth": max_debug_depth}
        if spec.name == "greedy":
            params["debug_prob"] = 1.0
        tree, _ = run_search(spec.make(**params), RandomProposer(), seed=1, fail_rate=1.0)
        depths = [tree.debug_depth(i) for i in tree.node_ids()]
        assert max(depths) == spec.max_chain(max_debug_depth)

    def test_on_result_is_order_independent_and_idempotent(
        self, spec: Spec, run_search: Simulate
    ) -> None:
        policy = spec.make(maximize=False)
        tree, stats = run_search(policy, RandomProposer(), seed=4, n_steps=12, fail_rate=0.2)
        step = policy.next_actions(tree, stats, random.Random(0))
        rng = random.Random(99)
        finished = []
        for k, action in enumerate(step):
            node_id = 1000 + k
            fitness = None if k == 1 else rng.random() * 1e3 / 7
            node = NodeRecord(
                node_id=node_id,
                run_id=1,
                agent_id=7,
                parent_id=action.parent_id,
                step=99,
                operator=action.operator,
                proposal=f"p{k}",
                proposal_key=f"p{k}",
                plan="",
                status=NodeStatus.COMPLETE if fitness is not None else NodeStatus.FAILED,
                val_fitness=fitness,
            )
            finished.append(node)

        def apply(order: list[NodeRecord]) -> dict[int, NodeStats]:
            t, s = tree.copy(), dict(stats)
            for node in order:
                t.add(dataclasses.replace(node, status=NodeStatus.RUNNING, val_fitness=None))
            for node in order:
                t.update(node)
                s.update(policy.on_result(t, node, s))
                s.update(policy.on_result(t, node, s))  # a replay on resume changes nothing
            return s

        forward, backward = apply(finished), apply(finished[::-1])
        shuffled = apply(random.Random(1).sample(finished, len(finished)))
        assert forward == backward == shuffled
        if spec.name == "mcts":
            assert forward != stats


class TestGreedy:
    def test_improves_the_best_after_drafts(self, make_record: RecordFactory) -> None:
        r = make_record
        tree = SearchTree(
            [
                r(1, fitness=0.3),
                r(2, fitness=0.8),
                r(3, fitness=0.5),
                r(4, fitness=None),
                r(5, fitness=0.8),
            ]
        )
        never_debug = GreedyPolicy(GreedyConfig(debug_prob=0.0))
        assert kinds(never_debug.next_actions(tree, {}, random.Random(0))) == [(IM, 2)]
        minimise = GreedyPolicy(GreedyConfig(debug_prob=0.0, maximize=False))
        assert kinds(minimise.next_actions(tree, {}, random.Random(0))) == [(IM, 1)]

    def test_missing_drafts_come_as_one_step(self, make_record: RecordFactory) -> None:
        tree = SearchTree([make_record(1), make_record(2, 1)])
        actions = GreedyPolicy(GreedyConfig(num_drafts=4)).next_actions(tree, {}, random.Random(0))
        assert kinds(actions) == [(DR, None)] * 3

    def test_debugs_buggy_leaves_up_to_and_including_max_depth(
        self, make_record: RecordFactory
    ) -> None:
        r = make_record
        records = [r(i, fitness=None) for i in range(1, 6)]
        records += [r(6, 1, operator=DB, fitness=None), r(7, 6, operator=DB, fitness=None)]
        tree = SearchTree(records)
        policy = GreedyPolicy(GreedyConfig(debug_prob=1.0, max_debug_depth=2))
        assert policy.debuggable(tree) == [2, 3, 4, 5, 7]  # 7 has depth 2 <= 2
        targets = {policy.next_actions(tree, {}, random.Random(s))[0].parent_id for s in range(40)}
        assert targets == {2, 3, 4, 5, 7}
        assert GreedyPolicy(GreedyConfig(debug_prob=1.0, max_debug_depth=1)).debuggable(tree) == [
            2,
            3,
            4,
            5,
        ]

    def test_drafts_when_nothing_is_good(self, make_record: RecordFactory) -> None:
        tree = SearchTree([make_record(i, fitness=None) for i in range(1, 6)])
        policy = GreedyPolicy(GreedyConfig(debug_prob=0.0))
        assert kinds(policy.next_actions(tree, {}, random.Random(0))) == [(DR, None)]

    def test_debug_probability_draws_from_the_rng(self, make_record: RecordFactory) -> None:
        r = make_record
        tree = SearchTree([r(1, fitness=None), *(r(i, fitness=0.1 * i) for i in range(2, 6))])
        policy = GreedyPolicy()
        ops = [policy.next_actions(tree, {}, random.Random(s))[0].operator for s in range(200)]
        assert 60 < ops.count(DB) < 140 and ops.count(DB) + ops.count(IM) == 200
        assert policy.on_result(tree, tree[1], {}) == {}


def uct_tree(make_record: RecordFactory) -> SearchTree:
    """root ─ A=1 (0.5) ─ 4 (1.0);  root ─ B=2 (0.8);  root ─ C=3 (0.2);
    root ─ 5 (buggy) ─ 6 ─ 7 ─ 8 (failed repairs: a dead branch)."""
    r = make_record
    return SearchTree(
        [
            r(1, fitness=0.5),
            r(2, fitness=0.8),
            r(3, fitness=0.2),
            r(4, 1, fitness=1.0),
            r(5, fitness=None),
            *(r(i, i - 1, operator=DB, fitness=None) for i in (6, 7, 8)),
        ]
    )


# Hand-set statistics: Q(A) = 0.6, Q(B) = 0.8, Q(C) = 0.2, N(root) = 10.
UCT_STATS = {
    ROOT_ID: NodeStats(visits=10, value_sum=6.2),
    1: NodeStats(visits=6, value_sum=3.6),
    2: NodeStats(visits=3, value_sum=2.4),
    3: NodeStats(visits=1, value_sum=0.2),
    4: NodeStats(visits=1, value_sum=1.0),
}


class TestMCTS:
    def test_uct_picks_the_hand_computed_child(self, make_record: RecordFactory) -> None:
        tree = uct_tree(make_record)
        # bounds (0.2, 1.0): Q_norm A = 0.5, B = 0.75, C = 0.0; ln 10 = 2.302585
        # c = 0.25: A 0.5 + 0.25*sqrt(2.3026/6) = 0.6549, B 0.75 + 0.25*0.8761 = 0.9690,
        #           C 0.0 + 0.25*1.5174 = 0.3794  ->  B
        policy = MCTSPolicy()
        scores = policy.uct_scores(tree, UCT_STATS, ROOT_ID)
        assert scores == pytest.approx({1: 0.654872, 2: 0.969022, 3: 0.379357}, abs=1e-6)
        assert policy.select_path(tree, UCT_STATS) == [ROOT_ID, 2]
        assert kinds(policy.next_actions(tree, UCT_STATS, random.Random(0))) == [(IM, 2)] * 5
        # c = 2: A 0.5 + 1.2390 = 1.7390, B 0.75 + 1.7522 = 2.5022, C 0 + 3.0349  ->  C
        explore = MCTSPolicy(MCTSConfig(uct_c=2.0, num_children=3))
        assert kinds(explore.next_actions(tree, UCT_STATS, random.Random(0))) == [(IM, 3)] * 3

    def test_uct_descends_to_a_leaf(self, make_record: RecordFactory) -> None:
        tree = uct_tree(make_record)
        stats = {**UCT_STATS, 1: NodeStats(visits=6, value_sum=5.4)}  # Q(A) = 0.9 now wins
        assert MCTSPolicy().select_path(tree, stats) == [ROOT_ID, 1, 4]

    def test_minimising_negates_q(self, make_record: RecordFactory) -> None:
        tree = uct_tree(make_record)
        signed = {
            k: NodeStats(visits=v.visits, value_sum=-v.value_sum) for k, v in UCT_STATS.items()
        }
        # bounds (-1.0, -0.2): Q_norm A = 0.5, B = 0.25, C = 1.0 -> C = 1.3794 wins
        policy = MCTSPolicy(MCTSConfig(maximize=False))
        assert policy.uct_scores(tree, signed, ROOT_ID)[3] == pytest.approx(1.379357, abs=1e-6)
        assert policy.select_path(tree, signed) == [ROOT_ID, 3]

    def test_equal_values_normalise_to_one_half(self, make_record: RecordFactory) -> None:
        tree = SearchTree([make_record(1, fitness=0.7), make_record(2, fitness=0.7)])
        stats = {
            ROOT_ID: NodeStats(visits=4, value_sum=2.8),
            1: NodeStats(visits=3, value_sum=2.1),
            2: NodeStats(visits=1, value_sum=0.7),
        }
        scores = MCTSPolicy().uct_scores(tree, stats, ROOT_ID)
        assert scores[1] == pytest.approx(0.5 + 0.25 * math.sqrt(math.log(4) / 3))
        assert scores[2] == pytest.approx(0.5 + 0.25 * math.sqrt(math.log(4)))

    def test_unvisited_children_first(self, make_record: RecordFactory) -> None:
        tree = uct_tree(make_record)
        tree.add(make_record(9, fitness=0.0))  # good but not yet in the statistics
        assert MCTSPolicy().uct_scores(tree, UCT_STATS, ROOT_ID)[9] == math.inf
        assert MCTSPolicy().select_path(tree, UCT_STATS) == [ROOT_ID, 9]

    def test_dead_children_are_skipped_and_redrafted(self, make_record: RecordFactory) -> None:
        r = make_record
        dead = [r(1, fitness=None), r(2, 1, operator=DB, fitness=None), r(3, fitness=None)]
        policy = MCTSPolicy(MCTSConfig(max_debug_depth=1))
        tree = SearchTree(dead)
        assert policy.open_debug_leaves(tree) == [3]
        tree.add(r(4, 3, operator=DB, fitness=None))
        assert policy.open_debug_leaves(tree) == []
        assert kinds(policy.next_actions(tree, {}, random.Random(0))) == [(DR, None)] * 5
        tree.add(r(5, fitness=0.1))
        stats = policy.rebuild_stats(tree)
        assert kinds(policy.next_actions(tree, stats, random.Random(0))) == [(IM, 5)] * 5

    def test_buggy_children_are_debugged_before_selection(
        self, make_record: RecordFactory
    ) -> None:
        r = make_record
        tree = SearchTree(
            [r(1, fitness=0.5), r(2, 1, fitness=None), r(3, 1, fitness=0.6), r(4, 1, fitness=None)]
        )
        policy = MCTSPolicy()
        stats = policy.rebuild_stats(tree)
        assert kinds(policy.next_actions(tree, stats, random.Random(0))) == [(DB, 2), (DB, 4)]

    def test_backpropagation_and_debug_fix(self, make_record: RecordFactory) -> None:
        r = make_record
        policy = MCTSPolicy(MCTSConfig(maximize=False))
        tree = SearchTree(
            [r(1, fitness=2.0), r(2, 1, fitness=None), r(3, 2, operator=DB, fitness=None)]
        )
        assert policy.on_result(tree, tree[2], {}) == {}  # buggy: no visit, no value
        fixed = r(4, 3, operator=DB, fitness=1.5)
        update = policy.on_result(tree, fixed, {})  # the tree does not hold node 4 yet
        assert update == {
            4: NodeStats(visits=1, value_sum=-1.5),
            3: NodeStats(visits=1, value_sum=-1.5),
            2: NodeStats(visits=1, value_sum=-1.5),
            1: NodeStats(visits=2, value_sum=-3.5),
            ROOT_ID: NodeStats(visits=2, value_sum=-3.5),
        }
        tree.add(fixed)
        assert policy.on_result(tree, fixed, {}) == update
        assert policy.rebuild_stats(tree) == update

    def test_rebuild_matches_accumulated_stats(self, run_search: Simulate) -> None:
        policy = MCTSPolicy()
        tree, stats = run_search(policy, EvolutionProposer(), seed=8, n_steps=25, fail_rate=0.3)
        assert policy.rebuild_stats(tree) == stats
        assert stats[ROOT_ID].visits == len(tree.good_nodes())


def test_make_policy() -> None:
    policy = make_policy("mcts", num_children=3, uct_c=1.0, maximize=False)
    assert isinstance(policy, MCTSPolicy)
    assert policy.config == MCTSConfig(num_children=3, uct_c=1.0, maximize=False)
    assert isinstance(make_policy("greedy"), GreedyPolicy)
    with pytest.raises(ValueError, match="unknown policy 'beam'; known: greedy, mcts"):
        make_policy("beam")
    with pytest.raises(ValueError, match="unknown parameter"):
        make_policy("greedy", num_children=5)


@pytest.mark.parametrize(
    ("config", "kwargs"),
    [
        (GreedyConfig, {"num_drafts": 0}),
        (GreedyConfig, {"debug_prob": 1.5}),
        (GreedyConfig, {"max_debug_depth": -1}),
        (GreedyConfig, {"step_limit": 0}),
        (MCTSConfig, {"num_children": 0}),
        (MCTSConfig, {"uct_c": -0.1}),
        (MCTSConfig, {"uct_c": math.nan}),
        (MCTSConfig, {"step_limit": 0}),
    ],
)
def test_configs_validate(config: Callable[..., object], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        config(**kwargs)
