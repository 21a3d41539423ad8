"""Paid LLM calls in the archive: the reply cache that a resumed run replays, and the cost ledger.

Every LLM reply is written here (table `llm_calls`, schema 0002) *before* the agent uses it. A
call is identified by its `request_key` (a hash of the prompt, the model, its settings and the
call's place in the run), unique within a run: when a resumed daemon recomputes the same step it
asks for the same keys, finds the stored replies and pays nothing again.

The functions run inside a unit of work that `Archive` opened (`Archive.put_llm_call`,
`Archive.llm_call`, `Archive.llm_calls`, `Archive.llm_costs`); they never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row, case, func, insert, select

from store._rows import AGENTS, ISLANDS
from store.models import LLMCall, table_of

__all__ = ["COST_GROUPS", "LLMCallRecord", "cost_rows", "get_call", "list_calls", "put_call"]

LLM_CALLS = table_of(LLMCall)

COST_GROUPS = ("agent", "island", "model")
"""What `cost_rows` can group by."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMCallRecord:
    """One LLM call as stored: the request, the reply (None if the call failed) and its cost.

    `status` is ``"ok"`` or ``"error"``; a failed call is stored too, so that a resumed run
    replays the failure and builds the same buggy node instead of paying for a new attempt.
    `retries` counts the attempts after the first (429s, 5xx, timeouts, dropped connections).
    """

    run_id: int
    request_key: str
    prompt_hash: str
    provider: str
    model: str
    operator: str
    status: str
    reply: str | None = None
    error: str | None = None
    agent_id: int | None = None
    node_id: int | None = None
    request: Mapping[str, Any] = field(default_factory=dict)
    response: Mapping[str, Any] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    retries: int = 0
    created_at: float = 0.0
    call_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


_FIELDS = (
    "run_id", "agent_id", "node_id", "request_key", "prompt_hash", "provider", "model",
    "operator", "request", "reply", "response", "status", "error", "tokens_in", "tokens_out",
    "cost_usd", "latency_s", "retries", "created_at",
)  # fmt: skip


def _record(row: Row[Any]) -> LLMCallRecord:
    m = row._mapping
    return LLMCallRecord(
        call_id=int(m["id"]),
        run_id=int(m["run_id"]),
        agent_id=m["agent_id"],
        node_id=m["node_id"],
        request_key=m["request_key"],
        prompt_hash=m["prompt_hash"],
        provider=m["provider"],
        model=m["model"],
        operator=m["operator"],
        request=dict(m["request"] or {}),
        reply=m["reply"],
        response=dict(m["response"] or {}),
        status=m["status"],
        error=m["error"],
        tokens_in=int(m["tokens_in"]),
        tokens_out=int(m["tokens_out"]),
        cost_usd=float(m["cost_usd"]),
        latency_s=float(m["latency_s"]),
        retries=int(m["retries"]),
        created_at=float(m["created_at"]),
    )


def put_call(conn: Connection, record: LLMCallRecord, now: float) -> LLMCallRecord:
    """Insert `record` (its `created_at` set to `now` if 0); if its key is already stored for
    the run, the stored call wins and is returned unchanged (a call is never paid twice)."""
    if record.status not in ("ok", "error"):
        raise ValueError(f"status must be 'ok' or 'error', got {record.status!r}")
    values = {name: getattr(record, name) for name in _FIELDS}
    values["request"] = dict(record.request)
    values["response"] = dict(record.response)
    values["created_at"] = record.created_at or now
    # One writer, one transaction: looking first cannot race with another insert.
    stored = get_call(conn, record.run_id, record.request_key)
    if stored is not None:
        return stored
    row = conn.execute(insert(LLM_CALLS).returning(*LLM_CALLS.c), values).one()
    return _record(row)


def get_call(conn: Connection, run_id: int, request_key: str) -> LLMCallRecord | None:
    """The call stored under `request_key` in the run, if any."""
    stmt = select(LLM_CALLS).where(
        LLM_CALLS.c.run_id == run_id, LLM_CALLS.c.request_key == request_key
    )
    row = conn.execute(stmt).first()
    return None if row is None else _record(row)


def list_calls(
    conn: Connection, run_id: int, *, agent_id: int | None = None
) -> list[LLMCallRecord]:
    """The run's calls in the order they were stored, optionally of one agent."""
    stmt = select(LLM_CALLS).where(LLM_CALLS.c.run_id == run_id).order_by(LLM_CALLS.c.id)
    if agent_id is not None:
        stmt = stmt.where(LLM_CALLS.c.agent_id == agent_id)
    return [_record(row) for row in conn.execute(stmt)]


def cost_rows(conn: Connection, run_id: int, by: str) -> list[dict[str, Any]]:
    """The ledger grouped `by` agent, island or model: calls, failures, retries, tokens in and
    out, dollars and latency (mean and max), most expensive first."""
    if by not in COST_GROUPS:
        raise ValueError(f"by must be one of {', '.join(COST_GROUPS)}, got {by!r}")
    group: Any = {
        "agent": func.coalesce(AGENTS.c.name, "-"),
        "island": func.coalesce(ISLANDS.c.name, "-"),
        "model": LLM_CALLS.c.provider + "/" + LLM_CALLS.c.model,
    }[by]
    joined = LLM_CALLS.outerjoin(AGENTS, AGENTS.c.id == LLM_CALLS.c.agent_id).outerjoin(
        ISLANDS, ISLANDS.c.id == AGENTS.c.island_id
    )
    stmt = (
        select(
            group.label(by),
            func.count().label("calls"),
            func.sum(case((LLM_CALLS.c.status == "error", 1), else_=0)).label("failed"),
            func.sum(LLM_CALLS.c.retries).label("retries"),
            func.sum(LLM_CALLS.c.tokens_in).label("tokens_in"),
            func.sum(LLM_CALLS.c.tokens_out).label("tokens_out"),
            func.sum(LLM_CALLS.c.cost_usd).label("cost_usd"),
            func.avg(LLM_CALLS.c.latency_s).label("mean_latency_s"),
            func.max(LLM_CALLS.c.latency_s).label("max_latency_s"),
        )
        .select_from(joined)
        .where(LLM_CALLS.c.run_id == run_id)
        .group_by(group)
        .order_by(func.sum(LLM_CALLS.c.cost_usd).desc(), group)
    )
    rows = []
    for row in conn.execute(stmt):
        m = row._mapping
        rows.append(
            {
                by: m[by],
                "calls": int(m["calls"]),
                "failed": int(m["failed"] or 0),
                "retries": int(m["retries"] or 0),
                "tokens_in": int(m["tokens_in"] or 0),
                "tokens_out": int(m["tokens_out"] or 0),
                "cost_usd": float(m["cost_usd"] or 0.0),
                "mean_latency_s": float(m["mean_latency_s"] or 0.0),
                "max_latency_s": float(m["max_latency_s"] or 0.0),
            }
        )
    return rows


def spent_usd(conn: Connection, run_id: int) -> float:
    """Dollars the run's stored calls cost (what a resumed ledger starts from)."""
    stmt = select(func.coalesce(func.sum(LLM_CALLS.c.cost_usd), 0.0)).where(
        LLM_CALLS.c.run_id == run_id
    )
    return float(conn.execute(stmt).scalar_one())
