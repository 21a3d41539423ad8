"""Opening archives on disk: not found, read-only, schema revisions, readers beside a writer."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from populations.records import NodeStats, NodeStatus, Split
from store import (
    Archive,
    ArchiveNotFoundError,
    ReadOnlyError,
    RunStatus,
    SchemaVersionError,
    StoreError,
    head_revision,
    make_engine,
)
from tests.store.builders import new_node, ok


def _stamp(path: Path, revision: str) -> None:
    """Overwrite the stored revision, as another aira version would have left it, in rollback
    journal mode: opening it for writing would switch it to WAL, which changes the file."""
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_open_finds_what_create_wrote(db_path: Path) -> None:
    with Archive.open(db_path) as archive:
        run = archive.get_run()
        assert (run.name, run.config, run.seed) == ("r", {"a": 1}, 7)
        (agent,) = archive.agents(run.run_id)
        (node,) = archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node()])
    with Archive.open(db_path, read_only=True) as reader:
        assert reader.nodes(run.run_id) == [node]


def test_create_reopens_an_existing_archive(db_path: Path) -> None:
    with Archive.create(db_path) as archive:
        second = archive.create_run("again", {}, "h", 1, 5.0, None)
        assert [archive.get_run(i).name for i in (1, second.run_id)] == ["r", "again"]


def test_create_makes_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "new.db"
    with Archive.create(path) as archive:
        assert archive.create_run("r", {}, "h", 0, 1.0, None).run_id == 1
    with Archive.open(path, read_only=True) as reader:
        assert reader.get_run().name == "r"


def test_create_refuses_a_foreign_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    db.close()
    with pytest.raises(StoreError, match="not an aira archive"):
        Archive.create(path)


@pytest.mark.parametrize("read_only", [False, True])
def test_missing_file_is_not_created(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "sub" / "missing.db"
    with pytest.raises(ArchiveNotFoundError):
        Archive.open(path, read_only=read_only)
    assert not path.exists() and not path.parent.exists()


def test_empty_database_is_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    with pytest.raises(ArchiveNotFoundError, match="no aira archive"):
        Archive.open(path)


@pytest.mark.parametrize("read_only", [False, True])
def test_newer_schema_is_refused_untouched(db_path: Path, read_only: bool) -> None:
    _stamp(db_path, "9999_from_the_future")
    before = _snapshot(db_path)
    time.sleep(0.01)  # so that any write would show in the mtime
    with pytest.raises(SchemaVersionError, match="newer aira") as caught:
        Archive.open(db_path, read_only=read_only)
    assert caught.value.newer and caught.value.stored == "9999_from_the_future"
    assert caught.value.head == head_revision() and head_revision() in str(caught.value)
    assert _snapshot(db_path) == before
    with pytest.raises(SchemaVersionError):
        Archive.create(db_path)
    assert _snapshot(db_path) == before


def test_read_only_reads(db_path: Path) -> None:
    with Archive.open(db_path, read_only=True) as reader:
        assert reader.read_only
        run = reader.get_run()
        assert reader.status_counts(run.run_id)["pending"] == 0
        assert [a.name for a in reader.agents(run.run_id)] == ["a0"]


WRITES: dict[str, Callable[[Archive], Any]] = {
    "create_run": lambda a: a.create_run("x", {}, "h", 0, 1.0, None),
    "add_spent": lambda a: a.add_spent(1, 1.0),
    "set_run_status": lambda a: a.set_run_status(1, RunStatus.FINISHED),
    "set_run_limits": lambda a: a.set_run_limits(1, budget_s=5.0, max_nodes=None),
    "add_island": lambda a: a.add_island(1, "i"),
    "add_agent": lambda a: a.add_agent(1, "a9", None, "random", "greedy", {}),
    "add_nodes": lambda a: a.add_nodes(1, 1, 0, [new_node()]),
    "mark_running": lambda a: a.mark_running([1]),
    "heartbeat_nodes": lambda a: a.heartbeat_nodes([1]),
    "finish_node": lambda a: a.finish_node(
        1, status=NodeStatus.FAILED, outcome=None, val_fitness=None, error="x"
    ),
    "record_test": lambda a: a.record_test(1, ok(a.node(1), 1.0, split=Split.TEST)),
    "requeue_stale": lambda a: a.requeue_stale(1),
    "add_event": lambda a: a.add_event(1, "k", {}),
}


@pytest.mark.parametrize("method", sorted(WRITES))
def test_read_only_refuses_every_write(db_path: Path, method: str) -> None:
    with Archive.open(db_path) as writer:
        writer.add_nodes(1, 1, 0, [new_node()])
    before = _snapshot(db_path)
    with Archive.open(db_path, read_only=True) as reader, pytest.raises(ReadOnlyError):
        WRITES[method](reader)
    assert _snapshot(db_path)[0] == before[0]


def test_reader_is_not_blocked_by_an_open_write_transaction(db_path: Path) -> None:
    with Archive.open(db_path) as writer:
        run = writer.get_run()
        (agent,) = writer.agents(run.run_id)
        (node,) = writer.add_nodes(run.run_id, agent.agent_id, 0, [new_node()])
        # Another connection holds the write lock with uncommitted work (as the daemon's writer
        # thread does mid-transaction).
        engine = make_engine(db_path)
        try:
            with engine.connect() as other:
                other.exec_driver_sql("UPDATE nodes SET status = 'running' WHERE id = 1")
                with Archive.open(db_path, read_only=True) as reader:
                    started = time.monotonic()
                    assert reader.node(node.node_id).status is NodeStatus.PENDING
                    assert reader.unfinished_nodes(run.run_id) == [node]
                    assert time.monotonic() - started < 5.0  # not waiting on the busy timeout
                other.rollback()
        finally:
            engine.dispose()
        done = writer.finish_node(
            node.node_id,
            status=NodeStatus.COMPLETE,
            outcome=ok(node, 0.5),
            val_fitness=0.5,
            error=None,
            stats={0: NodeStats(visits=1, value_sum=0.5)},
        )
    with Archive.open(db_path, read_only=True) as reader:
        assert reader.node(node.node_id) == done
