"""Fixtures of the archive tests: the two SQLite backends of the contract, a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from store import AgentRecord, Archive, RunRecord
from tests.store.builders import FakeClock

BACKENDS = ("memory", "wal-file")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def archive(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Archive]:
    """A fresh writable archive on each backend of the contract."""
    url = "sqlite://" if request.param == "memory" else str(tmp_path / "archive.db")
    with Archive.create(url, clock=clock) as opened:
        yield opened


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A file archive at head holding one run, one agent and no node; closed."""
    path = tmp_path / "archive.db"
    with Archive.create(path) as created:
        run = created.create_run("r", {"a": 1}, "hash", 7, 60.0, None)
        created.add_agent(run.run_id, "a0", None, "random", "greedy", {})
    return path


@pytest.fixture
def run(archive: Archive) -> RunRecord:
    return archive.create_run("run", {"task": "mad"}, "cfg-hash", 7, 3600.0, 500)


@pytest.fixture
def agent(archive: Archive, run: RunRecord) -> AgentRecord:
    return archive.add_agent(run.run_id, "agent-0", "island-a", "random", "mcts", {"c": 0.25})
