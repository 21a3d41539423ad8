"""Evaluation slots: persistent worker processes (one per GPU, or N on the CPU), or inline.

A `ProcessSlot` owns one spawned worker process and a pipe to it. It sends one request at a time
and waits for the answer on the event loop (the pipe's file descriptor is watched with
`loop.add_reader`, so no thread blocks). A timeout really stops the work: the process is killed
and a fresh one started. A worker that dies mid-job is restarted and the job fails with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import time
from abc import ABC, abstractmethod
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from aira_async.eval_worker import EvalRequest, run_request, worker_main
from populations.records import EvalOutcome, EvalStatus

log = logging.getLogger(__name__)


def failed(request: EvalRequest, status: EvalStatus, error: str, duration_s: float) -> EvalOutcome:
    """The outcome of a job that the slot, not the evaluator, had to fail."""
    return EvalOutcome(
        key=request.key, status=status, score=None, error=error, duration_s=duration_s
    )


class BaseSlot(ABC):
    """One place where one evaluation runs at a time. Not shared between coroutines."""

    name: str

    @abstractmethod
    async def run(self, request: EvalRequest, timeout_s: float) -> EvalOutcome:
        """Evaluate `request`; failures (timeout, crash, OOM...) come back as outcomes."""

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
    """A persistent spawned worker process that serves one request at a time."""

    def __init__(self, index: int, *, device: str, n_threads: int) -> None:
        self.name = f"worker-{index}"
        self.device = device
        self.n_threads = n_threads
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self.restarts = 0

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=worker_main,
            args=(child, self.device, self.n_threads),
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

    async def _receive(self, conn: Connection) -> EvalOutcome:
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
        outcome = conn.recv()  # readable: the message (or EOF) is already there
        assert isinstance(outcome, EvalOutcome)
        return outcome

    async def run(self, request: EvalRequest, timeout_s: float) -> EvalOutcome:
        if self._process is None or not self._process.is_alive():
            if self._process is not None:
                self._kill()
                self.restarts += 1
            self._start()
        assert self._conn is not None
        start = time.perf_counter()
        try:
            self._conn.send(request)
            async with asyncio.timeout(timeout_s):
                return await self._receive(self._conn)
        except TimeoutError:
            self._kill()
            self.restarts += 1
            log.warning(
                "%s: %s timed out after %.1fs; worker killed", self.name, request.key, timeout_s
            )
            return failed(
                request,
                EvalStatus.TIMEOUT,
                f"timeout: no result after {timeout_s:g}s (worker killed)",
                time.perf_counter() - start,
            )
        except (EOFError, OSError) as exc:
            code = self._kill()
            self.restarts += 1
            log.warning("%s crashed (exit code %s) during %s", self.name, code, request.key)
            return failed(
                request,
                EvalStatus.ERROR,
                f"worker crashed (exit code {code}): {type(exc).__name__}",
                time.perf_counter() - start,
            )
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
    backend: str, *, workers: int, device: str, threads_per_worker: int
) -> list[BaseSlot]:
    """The slots for an `[evaluation]` config section (CUDA: one worker per GPU index)."""
    if backend == "inline":
        return [InlineSlot(i) for i in range(workers)]
    slots: list[BaseSlot] = []
    for i in range(workers):
        slot_device = f"cuda:{i}" if device == "cuda" else device
        slots.append(ProcessSlot(i, device=slot_device, n_threads=threads_per_worker))
    return slots
