#!/usr/bin/env bash
# GPU checks on the device machine: Mamba2 torch-vs-Triton parity and MAD at `paper` fidelity.
#
# Needs a pure-Python mamba-ssm wheel in .whl/ (built on the CPU machine with
#   MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE \
#   pip wheel --no-build-isolation --no-deps --no-binary mamba-ssm mamba-ssm==2.3.2.post1 -w .whl
# ) and $OUT (the device tool's output folder). Usage, from the repo root:
#
#   source bench/gpu_checks.sh; mad 8.4; parity; wait; merge_tasks
#
# Functions (source the file; background runs must be waited for in the same shell):
#   parity                 env + measured parity errors + pytest -m gpu   -> $OUT/parity.log
#   mad MIN [IDX...]       MAD arrangements IDX (0,1,2; default all) via bench/mad_paper.py, one
#                          background process each, sharing the GPU, MIN minutes each
#   tasks MIN LABEL TASK...  single MAD tasks of one arrangement, one background process each
#                          (same seeds as inside a full "mad" job; finishes a timed-out run)
#   merge_tasks            after `wait`: merge the per-task parts into tasks/tasks.json and
#                          fold every MAD log into mad_logs.txt
# GPU=N before a call (GPU=1 mad 8 1) pins that call's processes to card N.
# DEVICE (default cuda) and FID (default paper) allow a CPU smoke check of the plumbing.
#
# Logs and JSON go under $OUT (at most 8 files come back: keep the number of runs small).
set -u
: "${OUT:?set OUT}"
DEVICE=${DEVICE:-cuda} FID=${FID:-paper}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS=2
if [ ! -d /tmp/site/mamba_ssm ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=$PWD:/tmp/site

LABELS=("(mA M)x8" "(Mb M)x8" "(mA M Mb M)x4")

_env() {  # GPU=N before a function call pins its processes to that card
  if [ -n "${GPU:-}" ]; then echo "env CUDA_VISIBLE_DEVICES=$GPU"; fi
}

parity() {
  {
    if [ -n "${GPU:-}" ]; then export CUDA_VISIBLE_DEVICES=$GPU; fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, triton, mamba_ssm; print('torch', torch.__version__, 'triton', \
triton.__version__, 'mamba_ssm', mamba_ssm.__version__, 'card', torch.cuda.get_device_name())" \
      2>&1 | tail -3
    python3 - <<'EOF'
import sys, traceback
import torch
from primitives.kernels import mamba_ssm_available
print("stub registered, Triton SSD importable:", mamba_ssm_available(),
      "| selective_scan_cuda:", type(sys.modules.get("selective_scan_cuda")).__name__,
      getattr(sys.modules.get("selective_scan_cuda"), "__doc__", ""))
import tests.primitives.test_gpu_mamba2 as T
torch.backends.cuda.matmul.allow_tf32 = False
rows, case = [], None
def rec(a, b, tol, what):
    assert a is not None and b is not None, what
    rows.append((case, what, T._rel_err(a, b), bool(torch.isfinite(a.float()).all()), tol))
T._assert_near = rec
cases = [(f"ssd_chunked fp32 t={t}", (lambda t=t: T.test_ssd_chunked_matches_kernel(t))) for t in (256, 301)]
for dt, dn in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
    for g in (1, 2):
        cases.append((f"module {dn} ngroups={g}", (lambda dt=dt, g=g: T.test_module_torch_vs_triton(dt, g))))
for name, fn in cases:
    case = name
    try:
        fn()
    except Exception:
        traceback.print_exc()
print("PARITY (relative error max|a-b|/max|b|, kernel vs torch reference)")
for c in dict.fromkeys(r[0] for r in rows):
    sub = [r for r in rows if r[0] == c]
    fwd = [r for r in sub if not r[1].startswith("grad")]
    grd = [r for r in sub if r[1].startswith("grad")]
    worst_g = max(grd, key=lambda r: r[2])
    print(f"{c:28s} forward max {max(r[2] for r in fwd):.3e}  grads max {worst_g[2]:.3e} "
          f"({worst_g[1]})  all finite {all(r[3] for r in sub)}  current tol {sub[0][4]:.0e}")
    for r in sub:
        print(f"    {r[1]:32s} {r[2]:.3e}")
EOF
    echo "== pytest -m gpu (project config; PytestConfigWarning ignored: no pytest-asyncio here)"
    python3 -m pytest -p no:cacheprovider -W ignore::pytest.PytestConfigWarning -m gpu -v \
      tests/primitives/test_gpu_mamba2.py 2>&1 | tail -40
    rc=${PIPESTATUS[0]}
    echo "pytest rc=$rc"
    if [ "$rc" != 0 ]; then
      echo "== pytest again with warnings not errors (-W default)"
      python3 -m pytest -p no:cacheprovider -W ignore::pytest.PytestConfigWarning -W default \
        -m gpu -v tests/primitives/test_gpu_mamba2.py 2>&1 | tail -40
    fi
  } 2>&1 | tee -a "$OUT/parity.log"
}

mad() {
  local minutes=$1; shift
  local idx=("$@"); [ ${#idx[@]} -eq 0 ] && idx=(0 1 2)
  for i in "${idx[@]}"; do
    mkdir -p "$OUT/mad$i"
    # hard cap: the budget plus 40 s for start, data and the last epoch
    $(_env) timeout $(python3 -c "print(int($minutes*60+40))") python3 bench/mad_paper.py --device "$DEVICE" \
      --fidelity "$FID" --out "$OUT/mad$i" --max-minutes "$minutes" --only "${LABELS[$i]}" \
      >"$OUT/mad$i/log.txt" 2>&1 &
  done
}

tasks() {  # MIN LABEL TASK...: each task in its own process; results merged into one JSON
  local minutes=$1 label=$2; shift 2
  local slug; slug=$(echo "$label" | tr -c 'A-Za-z0-9\n' '_')
  mkdir -p "$OUT/tasks"
  for t in "$@"; do
    $(_env) timeout $(python3 -c "print(int($minutes*60+40))") python3 - "$label" "$t" "$minutes" \
      "$OUT/tasks/$slug-$t.part" "$DEVICE" "$FID" >>"$OUT/tasks/log.txt" 2>&1 <<'EOF' &
import json, sys, time, torch
from bench.mad_paper import ARRANGEMENTS
from primitives.evaluator import FIDELITIES, EvalJob, evaluate
label, task, minutes, path, device, fid = sys.argv[1:7]
job = EvalJob(layers=ARRANGEMENTS[label], task=task, fidelity=FIDELITIES[fid], seed=0,
              split="test", device=device)
minutes = float(minutes)
(r,) = evaluate([job], time_limit_s=60 * minutes)
m = r.per_task.get(task, {})
print(f"{label} {task} status={r.status} macro={m.get('macro_acc')} token={m.get('token_acc')} "
      f"epochs={m.get('n_epochs')} wall={r.wall_s:.1f}s error={r.error}", flush=True)
json.dump({"label": label, "task": task, "status": r.status, "wall_s": r.wall_s,
           "fidelity": fid,
           "card": torch.cuda.get_device_name() if device == "cuda" else "cpu", "error": r.error, "metrics": m},
          open(path, "w"))
EOF
  done
}

merge_tasks() {  # after `wait`: one tasks.json, and all MAD logs in one file (8 files come back)
  if [ -d "$OUT/tasks" ]; then
    python3 - "$OUT/tasks" <<'EOF'
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
parts = [json.loads(p.read_text()) for p in sorted(d.glob("*.part"))]
(d / "tasks.json").write_text(json.dumps(parts, indent=2) + "\n")
for p in d.glob("*.part"):
    p.unlink()
EOF
  fi
  for f in "$OUT"/mad*/log.txt "$OUT"/tasks/log.txt; do
    [ -f "$f" ] || continue
    { echo "===== $f"; cat "$f"; } >>"$OUT/mad_logs.txt" && rm "$f"
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "source this file, then call: mad MIN [IDX...]; parity; tasks MIN LABEL TASK...; wait; merge_tasks" >&2
  exit 2
fi
