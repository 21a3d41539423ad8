"""bench/eval_throughput.py end to end at smoke size on the CPU: its plumbing, not its figures.

Every measurement runs in a child process that answers through a result file; the parent
assembles rows and the parity table. On the CPU (fp32) fused and naive training agree to
rounding, so the parity gap must be ~0 and every arrangement within its seed spread.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "eval_throughput.py"


@pytest.mark.timeout(240)
def test_tiny_cpu_run_writes_rows_and_parity(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRA_")}
    env["AIRA_TRITON_CONV"] = "0"  # a kernel switch (no effect on the CPU)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "eval_throughput.py"),
            "--device",
            "cpu",
            "--tiny",
            "--modes",
            "eager",
            "--sets",
            "(mA M)x2,random3",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = tmp_path.glob("eval_throughput-tiny-*.json")
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
    assert len(rows[1]["arrangements"]) > 1  # random3 fuses different arrangements
    parity = report["parity"]
    assert [p["label"] for p in parity] == ["(mA M)x2", "(Mb M)x2", "random3"]
    for entry in parity:
        assert entry["naive_status"] == entry["fused_status"] == ["ok"] * 3
        assert entry["mean_gap"] < 1e-6 and entry["within_spread"], entry
        assert entry["loss_mean_gap"] < 1e-3 * entry["naive_loss_spread_std"], entry
    assert "parity naive:" in proc.stdout  # the children's lines reach the parent's console
    assert "parity fused:" in proc.stdout


def test_parity_keeps_the_naive_half_when_the_fused_half_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = importlib.util.spec_from_file_location("eval_throughput", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "eval_throughput", bench)  # its dataclasses look it up
    spec.loader.exec_module(bench)
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
