"""What the Triton kernels compile to for an H100/H200 (sm_90), read on the CPU: registers, spill
stack, shared memory and the SASS instruction mix of every kernel in every autotuned
configuration at the proxy's bf16 shapes.

The kernels' GPU checks run on CPU tensors with their launches captured instead of run
(``tests.primitives.kernel_checks.gpu_check_launches``); each launch is compiled by Triton for
sm_90 and its cubin read with the CUDA tools that ship with Triton (``cuobjdump -res-usage``,
``nvdisasm``). No GPU is needed, so a kernel change can be checked for spills and instruction
counts before spending device time on it. The counts are static (each instruction once, loops
not unrolled by the count): a guide to issue-bound kernels, not a timing.

Usage: python bench/kernel_sass.py [--match NAME] [--top 12] [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# the checkout: the kernels' GPU checks live in tests.primitives, which is not installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.primitives.kernel_checks import gpu_check_launches

_INSTRUCTION = re.compile(r"^\s+/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_]+)")
_USAGE = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+)")


def _tool(name: str) -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def cubin_stats(cubin: bytes) -> dict[str, Any]:
    """Registers, stack (spills) and static shared memory per thread or block, and the SASS
    instruction mix, of a one-kernel cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        usage = subprocess.run(
            [_tool("cuobjdump"), "-res-usage", f.name], capture_output=True, text=True, check=True
        ).stdout
        sass = subprocess.run(
            [_tool("nvdisasm"), "-c", f.name], capture_output=True, text=True, check=True
        ).stdout
    found = _USAGE.search(usage)
    if found is None:
        raise RuntimeError(f"no resource usage in cuobjdump's output: {usage[-300:]}")
    ops = collections.Counter(
        m.group(1).split(".")[0] for line in sass.splitlines() if (m := _INSTRUCTION.match(line))
    )
    registers, stack, shared = (int(v) for v in found.groups())
    return {
        "registers": registers,
        "stack_bytes": stack,
        "static_shared_bytes": shared,
        "instructions": sum(ops.values()),
        "mix": dict(ops.most_common()),
    }


def main() -> int:
    import triton

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--match", default="", help="only kernels whose label contains this")
    parser.add_argument("--top", type=int, default=12, help="instruction kinds printed per row")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    rows = []
    for launch in gpu_check_launches():
        if args.match not in launch.label:
            continue
        kernel = launch.compile_sm90()
        stats = cubin_stats(kernel.asm["cubin"])
        stats["dynamic_shared_bytes"] = kernel.metadata.shared
        rows.append({"kernel": launch.label, **stats})
        mix = " ".join(f"{k} {v}" for k, v in list(stats["mix"].items())[: args.top])
        print(
            f"{launch.label}: {stats['registers']} registers, {stats['stack_bytes']} B stack, "
            f"{stats['instructions']} instructions | {mix}",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "kernel_sass-sm90.json"
    report = {
        "target": "sm_90 (H100, H200), compiled on the CPU",
        "host": platform.processor() or platform.machine(),
        "triton": triton.__version__,
        "kernels": rows,
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
