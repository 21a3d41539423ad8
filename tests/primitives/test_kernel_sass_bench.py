"""bench/kernel_sass.py on the CPU: a kernel compiled for sm_90 and its cubin read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.primitives.kernel_checks import HAS_TRITON

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.timeout(300)
def test_reports_registers_spills_and_every_instruction(tmp_path: Path) -> None:
    """One configuration of the MLP block's backward (over 4096 instructions, so addresses of
    five hex digits): its registers and stack, and an instruction mix that reaches the EXIT."""
    match = "_swiglu_triton._bwd_kernel BLOCK_M: 128, BLOCK_N: 64, num_warps: 4,"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "kernel_sass.py"), "--match", match,
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "kernel_sass-sm90.json").read_text())
    (row,) = report["kernels"]
    assert row["kernel"].startswith(match)
    assert 1 <= row["registers"] <= 255 and row["stack_bytes"] >= 0
    assert row["instructions"] == sum(row["mix"].values()) > 4096
    assert row["mix"]["EXIT"] >= 1 and row["mix"]["HGMMA"] >= 1  # the end, and Hopper's MMAs
    assert match in proc.stdout
