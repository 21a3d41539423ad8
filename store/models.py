"""The archive's schema as typed SQLAlchemy 2 models.

These classes declare the tables, constraints and indexes; the Alembic revisions under
`store/migrations/versions/` create them, and a test checks that the two agree. The `Archive`
queries the tables with Core statements and converts rows to frozen records: ORM objects never
leave `store`.

Conventions: times are Unix seconds (float); statuses are the lower-case values of the record
enums (`NodeStatus`, `EvalStatus`, `RunStatus`, `Split`) and are guarded by CHECK constraints;
JSON columns hold only open-ended payloads (configs, metrics, event payloads); everything that is
filtered or sorted on is a real column.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from populations.records import EvalStatus, NodeStatus, Split

__all__ = [
    "Agent",
    "Base",
    "Evaluation",
    "Event",
    "Island",
    "LLMCall",
    "Migration",
    "Node",
    "PolicyStat",
    "Run",
    "table_of",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so later migrations (SQLite batch mode) can refer to them."""

RUN_STATUSES = ("running", "stopped", "finished", "crashed")


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, float: Double}


class Run(Base):
    """One search run; `config` is the resolved daemon config, saved for `resume`."""

    __tablename__ = "runs"
    __table_args__ = (CheckConstraint(_in("status", RUN_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float]
    config: Mapped[dict[str, Any]]
    config_hash: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int]
    budget_s: Mapped[float]
    spent_s: Mapped[float] = mapped_column(default=0.0)
    max_nodes: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16))
    heartbeat_at: Mapped[float | None]
    pid: Mapped[int | None]


class Island(Base):
    __tablename__ = "islands"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    name: Mapped[str] = mapped_column(String(200))


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    island_id: Mapped[int | None] = mapped_column(ForeignKey("islands.id"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(100))
    policy: Mapped[str] = mapped_column(String(50))
    config: Mapped[dict[str, Any]]


class Evaluation(Base):
    """One evaluation result, shared by every node whose proposal has the same key."""

    __tablename__ = "evaluations"
    __table_args__ = (
        UniqueConstraint("proposal_key", "task", "fidelity", "seed", "split"),
        CheckConstraint(_in("split", tuple(Split)), name="split"),
        CheckConstraint(_in("status", tuple(EvalStatus)), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_key: Mapped[str] = mapped_column(String(512))
    task: Mapped[str] = mapped_column(String(100))
    fidelity: Mapped[str] = mapped_column(String(50))
    seed: Mapped[int]
    split: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    score: Mapped[float | None]
    metrics: Mapped[dict[str, Any]]
    error: Mapped[str | None] = mapped_column(Text)
    device: Mapped[str] = mapped_column(String(100))
    duration_s: Mapped[float]
    peak_mem_mb: Mapped[float]
    evaluator_version: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[float]


class Node(Base):
    """One step of one agent. `parent_id` NULL means a child of the agent's virtual root.

    (`agent_id`, `step`, `slot`) is unique: `slot` is the node's position within its step, so an
    agent step replayed after a crash cannot be stored twice.
    """

    __tablename__ = "nodes"
    __table_args__ = (
        UniqueConstraint("agent_id", "step", "slot"),
        Index(None, "run_id", "agent_id", "step"),
        Index(None, "run_id", "status"),
        Index(None, "proposal_key"),
        CheckConstraint(_in("status", tuple(NodeStatus)), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id"))
    step: Mapped[int]
    slot: Mapped[int]
    operator: Mapped[str] = mapped_column(String(16))
    proposal: Mapped[str] = mapped_column(Text)
    proposal_key: Mapped[str] = mapped_column(String(512))
    plan: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    val_fitness: Mapped[float | None]
    test_fitness: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float]
    started_at: Mapped[float | None]
    finished_at: Mapped[float | None]
    heartbeat_at: Mapped[float | None]
    tokens_in: Mapped[int]
    tokens_out: Mapped[int]
    cost_usd: Mapped[float]
    gpu_s: Mapped[float]
    val_eval_id: Mapped[int | None] = mapped_column(ForeignKey("evaluations.id"))
    test_eval_id: Mapped[int | None] = mapped_column(ForeignKey("evaluations.id"))
    evaluator_version: Mapped[str] = mapped_column(String(100))
    config_hash: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int]


class PolicyStat(Base):
    """MCTS statistics of one node of one agent's tree; `node_key` 0 (ROOT_ID) is the root."""

    __tablename__ = "policy_stats"

    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), primary_key=True)
    node_key: Mapped[int] = mapped_column(primary_key=True)
    visits: Mapped[int]
    value_sum: Mapped[float]


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index(None, "run_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    at: Mapped[float]
    kind: Mapped[str] = mapped_column(String(100))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id"))
    payload: Mapped[dict[str, Any]]


class LLMCall(Base):
    """One paid LLM call, stored before its reply is used: a resumed run replays it.

    `request_key` identifies the request (prompt, model, settings and its place in the run: agent,
    step, slot, operator, attempt); it is unique within a run, so a replay finds the stored reply
    and a request is never paid twice. `prompt_hash` is the hash of the prompt alone, for analysis.
    """

    __tablename__ = "llm_calls"
    __table_args__ = (
        UniqueConstraint("run_id", "request_key"),
        Index(None, "run_id", "agent_id"),
        CheckConstraint(_in("status", ("ok", "error")), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id"))
    request_key: Mapped[str] = mapped_column(String(64))
    prompt_hash: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200))
    operator: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]]
    reply: Mapped[str | None] = mapped_column(Text)
    response: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    tokens_in: Mapped[int]
    tokens_out: Mapped[int]
    cost_usd: Mapped[float]
    latency_s: Mapped[float]
    retries: Mapped[int]
    created_at: Mapped[float]


class Migration(Base):
    """A node sent from one island to another: a reference to the existing node, never a copy.

    (`node_id`, `target_island_id`) is unique: an island receives a given node at most once.
    """

    __tablename__ = "migrations"
    __table_args__ = (
        UniqueConstraint("node_id", "target_island_id"),
        Index(None, "run_id", "target_island_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"))
    source_island_id: Mapped[int] = mapped_column(ForeignKey("islands.id"))
    target_island_id: Mapped[int] = mapped_column(ForeignKey("islands.id"))
    at: Mapped[float]
    policy: Mapped[str] = mapped_column(String(100))


def table_of(model: type[Base]) -> Table:
    """The Core `Table` of a model, for fast Core statements."""
    table = model.__table__
    assert isinstance(table, Table)
    return table
