"""populations."""

from __future__ import annotations

from populations.aggregator import Aggregate, LayerDecision, Submission, Variant, aggregate
from populations.arrangement import (
    MAX_LAYERS,
    PRIMITIVES,
    THREE_PRIMITIVES,
    TWO_PRIMITIVES,
    Arrangement,
    ArrangementError,
    hamming_distance,
    random_arrangement,
)
from populations.baselines import BASELINES, baseline
from populations.policies import (
    POLICIES,
    BasePolicy,
    GreedyConfig,
    GreedyPolicy,
    MCTSConfig,
    MCTSPolicy,
    make_policy,
)
from populations.proposers import (
    MUTATIONS,
    PROPOSERS,
    BaseProposer,
    EvolutionProposer,
    RandomProposer,
    make_proposer,
)
from populations.records import (
    ROOT_ID,
    Action,
    EvalKey,
    EvalOutcome,
    EvalStatus,
    NodeRecord,
    NodeStats,
    NodeStatus,
    Operator,
    Proposal,
    Split,
)
from populations.tree import MemoryEntry, SearchTree

__all__ = [
    "BASELINES",
    "MAX_LAYERS",
    "MUTATIONS",
    "POLICIES",
    "PRIMITIVES",
    "PROPOSERS",
    "ROOT_ID",
    "THREE_PRIMITIVES",
    "TWO_PRIMITIVES",
    "Action",
    "Aggregate",
    "Arrangement",
    "ArrangementError",
    "BasePolicy",
    "BaseProposer",
    "EvalKey",
    "EvalOutcome",
    "EvalStatus",
    "EvolutionProposer",
    "GreedyConfig",
    "GreedyPolicy",
    "LayerDecision",
    "MCTSConfig",
    "MCTSPolicy",
    "MemoryEntry",
    "NodeRecord",
    "NodeStats",
    "NodeStatus",
    "Operator",
    "Proposal",
    "RandomProposer",
    "SearchTree",
    "Split",
    "Submission",
    "Variant",
    "aggregate",
    "baseline",
    "hamming_distance",
    "make_policy",
    "make_proposer",
    "random_arrangement",
]
