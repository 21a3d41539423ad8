"""The evaluation queue and its worker processes: priorities, sharing, fusing, timeouts."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence

import pytest

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


def mad_request(
    text: str,
    *,
    task: str = "mad",
    fidelity: str = "smoke",
    seed: int = 0,
    split: Split = Split.VALIDATION,
) -> EvalRequest:
    key = EvalKey(proposal_key=text, task=task, fidelity=fidelity, seed=seed, split=split)
    return EvalRequest(
        key=key, layers=tuple(text.split()), alphabet=("mA", "M", "Mb"), length=2, task_seed=0
    )


class BatchSlot(BaseSlot):
    """Answers every request OK at once and remembers the batches it was given."""

    def __init__(self, delay_s: float = 0.01) -> None:
        self.name = "batches"
        self.batches: list[list[str]] = []
        self.delay_s = delay_s

    async def run(self, request: EvalRequest, timeout_s: float) -> EvalOutcome:
        raise AssertionError("the queue hands slots batches")

    async def run_batch(
        self, requests: Sequence[EvalRequest], timeout_s: float
    ) -> list[EvalOutcome]:
        self.batches.append([r.key.proposal_key for r in requests])
        await asyncio.sleep(self.delay_s)
        return [EvalOutcome(key=r.key, status=EvalStatus.OK, score=1.0) for r in requests]


# submitted in this order: one test job, then validation jobs v0..v4 with `x` among them
ORDER = ["t0", "v0", "v1", "x", "v2", "v3", "v4"]


async def batches_for(fuse: int, incompatible: EvalRequest) -> list[list[str]]:
    """The batches a one-slot queue forms from ORDER's requests, all queued before it serves."""
    requests = {name: mad_request(f"{name} M") for name in ORDER if name[0] == "v"}
    requests["t0"] = mad_request("t0 M", split=Split.TEST)
    requests["x"] = incompatible
    slot = BatchSlot()
    queue = EvaluationQueue([slot], timeout_s=5, fuse=fuse)
    halt = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        jobs = [group.create_task(queue.submit(requests[name])) for name in ORDER]
        again = group.create_task(queue.submit(requests["v1"]))  # shares v1's evaluation
        await asyncio.sleep(0)  # everything is queued before the slot takes anything
        serving = group.create_task(queue.serve(halt))
        outcomes = [await job for job in jobs]
        assert (await again) is outcomes[ORDER.index("v1")]
        halt.set()
        await serving
    assert all(o is not None and o.status is EvalStatus.OK for o in outcomes)
    assert queue.n_done == len(ORDER)
    return slot.batches


@pytest.mark.parametrize(
    "incompatible",
    [
        mad_request("x M", task="synthetic"),
        mad_request("x M", fidelity="paper"),
        mad_request("x M M"),  # another depth
    ],
    ids=["task", "fidelity", "depth"],
)
async def test_fused_batches_keep_the_cap_order_and_compatibility(
    incompatible: EvalRequest,
) -> None:
    batches = await batches_for(3, incompatible)
    incompatible_key = incompatible.key.proposal_key
    assert batches == [
        ["v0 M", "v1 M", "v2 M"],  # x is passed over and keeps its place
        [incompatible_key],
        ["v3 M", "v4 M"],  # the test job does not join validation work
        ["t0 M"],
    ]


async def test_jobs_of_another_seed_fuse() -> None:
    """Each fused candidate keeps its own seed's data and batch order (primitives.fused)."""
    batches = await batches_for(3, mad_request("x M", seed=1))
    assert batches == [["v0 M", "v1 M", "x M"], ["v2 M", "v3 M", "v4 M"], ["t0 M"]]


async def test_fuse_one_runs_one_request_at_a_time() -> None:
    batches = await batches_for(1, mad_request("x M", seed=1))
    assert batches == [["v0 M"], ["v1 M"], ["x M"], ["v2 M"], ["v3 M"], ["v4 M"], ["t0 M"]]


