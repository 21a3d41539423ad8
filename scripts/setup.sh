#!/usr/bin/env bash
# Creates .venv with a CPU build of PyTorch and installs aira into it (idempotent).
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${AIRA_VENV:-$root/.venv}"
stamp="$venv/.aira-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    # Pin the CPU build first: an unpinned torch would pull a multi-GB CUDA build.
    "$venv/bin/python" -m pip install -q "torch==2.13.0"
    "$venv/bin/python" -m pip install -q -e "$root[dev]"
    touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
