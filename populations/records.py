"""Frozen records that cross package boundaries.

These are the values the archive (`store`) returns, the search logic (`populations`) reasons over,
and the daemon (`aira_async`) passes between coroutines. They are immutable and carry no live
database or torch objects, so they are safe to hand to another thread or process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

ROOT_ID = 0
"""Id of an agent's virtual root. It is never stored as a node; Draft nodes have `parent_id=None`
and hang under it. Node ids in the archive start at 1."""


class Operator(StrEnum):
    """What produced a node (FACTS §2)."""

    DRAFT = "draft"
    IMPROVE = "improve"
    DEBUG = "debug"
    ANALYZE = "analyze"
    MIGRATE = "migrate"


class NodeStatus(StrEnum):
    """Lifecycle of a node. A finished node (COMPLETE or FAILED) never changes again."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (NodeStatus.COMPLETE, NodeStatus.FAILED)


class Split(StrEnum):
    """Which data an evaluation scores on: validation steers the search, test is for reporting."""

    VALIDATION = "validation"
    TEST = "test"


class EvalStatus(StrEnum):
    """Outcome of one evaluation job."""

    OK = "ok"
    DIVERGED = "diverged"
    OOM = "oom"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """One expansion a policy asks for: apply `operator` to `parent_id` (None = the root)."""

    operator: Operator
    parent_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """What an agent (LLM or classical) answered for one `Action`.

    `text` is the proposal in canonical form (an arrangement such as ``"mA M Mb M"``) when it
    parsed, else the raw reply. `error` is set when the proposal is invalid: the node is then
    stored FAILED (buggy) without spending evaluation time, and Debug may repair it.
    """

    action: Action
    text: str
    plan: str = ""
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStats:
    """MCTS statistics of one node of one agent's tree (ROOT_ID for the root)."""

    visits: int = 0
    value_sum: float = 0.0

    @property
    def value(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    """One step of one agent, as stored in the archive."""

    node_id: int
    run_id: int
    agent_id: int
    parent_id: int | None
    step: int
    operator: Operator
    proposal: str
    proposal_key: str
    plan: str
    status: NodeStatus
    val_fitness: float | None = None
    test_fitness: float | None = None
    error: str | None = None
    created_at: float = 0.0
    finished_at: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    gpu_s: float = 0.0

    @property
    def is_buggy(self) -> bool:
        """Buggy in aira-dojo's sense: it failed, or finished without a metric."""
        return self.status is NodeStatus.FAILED or (
            self.status is NodeStatus.COMPLETE and self.val_fitness is None
        )

    @property
    def is_good(self) -> bool:
        return self.status is NodeStatus.COMPLETE and self.val_fitness is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalKey:
    """Identity of an evaluation: the same key means the same result, so it is reused."""

    proposal_key: str
    task: str
    fidelity: str
    seed: int
    split: Split


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalOutcome:
    """The result of one evaluation, as the evaluator reported it (trusted code, never the agent).

    `score` is the task's metric (higher or lower is better as the task says); it is None unless
    `status` is OK. `metrics` holds the open-ended detail (per-task accuracies, loss curve
    summary).
    """

    key: EvalKey
    status: EvalStatus
    score: float | None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    device: str = "cpu"
    duration_s: float = 0.0
    peak_mem_mb: float = 0.0
    evaluator_version: str = ""
