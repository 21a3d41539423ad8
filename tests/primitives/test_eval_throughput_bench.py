"""bench/eval_throughput.py end to end at smoke size on the CPU: its plumbing, not its figures.

Every measurement runs in a child process that answers through a result file; the parent
assembles rows and the parity table. On the CPU (fp32) fused and naive training agree to
rounding, so the parity gap must be ~0 and every arrangement within its seed spread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
    assert "parity:" in proc.stdout  # the child's lines reach the parent's console
