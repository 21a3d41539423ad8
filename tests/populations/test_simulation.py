"""Policy + proposer loops against a synthetic fitness: determinism, resume, and progress."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from populations.arrangement import Arrangement
from populations.policies import make_policy
from populations.proposers import BaseProposer, make_proposer
from populations.records import Action, NodeStats, Proposal
from populations.tree import SearchTree

Simulate = Callable[..., tuple[SearchTree, dict[int, NodeStats]]]
COMBOS = [(p, q) for p in ("greedy", "mcts") for q in ("random", "evolution")]


def progress(tree: SearchTree, n_drafts: int = 5) -> float:
    """Best fitness of the whole run minus the best fitness of the first `n_drafts` nodes."""
    drafts = [r.val_fitness for r in tree.records()[:n_drafts] if r.val_fitness is not None]
    best = tree.best_node()
    assert drafts and best is not None and best.val_fitness is not None
    return best.val_fitness - max(drafts)


class CopyParent(BaseProposer):
    """A negative control: Improve and Debug return the parent unchanged."""

    name = "copy"

    def __init__(self) -> None:
        self._draft = make_proposer("random")

    def propose(self, action: Action, tree: SearchTree, rng: random.Random) -> Proposal:
        if action.parent_id is None:
            return self._draft.propose(action, tree, rng)
        return Proposal(action=action, text=tree[action.parent_id].proposal, plan="copy")


@pytest.mark.parametrize(("policy", "proposer"), COMBOS)
def test_same_seed_same_tree_and_progress(
    run_search: Simulate, policy: str, proposer: str
) -> None:
    a_tree, a_stats = run_search(make_policy(policy), make_proposer(proposer), seed=0)
    b_tree, b_stats = run_search(make_policy(policy), make_proposer(proposer), seed=0)
    assert a_tree == b_tree and a_tree.signature() == b_tree.signature()
    assert a_stats == b_stats
    c_tree, _ = run_search(make_policy(policy), make_proposer(proposer), seed=1)
    assert c_tree != a_tree
    # 16 positions: improving by >= 2 matches over the best draft needs parent-aware search.
    assert progress(a_tree) >= 2 / 16
    keys = [r.proposal_key for r in a_tree]
    assert len(set(keys)) > 0.9 * len(keys)  # proposers rarely repeat
    assert all(Arrangement.parse(k, length=16).key == k for k in keys)


@pytest.mark.parametrize("policy", ["greedy", "mcts"])
def test_copying_the_parent_makes_no_progress(run_search: Simulate, policy: str) -> None:
    """Shows `progress` can fail: without real proposals, nothing beats the drafts."""
    tree, _ = run_search(make_policy(policy), CopyParent(), seed=0)
    assert progress(tree) == 0.0
    assert len(tree) > 5


@pytest.mark.parametrize(("policy", "proposer"), COMBOS)
def test_resume_continues_exactly(run_search: Simulate, policy: str, proposer: str) -> None:
    full_tree, full_stats = run_search(make_policy(policy), make_proposer(proposer), seed=5)
    rng = random.Random(5)
    tree, stats = run_search(make_policy(policy), make_proposer(proposer), rng=rng, n_steps=17)
    # "Crash": rebuild the tree from records in any order, and the stats from the tree alone.
    records = tree.records()
    random.Random(0).shuffle(records)
    resumed = SearchTree(records)
    fresh = make_policy(policy)
    restored = fresh.rebuild_stats(resumed)
    assert restored == stats
    tree, stats = run_search(
        fresh, make_proposer(proposer), rng=rng, tree=resumed, stats=restored, n_steps=23
    )
    assert tree == full_tree
    assert stats == full_stats
