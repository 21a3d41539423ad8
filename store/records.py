"""Frozen records that only the archive defines.

The node, evaluation and statistics records are shared with the rest of aira and live in
`populations.records`; these are the archive's own: runs, islands, agents, events, the input of
`Archive.add_nodes` and run totals. Like the shared ones they are immutable values with no live
database state, safe to hand to another thread. JSON fields (`config`, `payload`) are fresh
objects decoded for each call: mutating one changes nothing in the archive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from populations.records import NodeStatus, Proposal

__all__ = [
    "AgentRecord",
    "EventRecord",
    "IslandRecord",
    "NewNode",
    "RunRecord",
    "RunStatus",
    "RunTotals",
]


class RunStatus(StrEnum):
    """Lifecycle of a run. `RUNNING` with a stale heartbeat means the daemon died (crashed)."""

    RUNNING = "running"
    STOPPED = "stopped"
    FINISHED = "finished"
    CRASHED = "crashed"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One search run: its resolved config, its budget and how much of it is spent.

    Times are Unix seconds. `spent_s` is wall-clock budget spent so far, persisted so that a
    resumed run continues where it stopped.
    """

    run_id: int
    name: str
    created_at: float
    config: Mapping[str, Any]
    config_hash: str
    seed: int
    budget_s: float
    spent_s: float
    max_nodes: int | None
    status: RunStatus
    heartbeat_at: float | None
    pid: int | None

    @property
    def budget_left_s(self) -> float:
        return max(0.0, self.budget_s - self.spent_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class IslandRecord:
    """A group of agents of one run that share a population."""

    island_id: int
    run_id: int
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRecord:
    """One agent of a run: a proposer (`kind`, e.g. ``"llm:openai"``) and a search `policy`."""

    agent_id: int
    run_id: int
    name: str
    island_id: int | None
    island: str | None
    kind: str
    policy: str
    config: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecord:
    """Something that happened in a run (migration, budget check, resume, ...)."""

    event_id: int
    run_id: int
    at: float
    kind: str
    agent_id: int | None
    node_id: int | None
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewNode:
    """One node of an agent step, as handed to `Archive.add_nodes`.

    `status` is PENDING (to be evaluated) or FAILED (an invalid proposal: stored as a buggy node,
    finished at once, no evaluation). `error` defaults to the proposal's own error.
    """

    proposal: Proposal
    proposal_key: str
    status: NodeStatus = NodeStatus.PENDING
    error: str | None = None
    evaluator_version: str = ""
    config_hash: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.status not in (NodeStatus.PENDING, NodeStatus.FAILED):
            raise ValueError(f"status: a new node is PENDING or FAILED, not {self.status}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunTotals:
    """What a run has cost so far, summed over its nodes."""

    n_nodes: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    gpu_s: float = 0.0
