"""The evaluation queue and its worker processes: priorities, sharing, timeouts, crashes."""

from __future__ import annotations

import asyncio
import os
import signal

from aira_async.eval_worker import EvalRequest
from aira_async.gpu_queue import EvaluationQueue
from aira_async.worker_pool import BaseSlot, InlineSlot, ProcessSlot
from populations.records import EvalKey, EvalOutcome, EvalStatus, Split


def request(text: str, *, split: Split = Split.VALIDATION, latency_s: float = 0.0) -> EvalRequest:
    key = EvalKey(proposal_key=text, task="synthetic", fidelity="exact", seed=0, split=split)
    return EvalRequest(
        key=key,
        layers=tuple(text.split()),
        alphabet=("mA", "M", "Mb"),
        length=4,
        task_seed=0,
        latency_s=latency_s,
    )


class RecordingSlot(BaseSlot):
    """Runs requests inline and remembers the order in which it got them."""

    def __init__(self) -> None:
        self.name = "recording"
        self.seen: list[EvalKey] = []
        self.inline = InlineSlot(0)

    async def run(self, request: EvalRequest, timeout_s: float) -> EvalOutcome:
        self.seen.append(request.key)
        await asyncio.sleep(0.01)
        return await self.inline.run(request, timeout_s)


async def test_validation_before_test_and_shared_evaluations() -> None:
    slot = RecordingSlot()
    queue = EvaluationQueue([slot], timeout_s=5)
    halt = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        serving = group.create_task(queue.serve(halt))
        tests = [group.create_task(queue.submit(request(f"M M M {p}", split=Split.TEST)))
                 for p in ("mA", "M")]  # fmt: skip
        await asyncio.sleep(0)  # both test jobs are queued before the validation ones
        same = [group.create_task(queue.submit(request("mA M mA M"))) for _ in range(3)]
        results = [await t for t in same]
        await asyncio.gather(*tests)
        halt.set()
        await serving
    assert results[0] is results[1] is results[2], "identical requests share one evaluation"
    splits = [key.split for key in slot.seen]
    # the first test job may already have started; after it, validation work goes first
    assert splits.count(Split.VALIDATION) == 1
    assert splits.index(Split.VALIDATION) <= 1


async def test_queued_work_is_abandoned_on_halt() -> None:
    slot = RecordingSlot()
    queue = EvaluationQueue([slot], timeout_s=5)
    halt = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        serving = group.create_task(queue.serve(halt))
        jobs = [group.create_task(queue.submit(request(f"mA M M {p}"))) for p in ("mA", "M", "Mb")]
        await asyncio.sleep(0.005)
        halt.set()
        await serving
    outcomes = [j.result() for j in jobs]
    assert outcomes[0] is not None and outcomes[0].status is EvalStatus.OK
    assert outcomes[1:] == [None, None]
    assert await queue.submit(request("M M M M")) is None


async def test_process_slot_timeout_kills_and_restarts() -> None:
    slot = ProcessSlot(0, device="cpu", n_threads=1)
    try:
        slow = await slot.run(request("mA M mA M", latency_s=30), timeout_s=1.0)
        assert slow.status is EvalStatus.TIMEOUT
        assert "timeout" in (slow.error or "")
        assert slot.restarts == 1
        ok = await slot.run(request("mA M mA M"), timeout_s=20)
        assert ok.status in (EvalStatus.OK, EvalStatus.DIVERGED)
    finally:
        await slot.close()


async def test_process_slot_crash_fails_the_job_with_the_reason() -> None:
    slot = ProcessSlot(0, device="cpu", n_threads=1)
    try:
        warm = await slot.run(request("M M M M"), timeout_s=20)  # the worker is up
        assert warm.status in (EvalStatus.OK, EvalStatus.DIVERGED)
        pid = slot.pid
        assert pid is not None
        job = asyncio.ensure_future(slot.run(request("mA mA mA mA", latency_s=10), timeout_s=20))
        await asyncio.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        crashed = await job
        assert crashed.status is EvalStatus.ERROR
        assert "worker crashed" in (crashed.error or "") and "-9" in (crashed.error or "")
        again = await slot.run(request("M M M M"), timeout_s=20)
        assert (again.status, again.score) == (warm.status, warm.score)
        assert slot.pid != pid
    finally:
        await slot.close()
