"""What runs inside an evaluation worker process: one request in, one `EvalOutcome` out.

A worker is started once (spawn context) and serves requests until its pipe closes, so torch and
its kernels are imported and compiled once per worker, not once per evaluation. The evaluator is
trusted, versioned code: the score that steers the search is computed here, never reported by an
agent, and test labels never leave `primitives`.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from aira_async.synthetic import SYNTHETIC_VERSION, synthetic_score
from aira_async.tasks import LM_TASK_NAMES
from populations.records import EvalKey, EvalOutcome, EvalStatus

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


def _run_mad(request: EvalRequest, device: str) -> EvalOutcome:
    import torch

    from primitives.evaluator import EvalJob, evaluate  # torch is imported here, once per worker

    if torch.get_num_threads() != _WORKER_THREADS[0]:
        torch.set_num_threads(_WORKER_THREADS[0])

    job = EvalJob(
        layers=request.layers,
        task=request.task,
        fidelity=request.key.fidelity,
        seed=request.key.seed,
        split=request.key.split.value,
        device=device,
        data=request.data,
    )
    try:
        (result,) = evaluate([job])
    except ValueError as exc:  # a malformed job (e.g. a corpus path that is gone) is an outcome
        return EvalOutcome(key=request.key, status=EvalStatus.ERROR, score=None, error=str(exc))
    metrics: dict[str, Any] = {
        "per_task": result.per_task,
        "n_params": result.n_params,
        "peak_mem_mb": result.peak_mem_mb,
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


def resolve_device(device: str) -> str:
    """'auto' → the first CUDA device when torch sees one, else 'cpu' (called inside a worker)."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def worker_main(conn: Connection, device: str, n_threads: int) -> None:
    """Entry point of a worker process: serve requests from `conn` until it closes."""
    # Ctrl-C reaches the whole process group; the daemon decides what happens to our job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = str(n_threads)
    _WORKER_THREADS[0] = n_threads
    device = resolve_device(device)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        outcome = run_request(request, device)
        try:
            conn.send(outcome)
        except (BrokenPipeError, OSError):
            return
