"""Where a fused training step spends its GPU time: a torch.profiler table of the top kernels.

Runs K candidates of one arrangement on the `paper` in-context-recall shape (as
bench/eval_throughput.py times them), warms up, times --timed steps without the profiler, then
profiles a few steps and prints the kernels with the most CUDA time, plus the step's wall time
under the profiler.

``--layers random3`` takes bench/eval_throughput.py's random3 set instead: K different random
three-primitive arrangements of --depth layers.

Usage: python bench/profile_fused.py --layers "mA M" --k 32 [--compiled] [--rows 25] [--shapes]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

try:
    import primitives  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_throughput import random_arrangements

from primitives.evaluator import FIDELITIES, _dataset, _model_config, tasks_for
from primitives.fused import fused_models, fused_trainer
from primitives.mad import MAD_DATA_SEED


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--layers", default="mA M", help="the repeated unit, e.g. 'Mb M', or random3"
    )
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--compiled", action="store_true")
    parser.add_argument(
        "--graphed", action="store_true", help="steps replayed from CUDA graphs (compiled too)"
    )
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    parser.add_argument("--timed", type=int, default=10, help="steps timed without profiler")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--shapes", action="store_true", help="also a table by input shape")
    args = parser.parse_args()
    device = torch.device("cuda")
    fid = FIDELITIES["paper"]
    task = tasks_for(fid)["in_context_recall"]
    data = _dataset(task, MAD_DATA_SEED)
    inputs, targets = data.train_inputs.to(device), data.train_targets.to(device)
    if args.layers == "random3":
        arrangements = random_arrangements(args.k, args.depth)
        label = f"random3 x{args.depth}"
    else:
        unit = tuple(args.layers.split())
        arrangements = [(unit * math.ceil(args.depth / len(unit)))[: args.depth]] * args.k
        label = " ".join(arrangements[0])
    cfgs = [_model_config(a, fid, task) for a in arrangements]
    compiled = args.compiled or args.graphed
    model = fused_models(cfgs, list(range(args.k))).to(device).compile_blocks(compiled)
    _, train_step = fused_trainer(
        model, lr=5e-4, weight_decay=0.0, bf16=True, cuda_graph=args.graphed
    )
    batch = fid.batch_size

    def step(i: int) -> None:
        idx = torch.arange(i * batch, (i + 1) * batch, device=device) % inputs.shape[0]
        train_step(inputs[idx], targets[idx])

    for i in range(3):
        step(i)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(args.timed):
        step(i)
    torch.cuda.synchronize()
    timed = (time.perf_counter() - t0) / max(args.timed, 1)
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with profile(activities=activities, record_shapes=args.shapes) as prof:
        t0 = time.perf_counter()
        for i in range(args.steps):
            step(i)
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / args.steps
    print(
        f"{label} K={args.k} compiled={compiled} graphed={args.graphed} on "
        f"{torch.cuda.get_device_name()}: {timed * 1e3:.1f} ms/step ({args.timed} steps), "
        f"{wall * 1e3:.1f} ms/step (under the profiler), "
        f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    )
    table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=args.rows)
    print(table)
    if args.shapes:
        by_shape = prof.key_averages(group_by_input_shape=True)
        print(by_shape.table(sort_by="self_cuda_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
