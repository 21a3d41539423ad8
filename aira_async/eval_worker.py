"""Inside an evaluation worker process: an `EvalBatch` in, one `EvalOutcome` per request out.

A worker is started once (spawn context) and serves batches until its pipe closes, so torch and
its kernels are imported and compiled once per worker, not once per evaluation. A batch of one
request is one evaluation; compatible MAD requests of a larger batch train together
(`primitives.fused.evaluate_fused`). The evaluator is trusted, versioned code: the score that
steers the search is computed here, never reported by an agent, and test labels never leave
`primitives`.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from aira_async.synthetic import SYNTHETIC_VERSION, synthetic_score
from aira_async.tasks import LM_TASK_NAMES
from populations.records import EvalKey, EvalOutcome, EvalStatus

if TYPE_CHECKING:
    from primitives.evaluator import EvalJob, EvalResult

KNOWN_TASKS = ("mad", *LM_TASK_NAMES, "synthetic")
_WORKER_THREADS = [1]  # set by worker_main; torch is only imported by tasks that need it


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalRequest:
    """Everything a worker needs for one evaluation; picklable, no live objects."""

    key: EvalKey
    layers: tuple[str, ...]
    alphabet: tuple[str, ...]
    length: int
    task_seed: int
    latency_s: float = 0.0
    data: str | None = None  # LM tasks: where the corpus is

    @property
    def task(self) -> str:
        return self.key.task


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalBatch:
    """One message to a worker: requests to evaluate (a list of outcomes comes back, in order).

    `time_limit_s` bounds the batch; a fused group of MAD jobs stops at it (each job's outcome
    is then TIMEOUT), before the slot's hard kill.
    """

    requests: tuple[EvalRequest, ...]
    time_limit_s: float | None = None


def fuse_group(request: EvalRequest) -> tuple[object, ...] | None:
    """Requests with equal groups can train together (`primitives.fused`); None: only alone.

    Only MAD requests fuse, and only with the same fidelity, split and depth (seeds may differ:
    each candidate keeps its seed's data and batch order).
    """
    if request.task != "mad":
        return None
    key = request.key
    return (key.task, key.fidelity, key.split, len(request.layers))


def run_request(request: EvalRequest, device: str = "cpu") -> EvalOutcome:
    """Evaluate one request in this process. Failures come back as outcomes, never raised."""
    if request.task == "synthetic":
        return _run_synthetic(request)
    if request.task == "mad" or request.task in LM_TASK_NAMES:  # torch evaluators
        return _run_mad(request, device)
    return EvalOutcome(
        key=request.key,
        status=EvalStatus.ERROR,
        score=None,
        error=f"unknown task {request.task!r} (known: {', '.join(KNOWN_TASKS)})",
    )


def _run_synthetic(request: EvalRequest) -> EvalOutcome:
    start = time.perf_counter()
    if request.latency_s > 0:
        time.sleep(request.latency_s)
    score, error = synthetic_score(
        request.layers,
        alphabet=request.alphabet,
        length=request.length,
        task_seed=request.task_seed,
        eval_seed=request.key.seed,
        split=request.key.split.value,
    )
    return EvalOutcome(
        key=request.key,
        status=EvalStatus.OK if error is None else EvalStatus.DIVERGED,
        score=score,
        metrics={"synthetic": True},
        error=error,
        device="cpu",
        duration_s=time.perf_counter() - start,
        evaluator_version=SYNTHETIC_VERSION,
    )


def _torch_in_worker() -> None:
    """Import torch (once per worker) and give it the worker's thread count."""
    import torch

    if torch.get_num_threads() != _WORKER_THREADS[0]:
        torch.set_num_threads(_WORKER_THREADS[0])


def _job(request: EvalRequest, device: str) -> EvalJob:
    from primitives.evaluator import EvalJob

    return EvalJob(
        layers=request.layers,
        task=request.task,
        fidelity=request.key.fidelity,
        seed=request.key.seed,
        split=request.key.split.value,
        device=device,
        data=request.data,
    )


def _outcome(request: EvalRequest, result: EvalResult, **extra: Any) -> EvalOutcome:
    """The archive's record of an evaluator result; `extra` adds metrics (e.g. fused_k)."""
    metrics: dict[str, Any] = {
        "per_task": result.per_task,
        "n_params": result.n_params,
        "peak_mem_mb": result.peak_mem_mb,
        **extra,
    }
    return EvalOutcome(
        key=request.key,
        status=EvalStatus(result.status),
        score=result.score,
        metrics=metrics,
        error=result.error,
        device=result.device,
        duration_s=result.wall_s,
        peak_mem_mb=result.peak_mem_mb or 0.0,
        evaluator_version=result.evaluator_version,
    )


def _run_mad(request: EvalRequest, device: str) -> EvalOutcome:
    from primitives.evaluator import evaluate

    _torch_in_worker()
    try:
        (result,) = evaluate([_job(request, device)])
    except ValueError as exc:  # a malformed job (e.g. a corpus path that is gone) is an outcome
        return EvalOutcome(key=request.key, status=EvalStatus.ERROR, score=None, error=str(exc))
    return _outcome(request, result)


def run_batch(
    requests: Sequence[EvalRequest],
    device: str = "cpu",
    *,
    compile: bool = False,
    cuda_graph: bool = False,
    time_limit_s: float | None = None,
) -> list[EvalOutcome]:
    """Evaluate `requests` in this process; one outcome per request, in order, never raised.

    A batch of one and every non-MAD request run alone through `run_request`. Two or more MAD
    requests train together (`primitives.fused.evaluate_fused`, which groups them as
    `fuse_group` does and splits a group that runs out of GPU memory); each outcome's
    `metrics["fused_k"]` is the size of the group it trained in.
    `time_limit_s` bounds each fused group; `compile` torch.compiles the fused blocks on CUDA
    only, and with it `cuda_graph` replays their training steps from CUDA graphs. A malformed
    request makes `evaluate_fused` refuse the whole batch before any training; the requests
    then run one by one, so that only the malformed one fails.
    """
    mad = [i for i, r in enumerate(requests) if r.task == "mad"]
    if len(mad) < 2:
        return [run_request(r, device) for r in requests]
    from primitives.fused import evaluate_fused

    _torch_in_worker()
    fused = [requests[i] for i in mad]
    try:
        results = evaluate_fused(
            [_job(r, device) for r in fused],
            max_k=len(fused),
            time_limit_s=time_limit_s,
            compile_blocks=compile and device.startswith("cuda"),
            cuda_graph=compile and cuda_graph and device.startswith("cuda"),
        )
    except ValueError:
        return [run_request(r, device) for r in requests]
    group = Counter(fuse_group(r) for r in fused)
    outcomes = {  # the size it trained in: a group that ran out of memory was split
        i: _outcome(r, res, fused_k=_fused_k(res, default=group[fuse_group(r)]))
        for i, r, res in zip(mad, fused, results, strict=True)
    }
    return [
        outcomes[i] if i in outcomes else run_request(r, device) for i, r in enumerate(requests)
    ]


def _fused_k(result: EvalResult, *, default: int) -> int:
    """The most candidates this job trained with in one step (from its per-task metrics)."""
    sizes = [int(m["fused_k"]) for m in result.per_task.values() if "fused_k" in m]
    return max(sizes, default=default)


def resolve_device(device: str) -> str:
    """'auto' → the first CUDA device when torch sees one, else 'cpu' (called inside a worker)."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def worker_main(
    conn: Connection, device: str, n_threads: int, compile: bool = False, cuda_graph: bool = False
) -> None:
    """Entry point of a worker process: serve `EvalBatch`es from `conn` until it closes.

    `compile`: torch.compile the blocks of fused batches (CUDA devices only); `cuda_graph`: with
    `compile`, replay their training steps from CUDA graphs.
    """
    # Ctrl-C reaches the whole process group; the daemon decides what happens to our job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = str(n_threads)
    _WORKER_THREADS[0] = n_threads
    device = resolve_device(device)
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        outcomes = run_batch(
            batch.requests,
            device,
            compile=compile,
            cuda_graph=cuda_graph,
            time_limit_s=batch.time_limit_s,
        )
        try:
            conn.send(outcomes)
        except (BrokenPipeError, OSError):
            return
