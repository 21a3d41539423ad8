"""The evaluation queue: the one place where GPU (or CPU) training work is scheduled.

Agents `submit` requests and await the outcome; `serve` runs one loop per slot that takes the most
urgent request (validation before test, then first come first served) and runs it. With
`fuse` > 1 a slot that takes a MAD request also takes, without waiting, up to `fuse` - 1 more
queued requests it can train together with it (same task, fidelity, split and depth), in
queue order; the requests it passes over stay queued in their order. Identical requests in flight
share one evaluation. When `stop` is set, slots finish the batch they hold and take no new one;
requests still queued are answered with `None` ("abandoned"): their nodes stay unfinished in the
archive and `aira resume` queues them again.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from aira_async.errors import EvaluationError
from aira_async.eval_worker import EvalRequest, fuse_group
from aira_async.worker_pool import BaseSlot
from populations.records import EvalKey, EvalOutcome, Split

log = logging.getLogger(__name__)

PRIORITY = {Split.VALIDATION: 0, Split.TEST: 1}


@dataclass(order=True)
class _Item:
    priority: int
    seq: int
    request: EvalRequest | None = field(compare=False)  # None: stop sentinel
    future: asyncio.Future[EvalOutcome | None] | None = field(compare=False)


class EvaluationQueue:
    """A bounded priority queue of evaluation requests served by a fixed set of slots.

    Concurrency: used from one event loop; `submit` may be called from any coroutine.
    """

    def __init__(self, slots: Sequence[BaseSlot], *, timeout_s: float, fuse: int = 1) -> None:
        """`timeout_s` is per job (a batch of n gets n times it); `fuse`: the largest batch."""
        if not slots:
            raise ValueError("slots: an evaluation queue needs at least one slot")
        if fuse < 1:
            raise ValueError(f"fuse: a batch holds at least one request, got {fuse}")
        self._slots = list(slots)
        self._timeout_s = timeout_s
        self._fuse = fuse
        self._queue: asyncio.PriorityQueue[_Item] = asyncio.PriorityQueue()
        self._inflight: dict[EvalKey, asyncio.Future[EvalOutcome | None]] = {}
        self._seq = itertools.count()
        self._closed = False
        self.n_running = 0
        self.n_done = 0

    @property
    def n_queued(self) -> int:
        return self._queue.qsize()

    @property
    def n_slots(self) -> int:
        return len(self._slots)

    async def submit(self, request: EvalRequest) -> EvalOutcome | None:
        """Evaluate `request`; returns None if the queue stopped before the job started."""
        if self._closed:
            return None
        future = self._inflight.get(request.key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._inflight[request.key] = future
            future.add_done_callback(functools.partial(self._forget, request.key))
            priority = PRIORITY[request.key.split]
            self._queue.put_nowait(_Item(priority, next(self._seq), request, future))
        # Several nodes may wait on one evaluation; none of them may cancel it for the others.
        return await asyncio.shield(future)

    def _forget(self, key: EvalKey, _future: asyncio.Future[EvalOutcome | None]) -> None:
        self._inflight.pop(key, None)

    async def serve(self, stop: asyncio.Event) -> None:
        """Run every slot until `stop` is set; then abandon what is still queued."""
        try:
            async with asyncio.TaskGroup() as group:
                for slot in self._slots:
                    group.create_task(self._serve_slot(slot), name=f"slot:{slot.name}")
                group.create_task(self._wake_on_stop(stop), name="queue:stop")
        finally:
            self._closed = True
            self._abandon_queued()
            for slot in self._slots:
                await slot.close()

    async def _wake_on_stop(self, stop: asyncio.Event) -> None:
        """Once `stop` is set, put one sentinel per slot ahead of all work (priority -1)."""
        await stop.wait()
        self._closed = True
        for _ in self._slots:
            self._queue.put_nowait(_Item(-1, next(self._seq), None, None))

    async def _serve_slot(self, slot: BaseSlot) -> None:
        while True:
            item = await self._queue.get()
            if item.request is None or item.future is None:
                return  # the stop sentinel
            if item.future.done():
                continue
            batch = [(item.request, item.future), *self._take_fusable(item.request)]
            self.n_running += len(batch)
            try:
                outcomes = await slot.run_batch([r for r, _ in batch], self._timeout_s)
            finally:
                self.n_running -= len(batch)
            self.n_done += len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)

    def _take_fusable(
        self, first: EvalRequest
    ) -> list[tuple[EvalRequest, asyncio.Future[EvalOutcome | None]]]:
        """Up to `fuse` - 1 queued requests that can train with `first`, most urgent first.

        Never waits. What it passes over goes back unchanged (same priority and sequence
        number, hence the same order); a stop sentinel ends the search.
        """
        group = fuse_group(first)
        if self._fuse == 1 or group is None:
            return []
        taken: list[tuple[EvalRequest, asyncio.Future[EvalOutcome | None]]] = []
        passed: list[_Item] = []
        while len(taken) < self._fuse - 1 and not self._queue.empty():
            item = self._queue.get_nowait()
            if item.request is None or item.future is None:
                passed.append(item)
                break
            if item.future.done():
                continue  # abandoned
            if fuse_group(item.request) == group:
                taken.append((item.request, item.future))
            else:
                passed.append(item)
        for item in passed:
            self._queue.put_nowait(item)
        return taken

    def _abandon_queued(self) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item.future is not None and not item.future.done():
                item.future.set_result(None)
        for future in list(self._inflight.values()):
            if not future.done():
                future.set_result(None)

    def check_task(self, task: str, known: Sequence[str]) -> None:
        """Refuse, at wiring time, a task that no worker can run."""
        if task not in known:
            raise EvaluationError(f"unknown task {task!r} (known: {', '.join(known)})")
