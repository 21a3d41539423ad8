"""Migrations by reference (store/migrants.py), on both backends of the archive contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from store import AgentRecord, Archive, NewMigration, ReadOnlyError, RunRecord, StoreError
from tests.store.builders import new_node


def test_rounds_are_stored_once_with_their_event(
    archive: Archive, run: RunRecord, agent: AgentRecord
) -> None:
    north = archive.add_island(run.run_id, "north")
    south = archive.add_island(run.run_id, "south")
    assert agent.island_id is not None
    a, b = archive.add_nodes(run.run_id, agent.agent_id, 1, [new_node("mA M"), new_node("M M")])
    home = agent.island_id

    def send(node_id: int, target: int) -> NewMigration:
        return NewMigration(
            node_id=node_id, source_island_id=home, target_island_id=target, policy="ring:top2"
        )

    event = {"source": "island-a", "round": 0, "sent": {"north": [a.node_id, b.node_id]}}
    stored = archive.add_migrations(
        run.run_id, [send(a.node_id, north.island_id), send(b.node_id, north.island_id)],
        event=event,
    )  # fmt: skip
    assert [(m.node_id, m.source_island, m.target_island, m.policy) for m in stored] == [
        (a.node_id, "island-a", "north", "ring:top2"),
        (b.node_id, "island-a", "north", "ring:top2"),
    ]
    # a replayed round and a second target: only the new (node, island) pair is written
    again = archive.add_migrations(
        run.run_id, [send(a.node_id, north.island_id), send(a.node_id, south.island_id)]
    )
    assert [(m.node_id, m.target_island) for m in again] == [(a.node_id, "south")]
    assert len(archive.migrations(run.run_id)) == 3
    assert archive.received(run.run_id, north.island_id) == [a, b]  # the nodes themselves
    assert archive.received(run.run_id, south.island_id) == [a]
    assert len(archive.nodes(run.run_id)) == 2  # references, never copies
    (logged,) = archive.events(run.run_id, kind="migration")
    assert logged.payload == event
    reseeded = archive.add_migrations(
        run.run_id, [send(b.node_id, south.island_id)], event={"x": 1}, event_kind="collapse"
    )
    assert len(reseeded) == 1 and [e.kind for e in archive.events(run.run_id)][-1] == "collapse"


def test_bad_rows_write_nothing(archive: Archive, run: RunRecord, agent: AgentRecord) -> None:
    north = archive.add_island(run.run_id, "north")
    assert agent.island_id is not None
    with pytest.raises(ValueError, match="itself"):
        NewMigration(node_id=1, source_island_id=2, target_island_id=2, policy="p")
    (a,) = archive.add_nodes(run.run_id, agent.agent_id, 1, [new_node("mA M")])
    good = NewMigration(
        node_id=a.node_id, source_island_id=agent.island_id, target_island_id=north.island_id,
        policy="p",
    )  # fmt: skip
    missing = NewMigration(
        node_id=999, source_island_id=agent.island_id, target_island_id=north.island_id,
        policy="p",
    )  # fmt: skip
    with pytest.raises(StoreError):
        archive.add_migrations(run.run_id, [good, missing], event={"round": 0})
    assert archive.migrations(run.run_id) == []
    assert archive.events(run.run_id, kind="migration") == []


def test_read_only_archives_refuse(db_path: Path) -> None:
    with Archive.open(db_path, read_only=True) as archive:
        assert archive.migrations(1) == []
        with pytest.raises(ReadOnlyError):
            archive.add_migrations(1, [])


def test_the_sample_archive_of_schema_0002_reads() -> None:
    sample = Path(__file__).parents[1] / "assets/store/schema_0002_llm_calls_migrations.db"
    with Archive.open(sample, read_only=True) as archive:
        (migration,) = archive.migrations(1)
        assert (migration.source_island, migration.target_island) == ("north", "south")
        assert [n.node_id for n in archive.received(1, migration.target_island_id)] == [
            migration.node_id
        ]
