"""The `aira` command as a user runs it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store import Archive
from tests.conftest import write_population


def aira(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aira_async", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_daemon(population: Path, db: Path, *, stdout: int) -> subprocess.Popen[str]:
    """`aira run --quiet` in the background (stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "aira_async", "run", "--population", str(population),
         "--db", str(db), "--quiet"],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    return lines[0]


def test_malformed_population(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nname = ")
    db = tmp_path / "run.db"
    line = one_error_line(aira("run", "--population", str(bad), "--db", str(db)))
    assert "not valid TOML" in line
    assert not db.exists()


def test_unknown_key(tmp_path: Path) -> None:
    path = write_population(tmp_path / "p.toml")
    path.write_text(path.read_text().replace("[evaluation]\n", "[evaluation]\ngpus = 8\n"))
    db = tmp_path / "run.db"
    line = one_error_line(aira("run", "--population", str(path), "--db", str(db)))
    assert "'gpus'" in line
    assert not db.exists()


def test_unknown_proposer_is_refused_before_writing(tmp_path: Path) -> None:
    path = write_population(tmp_path / "p.toml")
    path.write_text(path.read_text().replace('proposer = "random"', 'proposer = "oracle"'))
    db = tmp_path / "run.db"
    line = one_error_line(aira("run", "--population", str(path), "--db", str(db)))
    assert "oracle" in line
    assert not db.exists()


def test_resume_missing_database(tmp_path: Path) -> None:
    db = tmp_path / "nothing.db"
    line = one_error_line(aira("resume", "--db", str(db)))
    assert "nothing.db" in line
    assert not db.exists()


def test_newer_schema_is_refused_and_untouched(tmp_path: Path, population: Path) -> None:
    db = tmp_path / "run.db"
    result = aira("run", "--population", str(population), "--db", str(db), "--max-nodes", "5")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num = 'ffff_from_the_future'")
    con.close()
    before = db.read_bytes()
    for args in (("resume", "--db", str(db)), ("status", "--db", str(db))):
        line = one_error_line(aira(*args))
        assert "newer" in line
    assert db.read_bytes() == before


def test_bad_arrangement(tmp_path: Path) -> None:
    for text, fragment in (("mA X", "'X'"), ("", "empty"), ("mA M Mz", "'Mz'")):
        line = one_error_line(aira("evaluate", text, "--task", "mad"))
        assert fragment in line


def test_run_query_status(tmp_path: Path, population: Path) -> None:
    db = tmp_path / "run.db"
    result = aira("run", "--population", str(population), "--db", str(db), "--max-nodes", "30")
    assert result.returncode == 0, result.stderr
    assert "Leaderboard" in result.stdout
    top = json.loads(aira("query", "top", "--db", str(db), "--format", "json").stdout)
    assert top and top[0]["val"] >= top[-1]["val"]
    nodes = aira("query", "nodes", "--db", str(db), "--format", "csv", "-n", "100").stdout
    assert len(nodes.strip().splitlines()) == 31  # header + 30 nodes
    lineage = json.loads(
        aira(
            "query", "lineage", "--db", str(db), "--node", str(top[0]["node"]), "-f", "json"
        ).stdout
    )
    assert lineage[-1]["node"] == top[0]["node"]
    assert lineage[0]["parent"] is None
    status = aira("status", "--db", str(db), "--format", "json")
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert report["state"] == "finished" and sum(report["nodes"].values()) == 30


def test_readers_while_the_daemon_writes(tmp_path: Path) -> None:
    population = write_population(
        tmp_path / "p.toml", backend="process", workers=2, latency_s=0.1, max_nodes=200
    )
    db = tmp_path / "run.db"
    daemon = start_daemon(population, db, stdout=subprocess.DEVNULL)
    seen_running = 0
    try:
        deadline = time.monotonic() + 60
        while daemon.poll() is None and time.monotonic() < deadline:
            if not db.exists():
                time.sleep(0.05)
                continue
            status = aira("status", "--db", str(db), "--format", "json")
            if status.returncode == 2 and "no run" in status.stderr:
                continue  # the archive exists but the run row is not committed yet
            assert status.returncode == 0, status.stderr
            report = json.loads(status.stdout)
            seen_running += report["state"] == "running"
            query = aira("query", "nodes", "--db", str(db), "--format", "json")
            assert query.returncode == 0, query.stderr
    finally:
        _, stderr = daemon.communicate(timeout=120)
    assert daemon.returncode == 0, stderr
    assert "locked" not in stderr
    assert seen_running >= 1
    archive = Archive.open(str(db), read_only=True)
    assert len(archive.nodes(archive.get_run().run_id)) == 200
    archive.close()


@pytest.mark.skipif(shutil.which("aira") is None, reason="console script not installed")
def test_console_script_help() -> None:
    result = subprocess.run(["aira", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for verb in ("run", "resume", "status", "query", "evaluate", "db"):
        assert verb in result.stdout


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    population = write_population(
        tmp_path / "p.toml", backend="process", workers=2, latency_s=0.1, max_nodes=60
    )
    db = tmp_path / "run.db"
    daemon = start_daemon(population, db, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if db.exists() and "complete 0" not in aira("status", "--db", str(db)).stdout:
            break
    daemon.send_signal(signal.SIGINT)
    stdout, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, stderr
    assert "signal SIGINT" in stdout
    archive = Archive.open(str(db), read_only=True)
    run = archive.get_run()
    nodes = archive.nodes(run.run_id)
    assert run.status == "stopped"
    assert 0 < len(nodes) < 60
    assert not [n for n in nodes if n.status.value == "running"]
    archive.close()
    status = aira("status", "--db", str(db))
    assert status.returncode == 0 and "stopped" in status.stdout
    resumed = aira("resume", "--db", str(db), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    archive = Archive.open(str(db), read_only=True)
    after = archive.nodes(archive.get_run().run_id)
    assert len(after) == 60 and all(n.status.finished for n in after)
    archive.close()


def test_evaluate_smoke_end_to_end() -> None:
    result = aira("evaluate", "mA M Mb M", "--task", "mad", "--fidelity", "smoke", "-f", "json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["status"] == "ok"
    assert set(payload["per_task"]) == {
        "in_context_recall", "noisy_in_context_recall", "fuzzy_in_context_recall",
        "selective_copying", "compression", "memorization",
    }  # fmt: skip
    assert 0.0 <= payload["score"] <= 1.0
    assert payload["n_params"] > 0
    table = aira("evaluate", "mA M", "--task", "memorization", "--fidelity", "smoke")
    assert table.returncode == 0, table.stderr
    assert "memorization" in table.stdout and "mean" in table.stdout


def test_evaluate_several_fused_equals_one_at_a_time() -> None:
    """On the CPU (fp32) training arrangements together gives each one's own scores."""
    args = ("evaluate", "mA M", "Mb M", "M mA", "--task", "in_context_recall", "-f", "json")
    alone, together = aira(*args), aira(*args, "--fused")
    assert alone.returncode == 0 and together.returncode == 0, alone.stderr + together.stderr
    a, t = json.loads(alone.stdout), json.loads(together.stdout)
    assert (
        [r["arrangement"] for r in a] == [r["arrangement"] for r in t] == ["mA M", "Mb M", "M mA"]
    )
    for one, fused in zip(a, t, strict=True):
        assert fused["score"] == pytest.approx(one["score"], abs=1e-6)
        assert fused["per_task"]["in_context_recall"]["fused_k"] == 3


def test_evaluate_several_seeds_fused_equals_one_at_a_time() -> None:
    """Jobs of different seeds train together, each on its own seed's data."""
    args = ("evaluate", "mA M", "M Mb", "--seed", "1", "--seed", "2", "--task", "memorization")
    alone, together = aira(*args, "-f", "json"), aira(*args, "-f", "json", "--fused")
    assert alone.returncode == 0 and together.returncode == 0, alone.stderr + together.stderr
    a, t = json.loads(alone.stdout), json.loads(together.stdout)
    assert [(r["arrangement"], r["seed"]) for r in a] == [
        ("mA M", 1), ("mA M", 2), ("M Mb", 1), ("M Mb", 2),
    ]  # fmt: skip
    assert [(r["arrangement"], r["seed"]) for r in t] == [(r["arrangement"], r["seed"]) for r in a]
    assert len({r["score"] for r in a}) > 1  # the seeds differ
    for one, fused in zip(a, t, strict=True):
        assert fused["score"] == pytest.approx(one["score"], abs=1e-6)
        assert fused["per_task"]["memorization"]["fused_k"] == 4
    table = aira(*args)
    assert table.returncode == 0, table.stderr
    assert "over seeds" in table.stdout and "1,2" in table.stdout


def test_db_upgrade_on_the_released_sample(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[1] / "assets/store/schema_0001_initial.db"
    db = tmp_path / "sample.db"
    shutil.copy(sample, db)
    result = aira("db", "upgrade", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert "->" in result.stdout
    status = aira("status", "--db", str(db), "--format", "json")
    assert status.returncode in (0, 1), status.stderr  # readable after the upgrade
    missing = aira("db", "upgrade", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2
    assert not (tmp_path / "none.db").exists()
