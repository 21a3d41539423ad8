"""bench/eval_throughput.py end to end at smoke size on the CPU: its plumbing, not its figures.

Every measurement runs in a child process that answers through a result file; the parent
assembles rows and the parity table. On the CPU (fp32) fused and naive training agree to
rounding, so the parity gap must be ~0 and every arrangement within its seed spread.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "eval_throughput.py"


def _run_bench(out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """The bench at smoke size on the CPU, eager fused steps only, writing under ``out``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRA_")}
    env["AIRA_TRITON_CONV"] = "0"  # a kernel switch (no effect on the CPU)
    cmd = [sys.executable, str(BENCH), "--device", "cpu", "--tiny", "--modes", "eager"]
    return subprocess.run(
        [*cmd, "--out", str(out), *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=230,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One smoke-sized run: its report's path and its console output."""
    tmp_path = tmp_path_factory.mktemp("first")
    proc = _run_bench(tmp_path, "--sets", "(mA M)x2,random3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = tmp_path.glob("eval_throughput-tiny-*.json")
    return path, proc.stdout


@pytest.mark.timeout(240)
def test_tiny_cpu_run_writes_rows_and_parity(tiny_run: tuple[Path, str]) -> None:
    path, stdout = tiny_run
    report = json.loads(path.read_text())
    assert report["switches"] == {"AIRA_TRITON_CONV": "0"}  # recorded with the figures
    assert report["host_cpu"] and report["host_cpus"] >= 1  # what bounds the naive loop
    rows = report["throughput"]
    assert [r["label"] for r in rows] == ["(mA M)x2", "random3"]
    for row in rows:
        assert "error" not in row, row
        assert row["naive_steps_per_s"] > 0 and row["fused_steps_per_s"] > 0
        assert row["ratio"] == pytest.approx(
            row["fused_steps_per_s"] * row["fused_k"] / row["naive_steps_per_s"]
        )
        # each rate is the median of its windows (two at smoke size); the range brackets it
        for side in ("naive", "fused"):
            windows = row[f"{side}_steps_per_s_windows"]
            assert len(windows) == row["windows"] == 2 and min(windows) > 0
            assert row[f"{side}_steps_per_s"] == pytest.approx(statistics.median(windows))
        low, high = row["ratio_range"]
        assert low <= row["ratio"] <= high
        assert f"ratio {row['ratio']:.1f}x ({low:.1f}-{high:.1f})" in stdout
        assert row["naive_host_op_us"] > 0  # the host's speed, beside the naive rate
        assert f"host op {row['naive_host_op_us']:.1f} us" in stdout
    assert len(rows[1]["arrangements"]) > 1  # random3 fuses different arrangements
    parity = report["parity"]
    assert [p["label"] for p in parity] == ["(mA M)x2", "(Mb M)x2", "random3"]
    for entry in parity:
        assert entry["naive_status"] == entry["fused_status"] == ["ok"] * 3
        assert entry["mean_gap"] < 1e-6 and entry["within_spread"], entry
        assert entry["loss_mean_gap"] < 1e-3 * entry["naive_loss_spread_std"], entry
    assert "parity naive:" in stdout  # the children's lines reach the parent's console
    assert "parity fused:" in stdout


@pytest.mark.timeout(240)
def test_naive_parity_half_taken_from_an_earlier_report(
    tiny_run: tuple[Path, str], tmp_path: Path
) -> None:
    first = json.loads(tiny_run[0].read_text())
    proc = _run_bench(tmp_path, "--sets", "none", "--parity-naive-from", str(tiny_run[0]))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "parity naive:" not in proc.stdout and "parity fused:" in proc.stdout  # fused only
    (path,) = tmp_path.glob("eval_throughput-tiny-*.json")
    report = json.loads(path.read_text())
    assert report["throughput"] == []
    assert report["parity_naive_from"] == f"{tiny_run[0].name} ({first['card']})"
    for old, new in zip(first["parity"], report["parity"], strict=True):
        assert new["naive_scores"] == old["naive_scores"]
        assert new["naive_final_loss"] == old["naive_final_loss"]
        assert new["fused_status"] == ["ok"] * 3  # this run's own fused half
        assert new["mean_gap"] < 1e-6 and new["within_spread"], new


def _load_bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("eval_throughput", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "eval_throughput", bench)  # its dataclasses look it up
    spec.loader.exec_module(bench)
    return bench


def _report(tmp_path: Path, jobs: list[Any], **changes: object) -> Path:
    """A report with a finished naive parity half of the tiny parity jobs (2 seeds, 1 epoch)."""
    labels = ["(mA M)x2", "(Mb M)x2", "random3"]
    entries = [
        {
            "label": label,
            "layers": " ".join(jobs[2 * j].layers),
            "naive_status": ["ok", "ok"],
            "naive_scores": [0.5, 0.6],
            "naive_final_loss": [1.0, 2.0],
        }
        for j, label in enumerate(labels)
    ]
    report = {"card": "cpu", "fidelity": "tiny", "parity_task": "memorization"}
    report |= {"parity_epochs": 1, "parity": entries, **changes}
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(report))
    return path


def test_naive_parity_from_checks_the_jobs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bench = _load_bench(monkeypatch)
    setting = bench._setting(bench._parser().parse_args(["--device", "cpu", "--tiny"]))
    spec = {"task": "memorization", "epochs": 1, "seeds": 2}
    labels, jobs = bench._parity_jobs(setting, spec)
    naive = bench.naive_parity_from(_report(tmp_path, jobs), setting, spec, labels, jobs)
    assert [r["score"] for r in naive["results"]] == [0.5, 0.6] * 3
    assert naive["from"] == "earlier.json (cpu)"
    table = bench._parity(labels, jobs, naive, naive)
    assert table[0]["naive_final_loss"] == [1.0, 2.0] and table[0]["mean_gap"] == 0.0
    entries = json.loads(_report(tmp_path, jobs).read_text())["parity"]

    def error(**changes: object) -> str:
        path = _report(tmp_path, jobs, **changes)
        with pytest.raises(ValueError) as info:
            bench.naive_parity_from(path, setting, spec, labels, jobs)
        return str(info.value)

    assert "its parity_epochs is 10, this run's is 1" in error(parity_epochs=10)
    assert "its fidelity is 'paper', this run's is 'tiny'" in error(fidelity="paper")
    other = [dict(e) for e in entries]
    other[1]["layers"] = "Mb Mb M M"
    assert "no naive parity of (Mb M)x2 (Mb M Mb M)" in error(parity=other)
    unfinished = [dict(e) for e in entries]
    unfinished[0] |= {"naive_status": ["ok", None]}
    msg = error(parity=unfinished)
    assert "(mA M)x2 has 1 finished naive seeds, not 2" in msg
    ragged = [dict(e) for e in entries]
    ragged[2] |= {"naive_scores": [0.5]}
    assert "random3's naive statuses, scores and losses differ in length" in error(parity=ragged)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not a readable JSON report"):
        bench.naive_parity_from(tmp_path / "bad.json", setting, spec, labels, jobs)


def test_bad_naive_parity_report_stops_the_run_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _load_bench(monkeypatch)
    monkeypatch.setattr(bench, "Runner", None)  # nothing may run
    argv = ["--device", "cpu", "--tiny", "--out", str(tmp_path / "out")]
    code = bench.main([*argv, "--parity-naive-from", str(tmp_path / "missing.json")])
    assert code == 2
    assert "--parity-naive-from" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_parity_keeps_the_naive_half_when_the_fused_half_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = _load_bench(monkeypatch)
    setting = bench._setting(bench._parser().parse_args(["--device", "cpu", "--tiny"]))
    parity = {"task": "memorization", "epochs": 1, "seeds": 2}
    labels, jobs = bench._parity_jobs(setting, parity)
    assert labels == ["(mA M)x2", "(Mb M)x2", "random3"] and len(jobs) == 6
    naive = {
        "results": [
            {"status": "ok", "score": 0.5 + i / 10, "error": None, "final_loss": 1.0 + i}
            for i in range(6)
        ]
    }
    table = bench._parity(labels, jobs, naive, {"error": "timeout after 240s"})
    assert [e["label"] for e in table] == labels
    first = table[0]
    assert first["naive_scores"] == [0.5, 0.6] and first["naive_final_loss"] == [1.0, 2.0]
    assert first["fused_scores"] == [None, None] and first["fused_error"] == "timeout after 240s"
    assert "mean_gap" not in first and "naive_error" not in first  # no gap without both halves
    assert table[2]["naive_scores"] == [0.9, 1.0]


def test_timed_rates_times_consecutive_windows_after_the_warmup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every step index once, in order; one rate per window, from that window's steps only."""
    bench = _load_bench(monkeypatch)
    clock = [0.0]
    calls: list[int] = []

    def step(i: int) -> None:
        calls.append(i)
        clock[0] += 0.5 if i < 5 else 0.25  # the second window runs twice as fast

    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])  # the time module's
    cpu = bench.torch.device("cpu")
    rates = bench.timed_rates(step, warmup=1, steps=4, device=cpu, repeats=2)
    assert calls == list(range(9))
    assert rates == [2.0, 4.0]


@pytest.mark.parametrize(
    ("modes", "message"),
    [
        ("eager,graphd", "unknown --modes ['graphd']"),
        ("graphed", "--modes graphed needs a CUDA device, not cpu"),
    ],
)
def test_modes_it_cannot_run_are_refused_before_any_measurement(
    tmp_path: Path, modes: str, message: str
) -> None:
    proc = _run_bench(tmp_path, "--modes", modes)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written
