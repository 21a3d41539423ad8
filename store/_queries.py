"""The archive's statements, as functions over the connection of an open unit of work.

Private to `store`. These run inside a unit of work the `Archive` opened and never commit; they
exist so that `archive.py` reads as the list of operations and this file as the SQL behind them:
the dialect-specific upserts, the evaluation write rule, and the analytical reads (top-k,
lineage, totals).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    Table,
    Update,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import Insert

from populations.records import EvalKey, EvalOutcome, EvalStatus, NodeRecord, NodeStats, NodeStatus
from store import _rows
from store._rows import AGENTS, EVALS, EVENTS, ISLANDS, NODE_COLUMNS, NODES, RUNS, UNFINISHED
from store.errors import NodeFinishedError, StoreError, UnknownNodeError
from store.models import PolicyStat, table_of
from store.records import EventRecord, RunTotals

STATS = table_of(PolicyStat)


class Upserts:
    """The two dialect-specific statements (INSERT ... ON CONFLICT), built once per archive.

    SQLite and PostgreSQL spell the upsert the same way through SQLAlchemy; other databases are
    not supported.
    """

    def __init__(self, dialect_name: str) -> None:
        match dialect_name:
            case "sqlite":
                dialect_insert: Callable[[Table], Any] = sqlite.insert
            case "postgresql":
                dialect_insert = postgresql.insert
            case _:
                raise StoreError(f"the archive supports SQLite and PostgreSQL, not {dialect_name}")
        stats = dialect_insert(STATS)
        self.stats: Insert = stats.on_conflict_do_update(
            index_elements=[STATS.c.agent_id, STATS.c.node_key],
            set_={"visits": stats.excluded.visits, "value_sum": stats.excluded.value_sum},
        )
        """Upsert policy statistics; run with a list of rows. Values are absolute."""
        evaluation = dialect_insert(EVALS)
        self.evaluation: Insert = evaluation.on_conflict_do_update(
            index_elements=[EVALS.c[name] for name in _KEY_COLUMNS],
            set_={name: evaluation.excluded[name] for name in _RESULT_COLUMNS},
            where=EVALS.c.status != EvalStatus.OK.value,
        ).returning(EVALS.c.id)
        """Insert an evaluation or overwrite a non-OK one; returns no row if an OK one exists."""


_KEY_COLUMNS = ("proposal_key", "task", "fidelity", "seed", "split")
_RESULT_COLUMNS = (
    "status",
    "score",
    "metrics",
    "error",
    "device",
    "duration_s",
    "peak_mem_mb",
    "evaluator_version",
    "created_at",
)
_EVAL_ID = select(EVALS.c.id).where(*_rows.KEY_MATCHES)


def store_evaluation(
    conn: Connection, upserts: Upserts, outcome: EvalOutcome, now: float
) -> tuple[int, bool]:
    """Store `outcome` under its key, at most one row per key (one statement when new).

    An OK row is final: a later outcome for the same key links to it and changes nothing. A row
    with any other status is overwritten (a retry of a timed-out or crashed evaluation).

    Returns:
        (evaluation id, whether this call wrote the result, i.e. it was run for the caller).
    """
    key = outcome.key
    values = {
        "proposal_key": key.proposal_key,
        "task": key.task,
        "fidelity": key.fidelity,
        "seed": key.seed,
        "split": key.split.value,
        "status": outcome.status.value,
        "score": outcome.score,
        "metrics": dict(outcome.metrics),
        "error": outcome.error,
        "device": outcome.device,
        "duration_s": outcome.duration_s,
        "peak_mem_mb": outcome.peak_mem_mb,
        "evaluator_version": outcome.evaluator_version,
        "created_at": now,
    }
    written = conn.execute(upserts.evaluation, values).scalar()
    if written is not None:
        return written, True
    existing: int = conn.execute(_EVAL_ID, _rows.key_params(key)).scalar_one()
    return existing, False


def island_row(conn: Connection, run_id: int, name: str) -> Row[Any]:
    """Get or create the island `name` of a run."""
    stmt = select(ISLANDS).where(ISLANDS.c.run_id == run_id, ISLANDS.c.name == name)
    row = conn.execute(stmt).first()
    if row is None:
        conn.execute(insert(ISLANDS), {"run_id": run_id, "name": name})
        row = conn.execute(stmt).one()
    return row


def agent_row(conn: Connection, run_id: int, name: str) -> Row[Any] | None:
    stmt = (
        select(*_rows.AGENT_COLUMNS)
        .select_from(_rows.AGENTS_WITH_ISLAND)
        .where(AGENTS.c.run_id == run_id, AGENTS.c.name == name)
    )
    return conn.execute(stmt).first()


def check_states(
    conn: Connection, node_ids: Sequence[int], *, allowed: Sequence[str], where: str
) -> None:
    """Raise for the first node that is missing or not in an `allowed` state."""
    stmt = select(NODES.c.id, NODES.c.status).where(NODES.c.id.in_(node_ids))
    found = {node_id: status for node_id, status in conn.execute(stmt)}
    for node_id in node_ids:
        status = found.get(node_id)
        if status is None:
            raise UnknownNodeError(f"{where}: no node {node_id}")
        if status not in allowed:
            raise NodeFinishedError(f"{where}: node {node_id} is already {status}")


def find_evaluation(conn: Connection, key: EvalKey) -> EvalOutcome | None:
    stmt = select(EVALS).where(*_rows.KEY_MATCHES, EVALS.c.status == EvalStatus.OK.value)
    row = conn.execute(stmt, _rows.key_params(key)).first()
    return None if row is None else _rows.eval_outcome(row)


def stats(conn: Connection, agent_id: int) -> dict[int, NodeStats]:
    stmt = select(STATS.c.node_key, STATS.c.visits, STATS.c.value_sum).where(
        STATS.c.agent_id == agent_id
    )
    return {
        key: NodeStats(visits=visits, value_sum=value_sum)
        for key, visits, value_sum in conn.execute(stmt)
    }


def top(conn: Connection, run_id: int, k: int, *, maximize: bool) -> list[NodeRecord]:
    if k <= 0:
        return []
    fitness = NODES.c.val_fitness.desc() if maximize else NODES.c.val_fitness.asc()
    rank = func.row_number().over(
        partition_by=NODES.c.proposal_key, order_by=(fitness, NODES.c.id)
    )
    ranked = (
        select(*NODE_COLUMNS, rank.label("rank_in_key"))
        .where(
            NODES.c.run_id == run_id,
            NODES.c.status == NodeStatus.COMPLETE.value,
            NODES.c.val_fitness.is_not(None),
        )
        .subquery()
    )
    outer_fitness = ranked.c.val_fitness.desc() if maximize else ranked.c.val_fitness.asc()
    stmt: Select[Any] = (
        select(*(ranked.c[column.name] for column in NODE_COLUMNS))
        .where(ranked.c.rank_in_key == 1)
        .order_by(outer_fitness, ranked.c.id)
        .limit(k)
    )
    return [_rows.node_record(row) for row in conn.execute(stmt)]


def lineage(conn: Connection, node_id: int) -> list[NodeRecord]:
    """Root-first ancestors of `node_id` and itself, in one recursive query ([] if unknown)."""
    chain = (
        select(NODES.c.id, NODES.c.parent_id, literal(0).label("depth"))
        .where(NODES.c.id == node_id)
        .cte("chain", recursive=True)
    )
    chain = chain.union_all(
        select(NODES.c.id, NODES.c.parent_id, chain.c.depth + 1).where(
            NODES.c.id == chain.c.parent_id
        )
    )
    stmt = (
        select(*NODE_COLUMNS).join(chain, chain.c.id == NODES.c.id).order_by(chain.c.depth.desc())
    )
    return [_rows.node_record(row) for row in conn.execute(stmt)]


def status_counts(conn: Connection, run_id: int) -> dict[str, int]:
    counts = {status.value: 0 for status in NodeStatus}
    stmt = (
        select(NODES.c.status, func.count())
        .where(NODES.c.run_id == run_id)
        .group_by(NODES.c.status)
    )
    for status, count in conn.execute(stmt):
        counts[status] = count
    return counts


def totals(conn: Connection, run_id: int) -> RunTotals:
    stmt = select(
        func.count(),
        func.coalesce(func.sum(NODES.c.tokens_in), 0),
        func.coalesce(func.sum(NODES.c.tokens_out), 0),
        func.coalesce(func.sum(NODES.c.cost_usd), 0.0),
        func.coalesce(func.sum(NODES.c.gpu_s), 0.0),
    ).where(NODES.c.run_id == run_id)
    n_nodes, tokens_in, tokens_out, cost_usd, gpu_s = conn.execute(stmt).one()
    return RunTotals(
        n_nodes=int(n_nodes),
        tokens_in=int(tokens_in),
        tokens_out=int(tokens_out),
        cost_usd=float(cost_usd),
        gpu_s=float(gpu_s),
    )


def events(
    conn: Connection, run_id: int, *, kind: str | None, limit: int | None
) -> list[EventRecord]:
    stmt = select(EVENTS).where(EVENTS.c.run_id == run_id).order_by(EVENTS.c.id.desc())
    if kind is not None:
        stmt = stmt.where(EVENTS.c.kind == kind)
    if limit is not None:
        stmt = stmt.limit(max(limit, 0))
    records = [_rows.event_record(row) for row in conn.execute(stmt)]
    records.reverse()
    return records


# ---- prebuilt statements of the archive's hot paths ------------------------------------------

FINISH = (
    update(NODES)
    # `or_` of equalities, not `in_`: a literal IN list is re-rendered on every execution.
    .where(
        NODES.c.id == bindparam("b_id"),
        or_(*(NODES.c.status == status for status in UNFINISHED)),
    )
    .values(
        status=bindparam("b_status"),
        val_fitness=bindparam("b_val"),
        error=bindparam("b_error"),
        finished_at=bindparam("b_now"),
        heartbeat_at=bindparam("b_now"),
        gpu_s=NODES.c.gpu_s + bindparam("b_gpu"),
        val_eval_id=bindparam("b_eval"),
        evaluator_version=func.coalesce(bindparam("b_version"), NODES.c.evaluator_version),
    )
    .returning(*NODE_COLUMNS)
)
TEST = (
    update(NODES)
    .where(NODES.c.id == bindparam("b_id"))
    .values(
        test_fitness=bindparam("b_test"),
        test_eval_id=bindparam("b_eval"),
        gpu_s=NODES.c.gpu_s + bindparam("b_gpu"),
    )
    .returning(*NODE_COLUMNS)
)
INSERT_NODE = insert(NODES).returning(*NODE_COLUMNS)
INSERT_NODES = insert(NODES).returning(*NODE_COLUMNS, sort_by_parameter_order=True)


def _for_ids(build: Callable[[ColumnElement[bool]], Update]) -> tuple[Update, Update]:
    """A statement over a set of node ids, twice: for one id (``b_id``) and for many
    (``b_ids``). The common single-id case skips the per-execution rendering of an IN list."""
    many = NODES.c.id.in_(bindparam("b_ids", expanding=True))
    return build(NODES.c.id == bindparam("b_id")), build(many)


def ids_params(ids: Sequence[int], now: float) -> dict[str, Any]:
    return {"b_id": ids[0], "b_now": now} if len(ids) == 1 else {"b_ids": ids, "b_now": now}


MARK_RUNNING = _for_ids(
    lambda ids: update(NODES)
    .where(ids, NODES.c.status == NodeStatus.PENDING.value)
    .values(status=NodeStatus.RUNNING.value, started_at=bindparam("b_now"),
            heartbeat_at=bindparam("b_now"))
    .returning(NODES.c.id)
)  # fmt: skip
HEARTBEAT = _for_ids(
    lambda ids: (
        update(NODES)
        .where(ids, NODES.c.status == NodeStatus.RUNNING.value)
        .values(heartbeat_at=bindparam("b_now"))
    )
)
ADD_SPENT = (
    update(RUNS)
    .where(RUNS.c.id == bindparam("b_id"))
    .values(spent_s=RUNS.c.spent_s + bindparam("b_seconds"), heartbeat_at=bindparam("b_now"))
    .returning(*RUNS.c)
)
NODE = select(*NODE_COLUMNS).where(NODES.c.id == bindparam("b_id"))


def is_unique_violation(exc: IntegrityError) -> bool:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) == "23505" or "UNIQUE constraint failed" in str(orig)
