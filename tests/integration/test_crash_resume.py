"""SIGKILL the daemon at random moments, resume it each time, and compare with a clean run."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aira_async.config import load_population
from aira_async.daemon import Daemon
from populations.records import ROOT_ID
from store import Archive
from tests.conftest import write_population
from tests.integration.test_daemon import recomputed_mcts_stats, trees

pytestmark = pytest.mark.slow


def aira(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "aira_async", *args, "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def spent(db: Path) -> float:
    archive = Archive.open(str(db), read_only=True)
    try:
        return archive.get_run().spent_s
    finally:
        archive.close()


def _has_run(db: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def test_sigkill_five_times_then_resume(tmp_path: Path) -> None:
    population = write_population(
        tmp_path / "p.toml",
        max_steps=20,
        backend="process",
        workers=2,
        latency_s=0.06,
        test_eval=True,
    )
    reference = tmp_path / "reference.db"
    asyncio.run(Daemon(load_population(population), str(reference), install_signals=False).run())

    db = tmp_path / "crashed.db"
    rng = random.Random(20261127)
    proc = aira("run", "--population", str(population), "--db", str(db))
    kills, spent_seen = 0, [0.0]
    deadline = time.monotonic() + 60
    while not db.exists() or not _has_run(db):  # the first kill lands once the run exists
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    while kills < 5:
        time.sleep(rng.uniform(0.8, 2.0))
        if proc.poll() is not None:
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
        kills += 1
        now = spent(db)
        assert now >= spent_seen[-1], "the budget spent never goes back"
        spent_seen.append(now)
        proc = aira("resume", "--db", str(db))
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr.decode()
    assert kills == 5, "the run finished before it could be killed five times; make it longer"

    # The interrupted run built exactly the trees of the clean one.
    assert trees(db) == trees(reference)
    assert spent(db) >= spent_seen[-1]

    archive = Archive.open(str(db), read_only=True)
    run = archive.get_run()
    nodes = archive.nodes(run.run_id)
    assert all(n.status.finished for n in nodes)
    for agent in archive.agents(run.run_id):
        if agent.policy == "mcts":
            stored = archive.stats(agent.agent_id)
            assert stored == recomputed_mcts_stats(archive, agent.agent_id)
            assert stored[ROOT_ID].visits > 0
    archive.close()

    with sqlite3.connect(db) as con:
        # every completed node points at its evaluation; no evaluation is stored twice
        (orphans,) = con.execute(
            "SELECT COUNT(*) FROM nodes WHERE status = 'complete' AND val_eval_id IS NULL"
        ).fetchone()
        assert orphans == 0
        (rows, keys) = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT proposal_key || task || fidelity || seed || split)"
            " FROM evaluations"
        ).fetchone()
        assert rows == keys
        (resumes,) = con.execute("SELECT COUNT(*) FROM events WHERE kind = 'resume'").fetchone()
        assert 1 <= resumes <= kills
