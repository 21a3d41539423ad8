"""Evaluation slots: persistent worker processes (one per GPU, or N on the CPU), or inline.

A `ProcessSlot` owns one spawned worker process and a pipe to it. It sends one batch of requests
at a time (one request, or several MAD requests that train together) and waits for the answers on
the event loop (the pipe's file descriptor is watched with `loop.add_reader`, so no thread
blocks). A timeout really stops the work: the process is killed and a fresh one started. A worker
that dies mid-batch is restarted and every job of the batch fails with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from aira_async.eval_worker import EvalBatch, EvalRequest, run_request, worker_main
from populations.records import EvalOutcome, EvalStatus

log = logging.getLogger(__name__)


def failed(request: EvalRequest, status: EvalStatus, error: str, duration_s: float) -> EvalOutcome:
    """The outcome of a job that the slot, not the evaluator, had to fail."""
    return EvalOutcome(
        key=request.key, status=status, score=None, error=error, duration_s=duration_s
    )


class BaseSlot(ABC):
    """One place where one evaluation (or one batch) runs at a time. Not shared between coroutines.

    `timeout_s` is per job: a batch of n requests may take n times it.
    """

    name: str

    @abstractmethod
    async def run(self, request: EvalRequest, timeout_s: float) -> EvalOutcome:
        """Evaluate `request`; failures (timeout, crash, OOM...) come back as outcomes."""

    async def run_batch(
        self, requests: Sequence[EvalRequest], timeout_s: float
    ) -> list[EvalOutcome]:
        """Evaluate `requests`; one outcome per request, in order. Here: one by one via `run`."""
        return [await self.run(request, timeout_s) for request in requests]

    async def close(self) -> None:
        """Release the slot's resources; idempotent."""


class InlineSlot(BaseSlot):
    """Runs instant evaluators (the synthetic task) on the event loop: no process, no thread.

    Used by benchmarks of the scheduler itself; real training must use `ProcessSlot`.
    """

    def __init__(self, index: int) -> None:
        self.name = f"inline-{index}"

    async def run(self, request: EvalRequest, timeout_s: float) -> EvalOutcome:
        if request.task != "synthetic" or request.latency_s > 0:
            return failed(request, EvalStatus.ERROR, "inline slots run only instant tasks", 0.0)
        return run_request(request)


class ProcessSlot(BaseSlot):
    """A persistent spawned worker process that serves one batch at a time.

    `compile`: the worker torch.compiles the blocks of fused MAD batches (CUDA devices only);
    `cuda_graph`: with `compile`, it replays their training steps from CUDA graphs.
    """

    def __init__(
        self,
        index: int,
        *,
        device: str,
        n_threads: int,
        compile: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        self.name = f"worker-{index}"
        self.device = device
        self.n_threads = n_threads
        self.compile, self.cuda_graph = compile, cuda_graph
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self.restarts = 0

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=worker_main,
            args=(child, self.device, self.n_threads, self.compile, self.cuda_graph),
            name=f"aira-{self.name}",
            daemon=True,
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        log.info("%s started (pid %s, device %s)", self.name, process.pid, self.device)

    def _kill(self) -> int | None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        if process.is_alive():
            process.kill()
        process.join(timeout=5)
        return process.exitcode

    async def _receive(self, conn: Connection) -> list[EvalOutcome]:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = conn.fileno()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        outcomes = conn.recv()  # readable: the message (or EOF) is already there
        assert isinstance(outcomes, list)
        return outcomes

    async def run(self, request: EvalRequest, timeout_s: float) -> EvalOutcome:
        (outcome,) = await self.run_batch([request], timeout_s)
        return outcome

    async def run_batch(
        self, requests: Sequence[EvalRequest], timeout_s: float
    ) -> list[EvalOutcome]:
        """Evaluate `requests` in one message to the worker; one outcome per request, in order.

        `timeout_s` is per job: the batch may take `timeout_s * len(requests)` (on a GPU a fused
        batch takes about as long as one job; on the CPU about n times as long). The fused
        trainer stops itself at 90 % of that (its jobs end as TIMEOUT); the worker is killed at
        100 %, and a kill or a crash fails every request of the batch with the reason.
        """
        if not requests:
            return []
        if self._process is None or not self._process.is_alive():
            if self._process is not None:
                self._kill()
                self.restarts += 1
            # spawning pickles and starts an interpreter: tens of ms, kept off the event loop
            await asyncio.to_thread(self._start)
        assert self._conn is not None
        limit_s = timeout_s * len(requests)
        start = time.perf_counter()
        try:
            self._conn.send(EvalBatch(requests=tuple(requests), time_limit_s=0.9 * limit_s))
            async with asyncio.timeout(limit_s):
                return await self._receive(self._conn)
        except TimeoutError:
            self._kill()
            self.restarts += 1
            log.warning(
                "%s: %d job(s) (%s...) timed out after %.1fs; worker killed",
                self.name,
                len(requests),
                requests[0].key,
                limit_s,
            )
            reason = f"timeout: no result after {limit_s:g}s (worker killed)"
            status, duration_s = EvalStatus.TIMEOUT, time.perf_counter() - start
            return [failed(r, status, reason, duration_s) for r in requests]
        except (EOFError, OSError) as exc:
            code = self._kill()
            self.restarts += 1
            log.warning(
                "%s crashed (exit code %s) during %d job(s) (%s...)",
                self.name,
                code,
                len(requests),
                requests[0].key,
            )
            reason = f"worker crashed (exit code {code}): {type(exc).__name__}"
            duration_s = time.perf_counter() - start
            return [failed(r, EvalStatus.ERROR, reason, duration_s) for r in requests]
        except BaseException:
            # Cancelled mid-job (shutdown): the job's node stays unfinished and is re-queued on
            # resume; a half-done worker is not reused.
            self._kill()
            raise

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._kill)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None


def make_slots(
    backend: str,
    *,
    workers: int,
    device: str,
    threads_per_worker: int,
    compile: bool = False,
    cuda_graph: bool = False,
) -> list[BaseSlot]:
    """The slots for an `[evaluation]` config section (CUDA: one worker per GPU index)."""
    if backend == "inline":
        return [InlineSlot(i) for i in range(workers)]
    slots: list[BaseSlot] = []
    for i in range(workers):
        slot_device = f"cuda:{i}" if device == "cuda" else device
        slots.append(
            ProcessSlot(
                i,
                device=slot_device,
                n_threads=threads_per_worker,
                compile=compile,
                cuda_graph=cuda_graph,
            )
        )
    return slots