async def test_a_batch_taken_is_answered_when_the_queue_halts() -> None:
    slot = BatchSlot(delay_s=0.2)
    queue = EvaluationQueue([slot], timeout_s=5, fuse=3)
    halt = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        jobs = [group.create_task(queue.submit(mad_request(f"v{i} M"))) for i in range(5)]
        await asyncio.sleep(0)
        serving = group.create_task(queue.serve(halt))
        await asyncio.sleep(0.05)  # the slot holds its first batch
        halt.set()
        await serving
    outcomes = [j.result() for j in jobs]
    assert slot.batches == [["v0 M", "v1 M", "v2 M"]]
    assert all(o is not None and o.status is EvalStatus.OK for o in outcomes[:3])
    assert outcomes[3:] == [None, None]


async def test_process_slot_batch_timeout_fails_every_request() -> None:
    slot = ProcessSlot(0, device="cpu", n_threads=1)
    try:
        batch = [request("mA M mA M", latency_s=30), request("M M M M")]
        outcomes = await slot.run_batch(batch, timeout_s=0.75)  # the batch gets 2 x 0.75 s
        assert [o.key for o in outcomes] == [r.key for r in batch]
        assert all(o.status is EvalStatus.TIMEOUT for o in outcomes)
        assert all("after 1.5s" in (o.error or "") for o in outcomes)
        assert slot.restarts == 1
    finally:
        await slot.close()


async def test_process_slot_fuses_mad_requests_like_one_at_a_time() -> None:
    """CPU fp32: a fused batch scores as the same requests run one by one (to rounding)."""
    slot = ProcessSlot(0, device="cpu", n_threads=1)
    requests = [mad_request("mA M"), mad_request("Mb M")]
    try:
        fused = await slot.run_batch(requests, timeout_s=120)
        alone = [await slot.run(r, timeout_s=120) for r in requests]
        # a malformed request fails alone; its batch-mate still trains
        bad, good = await slot.run_batch([mad_request("X M"), requests[0]], timeout_s=120)
    finally:
        await slot.close()
    assert bad.status is EvalStatus.ERROR and "'X'" in (bad.error or "")
    assert good.status is EvalStatus.OK and good.score == alone[0].score
    for together, single, req in zip(fused, alone, requests, strict=True):
        assert together.key == single.key == req.key
        assert together.status is single.status is EvalStatus.OK, together.error
        assert together.score is not None and single.score is not None
        assert abs(together.score - single.score) < 1e-6
        assert together.metrics["fused_k"] == 2 and "fused_k" not in single.metrics
        assert together.metrics["n_params"] == single.metrics["n_params"]


def test_a_batch_split_for_memory_reports_the_size_it_trained_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch that does not fit trains in smaller groups; fused_k says how small, and the
    candidates are not lost to it."""
    import torch

    import primitives.fused as fused
    from aira_async.eval_worker import run_batch

    real_fit = fused.fit_and_score_fused

    def one_fits(model: fused.FusedArrangements, *args: object, **kwargs: object) -> object:
        if model.k > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_fit(model, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fused, "fit_and_score_fused", one_fits)
    outcomes = run_batch([mad_request("mA M"), mad_request("Mb M"), mad_request("M M")])
    assert [o.status for o in outcomes] == [EvalStatus.OK] * 3, [o.error for o in outcomes]
    assert [o.metrics["fused_k"] for o in outcomes] == [1, 1, 1]


@pytest.mark.parametrize(
    ("device", "compile", "cuda_graph", "expected"),
    [
        ("cuda:0", True, True, (True, True)),
        ("cuda:0", True, False, (True, False)),
        ("cuda:0", False, True, (False, False)),  # graphs only replay compiled blocks
        ("cpu", True, True, (False, False)),
    ],
)
def test_a_worker_asks_for_compiled_blocks_and_graphs_only_on_cuda(
    monkeypatch: pytest.MonkeyPatch,
    device: str,
    compile: bool,
    cuda_graph: bool,
    expected: tuple[bool, bool],
) -> None:
    import primitives.fused as fused
    from aira_async.eval_worker import run_batch

    class Asked(Exception):
        pass

    def record(jobs: object, **kwargs: object) -> object:
        raise Asked((kwargs["compile_blocks"], kwargs["cuda_graph"]))

    monkeypatch.setattr(fused, "evaluate_fused", record)
    with pytest.raises(Asked) as asked:
        run_batch(
            [mad_request("mA M"), mad_request("M M")],
            device,
            compile=compile,
            cuda_graph=cuda_graph,
        )
    assert asked.value.args[0] == expected
