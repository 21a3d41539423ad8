"""The `Archive` facade: every read and write of a run's durable state.

Contract:

* **Synchronous.** Methods block on the database. The daemon calls them from one dedicated writer
  thread (a single-thread executor), so writes are serialised and never run on the event loop.
* **One unit of work per call.** Each method is one transaction (`Archive._unit`): it commits
  on return and rolls back whole on any error. In particular `finish_node` stores a node's
  evaluation, its new state and the policy statistics it changes together or not at all.
* **Records out, never rows.** Methods return frozen records (`populations.records`,
  `store.records`); no ORM object or session escapes.
* **Immutable finished nodes.** A COMPLETE or FAILED node never changes again, except for its
  reporting-only test result (`record_test`).
* **One exception tree.** Everything raised is a `StoreError` (or a `ValueError` for a caller
  mistake); SQLAlchemy errors are translated at the unit-of-work boundary, chained.
* **Readers cannot hurt the writer.** ``Archive.open(url, read_only=True)`` reads through an
  SQLite ``mode=ro`` connection (WAL lets it read while the daemon writes) and refuses every write
  method with `ReadOnlyError` before touching the database.

Concurrency: one writing `Archive` per database (the daemon); any number of read-only ones, in
any process. An in-memory archive (``sqlite://``) is for tests and must stay on one thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from populations.records import (
    EvalKey,
    EvalOutcome,
    NodeRecord,
    NodeStats,
    NodeStatus,
    Split,
)
from store import _queries, _rows, llm_calls, migrants
from store._rows import AGENTS, ISLANDS, NODE_COLUMNS, NODES, RUNS, UNFINISHED
from store.engine import make_engine, sqlite_path, to_url
from store.errors import (
    ArchiveNotFoundError,
    DuplicateNodeError,
    ReadOnlyError,
    StoreError,
    UnknownNodeError,
    UnknownRunError,
)
from store.llm_calls import LLMCallRecord
from store.migrants import MigrationRecord, NewMigration
from store.records import (
    AgentRecord,
    EventRecord,
    IslandRecord,
    NewNode,
    RunRecord,
    RunStatus,
    RunTotals,
)
from store.schema import check_revision, create_schema, current_revision, describe, has_tables

__all__ = ["Archive"]

Clock = Callable[[], float]


class Archive:
    """The archive of one database (any number of runs). Build it with `create` or `open`."""

    def __init__(
        self, engine: Engine, *, read_only: bool = False, clock: Clock = time.time
    ) -> None:
        """Wrap an engine from `make_engine` whose schema is at head; the archive owns it."""
        self._engine = engine
        self._read_only = read_only
        self._clock = clock
        self._where = describe(engine.url)
        self._upserts = _queries.Upserts(engine.dialect.name)

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def create(cls, url: str | Path | URL, *, clock: Clock = time.time) -> Archive:
        """Open the archive at `url` for writing, creating the database (at head) if needed.

        An existing archive at head is opened as is (a new run can be added to it). An existing
        SQLite file is first probed read-only, so a refused one is left byte for byte as it was.
        The parent folder of a new SQLite file is created.

        Raises:
            SchemaVersionError: An existing archive at another revision.
            StoreError: The database holds tables that are not an aira archive.
        """
        parsed = to_url(url)
        path = sqlite_path(parsed)
        if path is not None and path.is_file():
            _probe(parsed, allow_empty=True)
        elif path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(parsed)
        try:
            stored = current_revision(engine)
            if stored is None:
                create_schema(engine)  # refuses a database that holds foreign tables
            else:
                check_revision(stored, where=describe(parsed))
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, clock=clock)

    @classmethod
    def open(
        cls, url: str | Path | URL, *, read_only: bool = False, clock: Clock = time.time
    ) -> Archive:
        """Open an existing archive; never creates one.

        The stored schema revision is checked through a read-only connection before anything
        else, so a refused database is left byte for byte as it was.

        Raises:
            ArchiveNotFoundError: The SQLite file is missing, or the database has no archive.
            SchemaVersionError: The stored revision is not head (older: run ``aira db upgrade``).
        """
        parsed = to_url(url)
        path = sqlite_path(parsed)
        if path is not None and not path.is_file():
            raise ArchiveNotFoundError(
                f"{describe(parsed)}: no such archive (use `aira run` to create one)"
            )
        if path is not None:
            _probe(parsed, allow_empty=False)
            return cls(make_engine(parsed, read_only=read_only), read_only=read_only, clock=clock)
        engine = make_engine(parsed)  # in memory or a server: the probe is the engine itself
        try:
            _check_open(engine, allow_empty=False)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, read_only=read_only, clock=clock)

    @property
    def read_only(self) -> bool:
        return self._read_only

    def close(self) -> None:
        """Close every pooled connection. The archive must not be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Archive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self._read_only else "read-write"
        return f"Archive({self._where!r}, {mode})"

    # ---- the unit-of-work boundary ----------------------------------------------------------

    @contextmanager
    def _unit(self, what: str, *, write: bool) -> Iterator[Connection]:
        """One transaction; the single place where SQLAlchemy errors become `StoreError`.

        It commits on exit and rolls back on any exception, and nothing of it outlives the
        method. It is a Core ``engine.begin()`` block rather than the ``sessions.begin()`` of
        STYLE.md: every statement of the archive is a Core statement and no ORM object is ever
        loaded, so a `Session` would only add its bookkeeping, measured at ~70 µs per unit of
        work, a third of the writer's cost per node (tests/store/bench_writer.py).
        """
        if write and self._read_only:
            raise ReadOnlyError(f"{self._where}: {what} on an archive opened read-only")
        try:
            with self._engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"{self._where}: {what} failed: {exc}") from exc

    # ---- runs -------------------------------------------------------------------------------

    def create_run(
        self,
        name: str,
        config: Mapping[str, Any],
        config_hash: str,
        seed: int,
        budget_s: float,
        max_nodes: int | None = None,
    ) -> RunRecord:
        """Start a new run (status RUNNING, nothing spent) with its resolved config."""
        now = self._clock()
        with self._unit("create_run", write=True) as conn:
            row = conn.execute(
                insert(RUNS).returning(*RUNS.c),
                {
                    "name": name,
                    "created_at": now,
                    "config": dict(config),
                    "config_hash": config_hash,
                    "seed": seed,
                    "budget_s": budget_s,
                    "spent_s": 0.0,
                    "max_nodes": max_nodes,
                    "status": RunStatus.RUNNING.value,
                    "heartbeat_at": now,
                    "pid": None,
                },
            ).one()
            return _rows.run_record(row)

    def get_run(self, run_id: int | None = None) -> RunRecord:
        """The run `run_id`, or the latest run when None. Raises `UnknownRunError`."""
        with self._unit("get_run", write=False) as conn:
            stmt = select(RUNS)
            stmt = (
                stmt.order_by(RUNS.c.id.desc()).limit(1)
                if run_id is None
                else stmt.where(RUNS.c.id == run_id)
            )
            row = conn.execute(stmt).first()
        if row is None:
            raise UnknownRunError(
                f"{self._where}: no run {'at all' if run_id is None else run_id}"
            )
        return _rows.run_record(row)

    def add_spent(self, run_id: int, seconds: float) -> RunRecord:
        """Add wall-clock budget spent and beat the run's heartbeat, in one statement."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        params = {"b_id": run_id, "b_seconds": seconds, "b_now": self._clock()}
        return self._update_run("add_spent", run_id, _queries.ADD_SPENT, params)

    def set_run_status(self, run_id: int, status: RunStatus, pid: int | None = None) -> RunRecord:
        """Set the run's status and the pid of the daemon that owns it (None: no daemon)."""
        stmt = (
            update(RUNS)
            .where(RUNS.c.id == run_id)
            .values(status=RunStatus(status).value, pid=pid, heartbeat_at=self._clock())
            .returning(*RUNS.c)
        )
        return self._update_run("set_run_status", run_id, stmt, {})

    def set_run_limits(self, run_id: int, *, budget_s: float, max_nodes: int | None) -> RunRecord:
        """Change the run's wall-clock budget and node cap (`aira resume --budget/--max-nodes`);
        what was spent stays as it is."""
        if budget_s <= 0:
            raise ValueError(f"budget_s must be positive, got {budget_s}")
        stmt = (
            update(RUNS)
            .where(RUNS.c.id == run_id)
            .values(budget_s=budget_s, max_nodes=max_nodes)
            .returning(*RUNS.c)
        )
        return self._update_run("set_run_limits", run_id, stmt, {})

    def _update_run(
        self, what: str, run_id: int, stmt: Any, params: Mapping[str, Any]
    ) -> RunRecord:
        with self._unit(what, write=True) as conn:
            row = conn.execute(stmt, params).first()
            if row is None:
                raise UnknownRunError(f"{self._where}: no run {run_id}")
            return _rows.run_record(row)

    # ---- islands and agents -----------------------------------------------------------------

    def add_island(self, run_id: int, name: str) -> IslandRecord:
        """Get or create the island `name` of a run (idempotent, for resume)."""
        with self._unit("add_island", write=True) as conn:
            return _rows.island_record(_queries.island_row(conn, run_id, name))

    def add_agent(
        self,
        run_id: int,
        name: str,
        island: str | None,
        kind: str,
        policy: str,
        config: Mapping[str, Any],
    ) -> AgentRecord:
        """Get or create the agent `name` of a run, and its island if named.

        Idempotent for resume: an existing agent is returned as stored (its stored kind, policy
        and config win; the caller compares them to refuse silent changes).
        """
        with self._unit("add_agent", write=True) as conn:
            found = _queries.agent_row(conn, run_id, name)
            if found is None:
                island_id = (
                    None if island is None else _queries.island_row(conn, run_id, name=island).id
                )
                conn.execute(
                    insert(AGENTS),
                    {
                        "run_id": run_id,
                        "island_id": island_id,
                        "name": name,
                        "kind": kind,
                        "policy": policy,
                        "config": dict(config),
                    },
                )
                found = _queries.agent_row(conn, run_id, name)
                assert found is not None
            return _rows.agent_record(found)

    def agents(self, run_id: int) -> list[AgentRecord]:
        """The run's agents, by id."""
        stmt = (
            select(*_rows.AGENT_COLUMNS)
            .select_from(_rows.AGENTS_WITH_ISLAND)
            .where(AGENTS.c.run_id == run_id)
            .order_by(AGENTS.c.id)
        )
        with self._unit("agents", write=False) as conn:
            return [_rows.agent_record(row) for row in conn.execute(stmt)]

    def islands(self, run_id: int) -> list[IslandRecord]:
        """The run's islands, by id."""
        stmt = select(ISLANDS).where(ISLANDS.c.run_id == run_id).order_by(ISLANDS.c.id)
        with self._unit("islands", write=False) as conn:
            return [_rows.island_record(row) for row in conn.execute(stmt)]

    # ---- nodes: writes ----------------------------------------------------------------------

    def add_nodes(
        self, run_id: int, agent_id: int, step: int, items: Sequence[NewNode]
    ) -> list[NodeRecord]:
        """Store all nodes of one agent step in one transaction, in order.

        A FAILED item (invalid proposal) is finished at creation. A proposal whose parent is
        `ROOT_ID` or None hangs under the agent's virtual root.

        Raises:
            DuplicateNodeError: This agent's `step` was already stored; nothing is written.
            StoreError: The run, agent or a parent does not exist.
        """
        if not items:
            return []
        now = self._clock()
        params = [_rows.new_node_params(run_id, agent_id, step, slot, item, now)
                  for slot, item in enumerate(items)]  # fmt: skip
        with self._unit("add_nodes", write=True) as conn:
            try:
                if len(params) == 1:  # the common case: no multi-row RETURNING machinery
                    rows = conn.execute(_queries.INSERT_NODE, params[0]).all()
                else:
                    rows = conn.execute(_queries.INSERT_NODES, params).all()
            except IntegrityError as exc:
                if _queries.is_unique_violation(exc):
                    raise DuplicateNodeError(
                        f"{self._where}: agent {agent_id} step {step} is already stored"
                    ) from exc
                raise
            return [_rows.node_record(row) for row in rows]

    def mark_running(self, node_ids: Iterable[int]) -> None:
        """Move PENDING nodes to RUNNING (started and heartbeat now); RUNNING ones stay as is.

        Raises:
            NodeFinishedError: One of the nodes is finished (nothing is changed).
            UnknownNodeError: One of the ids does not exist (nothing is changed).
        """
        ids = sorted(set(node_ids))
        if not ids:
            return
        stmt = _queries.MARK_RUNNING[len(ids) > 1]
        with self._unit("mark_running", write=True) as conn:
            changed = conn.execute(stmt, _queries.ids_params(ids, self._clock())).all()
            if len(changed) < len(ids):
                _queries.check_states(conn, ids, allowed=UNFINISHED, where=self._where)

    def heartbeat_nodes(self, node_ids: Iterable[int]) -> None:
        """Beat the heartbeat of RUNNING nodes; others are ignored."""
        ids = sorted(set(node_ids))
        if not ids:
            return
        stmt = _queries.HEARTBEAT[len(ids) > 1]
        with self._unit("heartbeat_nodes", write=True) as conn:
            conn.execute(stmt, _queries.ids_params(ids, self._clock()))

    def finish_node(
        self,
        node_id: int,
        *,
        status: NodeStatus,
        outcome: EvalOutcome | None,
        val_fitness: float | None,
        error: str | None,
        stats: Mapping[int, NodeStats] | None = None,
        agent_id: int | None = None,
    ) -> NodeRecord:
        """Finish a node: its validation evaluation, its state and policy statistics, atomically.

        The evaluation is stored under its key (an existing OK result is linked, never
        duplicated; a non-OK one is overwritten). The node is charged ``outcome.duration_s``
        GPU-seconds only if its result was written here, 0 when an OK result was reused.
        `stats` rows (absolute values, keyed by node id, `ROOT_ID` for the root) are upserted for
        `agent_id` (default: the node's agent).

        Raises:
            ValueError: `status` is not finished, or `outcome` is not a validation result.
            NodeFinishedError: The node was already finished; nothing at all is changed.
            UnknownNodeError: No such node.
        """
        if not NodeStatus(status).finished:
            raise ValueError(f"status must be COMPLETE or FAILED, got {status}")
        if outcome is not None and outcome.key.split is not Split.VALIDATION:
            raise ValueError(f"outcome must be a validation result, got {outcome.key.split}")
        now = self._clock()
        with self._unit("finish_node", write=True) as conn:
            eval_id, ran_here = (None, False)
            if outcome is not None:
                eval_id, ran_here = _queries.store_evaluation(conn, self._upserts, outcome, now)
            params = {
                "b_id": node_id,
                "b_status": status.value,
                "b_val": val_fitness,
                "b_error": error,
                "b_now": now,
                "b_gpu": outcome.duration_s if outcome is not None and ran_here else 0.0,
                "b_eval": eval_id,
                "b_version": (outcome.evaluator_version or None) if outcome is not None else None,
            }
            row = conn.execute(_queries.FINISH, params).first()
            if row is None:
                _queries.check_states(conn, [node_id], allowed=UNFINISHED, where=self._where)
                raise AssertionError("unreachable: the node is neither unfinished nor finished")
            record = _rows.node_record(row)
            if stats:
                owner = record.agent_id if agent_id is None else agent_id
                conn.execute(
                    self._upserts.stats,
                    [{"agent_id": owner, "node_key": key, "visits": s.visits,
                      "value_sum": s.value_sum} for key, s in stats.items()],
                )  # fmt: skip
            return record

    def record_test(self, node_id: int, outcome: EvalOutcome) -> NodeRecord:
        """Store a node's test evaluation and set its `test_fitness` (allowed once finished:
        test results are reporting data). GPU time is added to the node if it ran for it.

        Raises:
            ValueError: `outcome` is not a test result.
            UnknownNodeError: No such node.
        """
        if outcome.key.split is not Split.TEST:
            raise ValueError(f"outcome must be a test result, got {outcome.key.split}")
        now = self._clock()
        with self._unit("record_test", write=True) as conn:
            eval_id, ran_here = _queries.store_evaluation(conn, self._upserts, outcome, now)
            params = {
                "b_id": node_id,
                "b_test": outcome.score if outcome.status.value == "ok" else None,
                "b_eval": eval_id,
                "b_gpu": outcome.duration_s if ran_here else 0.0,
            }
            row = conn.execute(_queries.TEST, params).first()
            if row is None:
                raise UnknownNodeError(f"{self._where}: no node {node_id}")
            return _rows.node_record(row)

    def requeue_stale(self, run_id: int) -> int:
        """Put the run's RUNNING nodes back to PENDING (on resume, before anything else runs:
        their evaluations died with the previous daemon). Returns how many were requeued."""
        stmt = (
            update(NODES)
            .where(NODES.c.run_id == run_id, NODES.c.status == NodeStatus.RUNNING.value)
            .values(status=NodeStatus.PENDING.value, started_at=None, heartbeat_at=None)
            .returning(NODES.c.id)
        )
        with self._unit("requeue_stale", write=True) as conn:
            return len(conn.execute(stmt).all())

    def add_event(
        self,
        run_id: int,
        kind: str,
        payload: Mapping[str, Any],
        agent_id: int | None = None,
        node_id: int | None = None,
    ) -> EventRecord:
        """Append an event to the run's log."""
        values = {"run_id": run_id, "at": self._clock(), "kind": kind, "payload": dict(payload),
                  "agent_id": agent_id, "node_id": node_id}  # fmt: skip
        with self._unit("add_event", write=True) as conn:
            row = conn.execute(insert(_rows.EVENTS).returning(*_rows.EVENTS.c), values).one()
            return _rows.event_record(row)

    # ---- reads ------------------------------------------------------------------------------

    def find_evaluation(self, key: EvalKey) -> EvalOutcome | None:
        """The OK evaluation stored under `key`, if any (failed ones are not reused)."""
        with self._unit("find_evaluation", write=False) as conn:
            return _queries.find_evaluation(conn, key)

    def node(self, node_id: int) -> NodeRecord:
        """One node. Raises `UnknownNodeError`."""
        with self._unit("node", write=False) as conn:
            row = conn.execute(_queries.NODE, {"b_id": node_id}).first()
        if row is None:
            raise UnknownNodeError(f"{self._where}: no node {node_id}")
        return _rows.node_record(row)

    def nodes(
        self,
        run_id: int,
        *,
        agent_id: int | None = None,
        statuses: Iterable[NodeStatus] | None = None,
    ) -> list[NodeRecord]:
        """The run's nodes by id, optionally of one agent and/or with given statuses."""
        stmt = select(*NODE_COLUMNS).where(NODES.c.run_id == run_id).order_by(NODES.c.id)
        if agent_id is not None:
            stmt = stmt.where(NODES.c.agent_id == agent_id)
        if statuses is not None:
            stmt = stmt.where(NODES.c.status.in_([NodeStatus(s).value for s in statuses]))
        with self._unit("nodes", write=False) as conn:
            return [_rows.node_record(row) for row in conn.execute(stmt)]

    def unfinished_nodes(self, run_id: int) -> list[NodeRecord]:
        """The run's PENDING and RUNNING nodes, by id (the work to redo on resume)."""
        return self.nodes(run_id, statuses=(NodeStatus.PENDING, NodeStatus.RUNNING))

    def stats(self, agent_id: int) -> dict[int, NodeStats]:
        """The agent's persisted policy statistics, keyed by node id (`ROOT_ID` for the root)."""
        with self._unit("stats", write=False) as conn:
            return _queries.stats(conn, agent_id)

    def top(self, run_id: int, k: int = 10, *, maximize: bool = True) -> list[NodeRecord]:
        """The `k` best good nodes by validation fitness (ties: lowest id first), one per
        distinct proposal key (its best, earliest node)."""
        with self._unit("top", write=False) as conn:
            return _queries.top(conn, run_id, k, maximize=maximize)

    def lineage(self, node_id: int) -> list[NodeRecord]:
        """The node and its ancestors, root-first (the first element is a child of the root)."""
        with self._unit("lineage", write=False) as conn:
            chain = _queries.lineage(conn, node_id)
        if not chain:
            raise UnknownNodeError(f"{self._where}: no node {node_id}")
        return chain

    def status_counts(self, run_id: int) -> dict[str, int]:
        """How many of the run's nodes are in each status (every status present, maybe 0)."""
        with self._unit("status_counts", write=False) as conn:
            return _queries.status_counts(conn, run_id)

    def totals(self, run_id: int) -> RunTotals:
        """Node count, tokens, dollars and GPU-seconds of the run so far."""
        with self._unit("totals", write=False) as conn:
            return _queries.totals(conn, run_id)

    def events(
        self, run_id: int, kind: str | None = None, limit: int | None = None
    ) -> list[EventRecord]:
        """The run's events oldest-first; with `limit`, only the most recent `limit` of them."""
        with self._unit("events", write=False) as conn:
            return _queries.events(conn, run_id, kind=kind, limit=limit)

    # ---- LLM calls (store/llm_calls.py): the reply cache and the cost ledger ----------------

    def put_llm_call(self, record: LLMCallRecord) -> LLMCallRecord:
        """Store one LLM call before its reply is used; an already stored key wins."""
        with self._unit("put_llm_call", write=True) as conn:
            return llm_calls.put_call(conn, record, self._clock())

    def llm_call(self, run_id: int, request_key: str) -> LLMCallRecord | None:
        """The stored call of the run under `request_key` (what a resumed run replays)."""
        with self._unit("llm_call", write=False) as conn:
            return llm_calls.get_call(conn, run_id, request_key)

    def llm_calls(self, run_id: int, *, agent_id: int | None = None) -> list[LLMCallRecord]:
        """The run's stored LLM calls, oldest first."""
        with self._unit("llm_calls", write=False) as conn:
            return llm_calls.list_calls(conn, run_id, agent_id=agent_id)

    def llm_costs(self, run_id: int, by: str = "agent") -> list[dict[str, Any]]:
        """The run's LLM ledger grouped by agent, island or model (`llm_calls.cost_rows`)."""
        with self._unit("llm_costs", write=False) as conn:
            return llm_calls.cost_rows(conn, run_id, by)

    def llm_spent_usd(self, run_id: int) -> float:
        """Dollars the run's stored LLM calls cost."""
        with self._unit("llm_spent_usd", write=False) as conn:
            return llm_calls.spent_usd(conn, run_id)

    # ---- islands: migrations by reference (store/migrants.py) --------------------------------

    def add_migrations(
        self,
        run_id: int,
        items: Sequence[NewMigration],
        *,
        event: Mapping[str, Any] | None = None,
        event_kind: str = "migration",
    ) -> list[MigrationRecord]:
        """Record one migration round in one transaction: the (node, target island) rows not
        stored yet, and the round's event (`event_kind`) if given. Returns the new rows.

        Raises:
            StoreError: A node or island does not exist.
        """
        with self._unit("add_migrations", write=True) as conn:
            return migrants.insert_migrations(
                conn, run_id, items, self._clock(), event, event_kind
            )

    def migrations(self, run_id: int) -> list[MigrationRecord]:
        """The run's migrations, oldest first, with island names."""
        with self._unit("migrations", write=False) as conn:
            return migrants.select_migrations(conn, run_id)

    def received(self, run_id: int, island_id: int) -> list[NodeRecord]:
        """The nodes island `island_id` received (what its agents import on resume), by id."""
        with self._unit("received", write=False) as conn:
            return migrants.select_received(conn, run_id, island_id)


def _probe(url: URL, *, allow_empty: bool) -> None:
    """Check an existing SQLite file through a read-only connection that writes nothing."""
    probe = make_engine(url, read_only=True)
    try:
        _check_open(probe, allow_empty=allow_empty)
    finally:
        probe.dispose()


def _check_open(engine: Engine, *, allow_empty: bool) -> None:
    """Raise unless the database is an archive at head (or, if allowed, holds no table)."""
    where = describe(engine.url)
    stored = current_revision(engine)
    if stored is not None:
        check_revision(stored, where=where)
    elif has_tables(engine):
        raise (StoreError if allow_empty else ArchiveNotFoundError)(
            f"{where}: the database holds tables but is not an aira archive"
        )
    elif not allow_empty:
        raise ArchiveNotFoundError(f"{where}: the database holds no aira archive")
