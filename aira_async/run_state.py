"""State shared by the coroutines of one daemon run (all on one event loop, so no locks).

It holds the wiring (archive writer, evaluation queue, stop event) and the few counters that
cross agents: the node cap, the known evaluation results that are reused instead of re-run, the
best node so far and the requests for test evaluations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aira_async.archive_io import ArchiveWriter
from aira_async.config import DaemonConfig
from aira_async.eval_worker import EvalRequest
from aira_async.gpu_queue import EvaluationQueue
from populations.records import EvalKey, EvalOutcome, EvalStatus, NodeRecord, Split

if TYPE_CHECKING:
    from aira_async.agents.llm.runtime import LLMRuntime


@dataclass(kw_only=True)
class RunState:
    """Mutable state of one run; owned by `Daemon`, read by agents, services and the display."""

    run_id: int
    config: DaemonConfig
    config_hash: str
    writer: ArchiveWriter
    queue: EvaluationQueue
    stop: asyncio.Event
    maximize: bool
    task_description: str
    n_nodes: int = 0
    n_finished: int = 0
    n_failed: int = 0
    n_reused: int = 0
    best: NodeRecord | None = None
    stop_reason: str | None = None
    evaluations: dict[EvalKey, EvalOutcome] = field(default_factory=dict)
    test_requests: asyncio.Queue[NodeRecord] = field(default_factory=asyncio.Queue)
    finished_listeners: list[Callable[[NodeRecord], None]] = field(default_factory=list)
    """Called (on the loop, must not block) with each node once its result is committed."""
    llm: LLMRuntime | None = None
    """The LLM agents' shared services (reply cache, ledger, limits); None without LLM agents."""

    def key(self, proposal_key: str, split: Split) -> EvalKey:
        task = self.config.task
        return EvalKey(
            proposal_key=proposal_key,
            task=task.name,
            fidelity=task.fidelity,
            seed=task.seed,
            split=split,
        )

    def request(self, key: EvalKey) -> EvalRequest:
        task = self.config.task
        return EvalRequest(
            key=key,
            layers=tuple(key.proposal_key.split()),
            alphabet=task.alphabet,
            length=task.length,
            task_seed=task.seed,
            latency_s=task.latency_s,
            data=task.data,
        )

    def request_stop(self, reason: str) -> None:
        """Stop taking new work; the first reason given is the one reported."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop.set()

    def reserve_nodes(self, wanted: int) -> int:
        """How many of `wanted` new nodes the node cap still allows (and count them)."""
        cap = self.config.run.max_nodes
        allowed = wanted if cap is None else max(0, min(wanted, cap - self.n_nodes))
        self.n_nodes += allowed
        if cap is not None and self.n_nodes >= cap and allowed < wanted:
            self.stop_reason = self.stop_reason or "max_nodes"
        return allowed

    def load_history(self, nodes: list[NodeRecord]) -> None:
        """Counters, the best node, reusable results and pending test work of a resumed run.

        Reused results carry only their score: `Archive.finish_node` links a node to the
        evaluation already stored under the same key.
        """
        self.n_nodes = len(nodes)
        for node in nodes:
            if node.status.finished:
                self.n_finished += 1
                self.n_failed += node.is_buggy
            if node.is_good:
                if self.is_better(node):
                    self.best = node
                key = self.key(node.proposal_key, Split.VALIDATION)
                self.evaluations[key] = EvalOutcome(
                    key=key, status=EvalStatus.OK, score=node.val_fitness
                )
                if node.test_fitness is None and self.config.task.test_eval:
                    self.test_requests.put_nowait(node)
            if node.test_fitness is not None:
                key = self.key(node.proposal_key, Split.TEST)
                self.evaluations[key] = EvalOutcome(
                    key=key, status=EvalStatus.OK, score=node.test_fitness
                )

    def is_better(self, record: NodeRecord) -> bool:
        if record.val_fitness is None:
            return False
        if self.best is None or self.best.val_fitness is None:
            return True
        if self.maximize:
            return record.val_fitness > self.best.val_fitness
        return record.val_fitness < self.best.val_fitness

    def node_finished(self, record: NodeRecord, outcome: EvalOutcome | None) -> None:
        """Book-keeping after a node's result is committed."""
        self.n_finished += 1
        for listener in self.finished_listeners:
            listener(record)
        if record.is_good:
            if outcome is not None and outcome.status is EvalStatus.OK:
                if outcome.key in self.evaluations:
                    self.n_reused += 1
                self.evaluations[outcome.key] = outcome
            if self.is_better(record):
                self.best = record
            if self.config.task.test_eval:
                self.test_requests.put_nowait(record)
        else:
            self.n_failed += 1
