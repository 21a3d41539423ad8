"""The search daemon: one TaskGroup of long-lived services over one archive.

Children of the group: one `AgentRunner` per agent, the evaluation queue's slots, the test
evaluator, the heartbeat (wall-clock budget, progress), the island exchanger (migration and the
collapse monitor, when configured) and a watcher that ends the run when every agent is done.
Shutdown [arq, aiorun]: SIGINT/SIGTERM (or the budget, or the node cap) set `stop`; agents take no
new step, slots finish the job they hold, queued jobs are abandoned (their nodes
stay unfinished and `aira resume` re-queues them). After `shutdown_grace_s` — or at a second
signal — the group is cancelled, and the stacks of tasks still running are logged.

Durability: a node, its evaluation and the policy statistics it changes are committed in one
transaction by `Archive.finish_node`; the budget spent is committed at every heartbeat. A SIGKILL
loses at most the work in flight and one heartbeat of budget accounting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aira_async.agents.base import BaseAgent
from aira_async.agents.classical import CLASSICAL, make_classical_agent
from aira_async.agents.llm import LLMRuntime, make_llm_agent
from aira_async.agents.runner import AgentRunner
from aira_async.archive_io import ArchiveWriter
from aira_async.config import AgentConfig, DaemonConfig
from aira_async.errors import ConfigError, RunStateError
from aira_async.gpu_queue import EvaluationQueue
from aira_async.islands import IslandExchanger, load_received
from aira_async.liveness import daemon_alive
from aira_async.run_state import RunState
from aira_async.tasks import describe, task_spec
from aira_async.worker_pool import make_slots
from populations.policies import make_policy
from populations.policies.base import BasePolicy
from populations.records import EvalStatus, NodeRecord, Split
from store import Archive, RunRecord, RunStatus

log = logging.getLogger(__name__)


class _GraceExpired(Exception):
    """Raised inside the group to cancel it once the shutdown grace period is over."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """What the live display shows; taken at every heartbeat."""

    run_id: int
    spent_s: float
    budget_s: float
    n_nodes: int
    max_nodes: int | None
    n_finished: int
    n_failed: int
    n_reused: int
    n_queued: int
    n_running: int
    n_slots: int
    best: NodeRecord | None
    stopping: bool
    agents: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSummary:
    run_id: int
    stop_reason: str
    spent_s: float
    budget_s: float
    n_nodes: int
    n_finished: int
    best: NodeRecord | None
    top: tuple[NodeRecord, ...] = field(default_factory=tuple)
    agent_names: dict[int, str] = field(default_factory=dict)


def build_agent(agent: AgentConfig, config: DaemonConfig) -> tuple[BaseAgent, BasePolicy]:
    """The agent and policy of one `[[agents]]` entry (checked before anything is written)."""
    task = config.task
    maximize = task_spec(task).maximize
    if agent.proposer not in (*CLASSICAL, "llm"):
        raise ConfigError(
            f"agents.{agent.name}.proposer: unknown proposer {agent.proposer!r}"
            f" (known: {', '.join(CLASSICAL)}, llm)"
        )
    try:
        built: BaseAgent
        if agent.proposer == "llm":
            if config.llm.cost_cap_usd is not None and agent.model not in config.llm.prices:
                raise ConfigError(
                    f"agents.{agent.name}.model: llm.prices has no entry for {agent.model!r},"
                    " which llm.cost_cap_usd needs"
                )
            built = make_llm_agent(agent)  # ConfigError naming a missing key's variable
        else:
            proposer_params = dict(agent.proposer_params)
            if agent.proposer == "bo":  # its acquisition needs the task's direction
                proposer_params.setdefault("maximize", maximize)
            built = make_classical_agent(
                agent.name,
                agent.proposer,
                proposer_params,
                alphabet=task.alphabet,
                length=task.length,
            )
        params = {"maximize": maximize, **agent.policy_params}
        policy = make_policy(agent.policy, **params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"agents.{agent.name}: {exc}") from None
    return built, policy


class Daemon:
    """One run of the search, new (`resume=False`) or continued from the archive.

    Args:
        config: the population; None on resume (the archive's stored config is used).
        db: path or URL of the archive.
        resume: continue the run stored in `db` instead of starting one.
        budget_s / max_nodes: the only settings the command line may change.
        install_signals: handle SIGINT/SIGTERM (only from the main thread).
        on_progress: called with a `Snapshot` at every heartbeat (the CLI's live display).
    """

    def __init__(
        self,
        config: DaemonConfig | None,
        db: str,
        *,
        resume: bool = False,
        budget_s: float | None = None,
        max_nodes: int | None = None,
        install_signals: bool = True,
        on_progress: Callable[[Snapshot], None] | None = None,
    ) -> None:
        if config is None and not resume:
            raise ValueError("config: a new run needs a population config")
        self._config = config
        self._db = db
        self._resume = resume
        self._overrides = {"run.budget_s": budget_s, "run.max_nodes": max_nodes}
        self._install_signals = install_signals
        self._on_progress = on_progress
        self._force = asyncio.Event()
        self._agents_done = asyncio.Event()
        self._halt = asyncio.Event()
        self._finished = asyncio.Event()
        self.state: RunState | None = None
        self._spent_s = 0.0
        self._budget_s = 0.0
        self._runners: list[AgentRunner] = []
        self._exchanger: IslandExchanger | None = None

    # ----------------------------------------------------------------------------- lifecycle
    async def run(self) -> RunSummary:
        """Run until the budget, the node cap, every agent's step limit, or a signal."""
        if not self._resume:
            assert self._config is not None
            self._config = self._config.with_overrides(**self._overrides)
            self._check(self._config)
            if Path(self._db).exists():
                raise RunStateError(
                    f"{self._db} already exists; continue it with `aira resume --db {self._db}`"
                    " or choose a new --db path"
                )
        writer = ArchiveWriter()
        try:
            archive = await writer.open(self._db, create=not self._resume)
            state = await self._prepare(writer, archive)
            self.state = state
            await self._serve(state)
            return await self._finish(state)
        finally:
            for runner in self._runners:
                await runner.agent.close()
            await writer.close()

    def _check(self, config: DaemonConfig) -> dict[str, tuple[BaseAgent, BasePolicy]]:
        task_spec(config.task)
        return {a.name: build_agent(a, config) for a in config.expanded_agents()}

    async def _prepare(self, writer: ArchiveWriter, archive: Archive) -> RunState:
        """Open (or create) the run, then build the state and the agents from the archive."""
        config, run = await (self._reopen(writer, archive) if self._resume
                             else self._create(writer, archive))  # fmt: skip
        self._config = config
        self._spent_s, self._budget_s = run.spent_s, config.run.budget_s
        built = self._check(config)
        state = RunState(
            run_id=run.run_id,
            config=config,
            config_hash=config.config_hash(),
            writer=writer,
            queue=EvaluationQueue(
                make_slots(
                    config.evaluation.backend,
                    workers=config.evaluation.workers,
                    device=config.evaluation.device,
                    threads_per_worker=config.evaluation.threads_per_worker,
                    compile=config.evaluation.compile,
                    cuda_graph=config.evaluation.cuda_graph,
                ),
                timeout_s=config.evaluation.timeout_s,
                fuse=config.evaluation.fuse,
            ),
            stop=asyncio.Event(),
            maximize=task_spec(config.task).maximize,
            task_description=describe(config.task),
        )
        if any(a.proposer == "llm" for a in config.agents):
            state.llm = await LLMRuntime.for_run(
                config.llm, writer, run.run_id, on_cap=state.request_stop
            )
        for island in config.islands:
            await writer.call(archive.add_island, run.run_id, island.name)
        received = await load_received(writer, archive, run.run_id)
        all_nodes = await writer.call(archive.nodes, run.run_id)
        state.load_history(all_nodes)
        for agent_config in config.expanded_agents():
            agent, policy = built[agent_config.name]
            row = await writer.call(
                archive.add_agent,
                run.run_id,
                name=agent.name,
                island=agent_config.island,
                kind=agent.kind,
                policy=agent_config.policy,
                config={"policy_params": dict(agent_config.policy_params)},
            )
            self._runners.append(
                AgentRunner(
                    state,
                    agent=agent,
                    agent_id=row.agent_id,
                    policy=policy,
                    max_steps=agent_config.max_steps,
                    records=[n for n in all_nodes if n.agent_id == row.agent_id],
                    stats=await writer.call(archive.stats, row.agent_id),
                    imported=received.get(row.island or "", []),
                )
            )
        self._exchanger = await IslandExchanger.create(state, self._runners, all_nodes, received)
        await writer.call(archive.set_run_status, run.run_id, RunStatus.RUNNING, pid=os.getpid())
        return state

    async def _create(
        self, writer: ArchiveWriter, archive: Archive
    ) -> tuple[DaemonConfig, RunRecord]:
        assert self._config is not None
        config = self._config
        run = await writer.call(
            archive.create_run,
            name=config.run.name,
            config=config.to_dict(),
            config_hash=config.config_hash(),
            seed=config.run.seed,
            budget_s=config.run.budget_s,
            max_nodes=config.run.max_nodes,
        )
        return config, run

    async def _reopen(
        self, writer: ArchiveWriter, archive: Archive
    ) -> tuple[DaemonConfig, RunRecord]:
        """The stored run and its config (with the CLI's overrides), checked before any write;
        then stale work is re-queued."""
        run = await writer.call(archive.get_run)
        self._check_not_running(run)
        config = DaemonConfig.from_dict(run.config, source=f"{self._db} (stored config)")
        config = config.with_overrides(
            **{k: v for k, v in self._overrides.items() if v is not None}
        )
        self._check(config)
        if config.run.budget_s != run.budget_s or config.run.max_nodes != run.max_nodes:
            run = await writer.call(
                archive.set_run_limits,
                run.run_id,
                budget_s=config.run.budget_s,
                max_nodes=config.run.max_nodes,
            )
        n_requeued = await writer.call(archive.requeue_stale, run.run_id)
        await writer.call(
            archive.add_event,
            run.run_id,
            "resume",
            {"requeued": n_requeued, "spent_s": run.spent_s, "pid": os.getpid()},
        )
        return config, run

    def _check_not_running(self, run: RunRecord) -> None:
        """Refuse to resume a run whose daemon is still alive: there is one writer."""
        if daemon_alive(run) and run.pid != os.getpid():
            raise RunStateError(
                f"run {run.run_id} is still running (pid {run.pid}); stop it before resuming"
            )

    async def _serve(self, state: RunState) -> None:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if self._install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    installed.append(sig)
        try:
            async with asyncio.TaskGroup() as group:
                queue = group.create_task(state.queue.serve(self._halt), name="queue")
                group.create_task(self._heartbeat(state), name="heartbeat")
                tests = group.create_task(self._test_evaluations(state), name="tests")
                if self._exchanger is not None:
                    group.create_task(self._exchanger.run(self._halt), name="islands")
                runners = [
                    group.create_task(r.run(), name=f"agent:{r.agent.name}") for r in self._runners
                ]
                grace = group.create_task(self._grace(), name="grace")
                group.create_task(self._watch(state, runners, tests, queue, grace), name="watch")
        except* _GraceExpired:
            log.warning("shutdown grace period over: cancelled work still in flight")
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def halt(self, reason: str) -> None:
        """Stop now-ish: no new step, no new job; jobs running finish within the grace period."""
        assert self.state is not None
        self.state.request_stop(reason)
        self._halt.set()

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._halt.is_set():
            log.warning("second %s: stopping now", name)
            self._force.set()
            return
        log.warning("%s: finishing evaluations in flight, then stopping", name)
        self.halt(f"signal {name}")

    async def _watch(
        self,
        state: RunState,
        runners: list[asyncio.Task[None]],
        tests: asyncio.Task[None],
        queue: asyncio.Task[None],
        grace: asyncio.Task[None],
    ) -> None:
        """End the run: once every agent is done, finish the test evaluations still wanted
        (unless halted), then stop the queue, the heartbeat and the grace timer."""
        await asyncio.wait(runners)
        state.request_stop(state.stop_reason or "agents finished")
        self._agents_done.set()
        await asyncio.wait([tests])
        self._halt.set()
        await asyncio.wait([queue])
        grace.cancel()
        self._finished.set()

    async def _grace(self) -> None:
        """Once halted, give work in flight `shutdown_grace_s` (or until a second signal)."""
        await self._halt.wait()
        assert self.state is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.state.config.run.shutdown_grace_s):
                await self._force.wait()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task() and not task.done():
                log.warning("still running at shutdown: %s", task.get_name())
                for frame in task.get_stack(limit=3):
                    log.warning("  %s:%d", frame.f_code.co_filename, frame.f_lineno)
        raise _GraceExpired

    async def _heartbeat(self, state: RunState) -> None:
        """Persist the wall-clock budget spent, stop when it is used up, report progress."""
        archive = state.writer.archive
        interval = state.config.run.heartbeat_s
        last = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._finished.wait()
            now = time.monotonic()
            run = await state.writer.call(archive.add_spent, state.run_id, now - last)
            last = now
            self._spent_s = run.spent_s
            if run.spent_s >= self._budget_s and not self._halt.is_set():
                self.halt("budget")
            if self._on_progress is not None:
                self._on_progress(self.snapshot())
            if self._finished.is_set():
                return

    async def _test_evaluations(self, state: RunState) -> None:
        """Score good nodes on the test split, at lower priority than validation work.

        Returns when halted, or once the agents are done and no test evaluation is left."""
        archive = state.writer.archive
        limit = asyncio.Semaphore(max(1, state.queue.n_slots))
        in_flight = 0

        async def one(record: NodeRecord) -> None:
            nonlocal in_flight
            try:
                async with limit:
                    key = state.key(record.proposal_key, Split.TEST)
                    outcome = state.evaluations.get(key)
                    if outcome is None:
                        outcome = await state.queue.submit(state.request(key))
                    if outcome is None:
                        return
                    if outcome.status is EvalStatus.OK:
                        state.evaluations[key] = outcome
                    await state.writer.call(archive.record_test, record.node_id, outcome)
            finally:
                in_flight -= 1

        async with asyncio.TaskGroup() as group:
            while not self._halt.is_set():
                idle = state.test_requests.empty() and in_flight == 0
                if idle and self._agents_done.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        record = await state.test_requests.get()
                        in_flight += 1
                        group.create_task(one(record), name=f"test:{record.node_id}")

    async def _finish(self, state: RunState) -> RunSummary:
        archive = state.writer.archive
        reason = state.stop_reason or "agents finished"
        status = RunStatus.STOPPED if reason.startswith("signal") else RunStatus.FINISHED
        await state.writer.call(archive.set_run_status, state.run_id, status)
        await state.writer.call(archive.add_event, state.run_id, "stop", {"reason": reason})
        top = await state.writer.call(archive.top, state.run_id, 10, maximize=state.maximize)
        return RunSummary(
            run_id=state.run_id,
            stop_reason=reason,
            spent_s=self._spent_s,
            budget_s=self._budget_s,
            n_nodes=state.n_nodes,
            n_finished=state.n_finished,
            best=state.best,
            top=tuple(top),
            agent_names={r.agent_id: r.agent.name for r in self._runners},
        )

    def snapshot(self) -> Snapshot:
        state = self.state
        assert state is not None
        return Snapshot(
            run_id=state.run_id,
            spent_s=self._spent_s,
            budget_s=self._budget_s,
            n_nodes=state.n_nodes,
            max_nodes=state.config.run.max_nodes,
            n_finished=state.n_finished,
            n_failed=state.n_failed,
            n_reused=state.n_reused,
            n_queued=state.queue.n_queued,
            n_running=state.queue.n_running,
            n_slots=state.queue.n_slots,
            best=state.best,
            stopping=state.stop.is_set(),
            agents=tuple((r.agent.name, r.step) for r in self._runners),
        )
