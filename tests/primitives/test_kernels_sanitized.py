"""The Triton kernels under compute-sanitizer's memcheck (``-m gpu``; skipped without the tool).

At stop 13 the one-chunk SSD forward read past its shared memory with 16-wide tiles (512-byte
``__shared__`` reads on an H200) while its results still matched the reference; only memcheck
sees such reads. Here every kernel's GPU check shapes run forward and backward in bf16 in one
child process under memcheck, which must report no errors.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CHECK = """
import torch
from tests.primitives import test_causal_conv, test_ssd_kernel, test_swiglu, test_tiny_attention
for module in (test_tiny_attention, test_causal_conv, test_swiglu, test_ssd_kernel):
    for shape in module.GPU_SHAPES:
        errors = module.max_errors(shape, "cuda", torch.bfloat16)
        print(module.__name__, shape, errors, flush=True)
"""


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.skipif(shutil.which("compute-sanitizer") is None, reason="needs compute-sanitizer")
@pytest.mark.timeout(900)
def test_kernels_touch_only_their_own_memory() -> None:
    cmd = ["compute-sanitizer", "--tool", "memcheck", "--error-exitcode", "3"]
    proc = subprocess.run(
        [*cmd, sys.executable, "-c", CHECK],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=880,
    )
    log = proc.stdout
    assert proc.returncode == 0, log[-4000:]
    assert "ERROR SUMMARY: 0 errors" in log, log[-4000:]
    assert log.count("test_ssd_kernel (") == 5  # every shape ran, the SSD's last
