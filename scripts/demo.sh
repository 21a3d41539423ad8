#!/usr/bin/env bash
# A short search on the default population (CPU, embedded SQLite), then the leaderboard.
# Extra arguments go to `aira run` (e.g. --budget 10m).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
mkdir -p runs
db="runs/demo-$(date +%Y%m%d-%H%M%S).db"
aira run --population populations/presets/offline.toml --db "$db" --budget 3m "$@"
echo
echo "archive: $db   (try: aira query top --db $db; aira status --db $db)"
