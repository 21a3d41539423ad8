"""Island membership by reference: the statements behind `Archive.add_migrations`,
`Archive.migrations` and `Archive.received`.

A migration row says that node `node_id` was sent from one island to another at time `at` under a
`policy` (e.g. ``"ring:top2"``, ``"reseed"``). The node itself is never copied: the receiving
island's agents import the very same record (`SearchTree.import_migrant`). (`node_id`,
`target_island_id`) is unique, so an island receives a node at most once; `insert_migrations`
skips pairs already stored, so a replayed round writes nothing twice.

Functions here run inside a unit of work the `Archive` opened and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, insert, select, tuple_
from sqlalchemy.orm import aliased

from populations.records import NodeRecord
from store import _rows
from store._rows import NODE_COLUMNS, NODES
from store.models import Island, Migration, table_of

MIGRATIONS = table_of(Migration)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMigration:
    """One node to send from `source_island_id` to `target_island_id`."""

    node_id: int
    source_island_id: int
    target_island_id: int
    policy: str

    def __post_init__(self) -> None:
        if self.source_island_id == self.target_island_id:
            raise ValueError(f"node {self.node_id}: an island cannot send to itself")


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationRecord:
    """A stored migration, with the island names."""

    migration_id: int
    run_id: int
    node_id: int
    source_island_id: int
    target_island_id: int
    source_island: str
    target_island: str
    at: float
    policy: str


def insert_migrations(
    conn: Connection,
    run_id: int,
    items: Sequence[NewMigration],
    now: float,
    event: Mapping[str, Any] | None = None,
    event_kind: str = "migration",
) -> list[MigrationRecord]:
    """Insert the rows not yet stored (by (node, target island)), and an event of kind
    `event_kind` with payload `event` if given; return the rows inserted, in `items` order."""
    pairs = {(m.node_id, m.target_island_id) for m in items}
    stored: set[tuple[int, int]] = set()
    if pairs:
        stmt = select(MIGRATIONS.c.node_id, MIGRATIONS.c.target_island_id).where(
            tuple_(MIGRATIONS.c.node_id, MIGRATIONS.c.target_island_id).in_(sorted(pairs))
        )
        stored = {(n, t) for n, t in conn.execute(stmt)}
    rows = []
    for item in items:
        pair = (item.node_id, item.target_island_id)
        if pair in stored:
            continue
        stored.add(pair)
        rows.append({"run_id": run_id, "node_id": item.node_id, "at": now, "policy": item.policy,
                     "source_island_id": item.source_island_id,
                     "target_island_id": item.target_island_id})  # fmt: skip
    ids = [conn.execute(insert(MIGRATIONS).returning(MIGRATIONS.c.id), row).scalar_one()
           for row in rows]  # fmt: skip
    if event is not None:
        conn.execute(
            insert(_rows.EVENTS),
            {"run_id": run_id, "at": now, "kind": event_kind, "payload": dict(event),
             "agent_id": None, "node_id": None},
        )  # fmt: skip
    if not ids:
        return []
    found = {r.migration_id: r for r in _select(conn, MIGRATIONS.c.id.in_(ids))}
    return [found[i] for i in ids]


def select_migrations(conn: Connection, run_id: int) -> list[MigrationRecord]:
    """The run's migrations, oldest first."""
    return _select(conn, MIGRATIONS.c.run_id == run_id)


def select_received(conn: Connection, run_id: int, island_id: int) -> list[NodeRecord]:
    """The nodes island `island_id` received, by node id (each once)."""
    stmt = (
        select(*NODE_COLUMNS)
        .join(MIGRATIONS, MIGRATIONS.c.node_id == NODES.c.id)
        .where(MIGRATIONS.c.run_id == run_id, MIGRATIONS.c.target_island_id == island_id)
        .order_by(NODES.c.id)
        .distinct()
    )
    return [_rows.node_record(row) for row in conn.execute(stmt)]


def _select(conn: Connection, where: Any) -> list[MigrationRecord]:
    source = aliased(Island, name="source")
    target = aliased(Island, name="target")
    stmt = (
        select(MIGRATIONS, source.name.label("source"), target.name.label("target"))
        .join(source, source.id == MIGRATIONS.c.source_island_id)
        .join(target, target.id == MIGRATIONS.c.target_island_id)
        .where(where)
        .order_by(MIGRATIONS.c.id)
    )
    return [_record(row) for row in conn.execute(stmt)]


def _record(row: Row[Any]) -> MigrationRecord:
    m = row._mapping
    return MigrationRecord(
        migration_id=m["id"],
        run_id=m["run_id"],
        node_id=m["node_id"],
        source_island_id=m["source_island_id"],
        target_island_id=m["target_island_id"],
        source_island=m["source"],
        target_island=m["target"],
        at=float(m["at"]),
        policy=m["policy"],
    )


__all__ = ["MigrationRecord", "NewMigration"]
