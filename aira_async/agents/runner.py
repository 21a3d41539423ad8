"""One agent's loop: ask the policy, ask the agent, store the nodes, evaluate them, learn.

A *step* is one call of `policy.next_actions`: several actions (MCTS's five children, greedy's five
drafts) whose proposals are stored together and whose evaluations run concurrently, so the queue
always holds more work than there are slots. The next step starts when every node of the current
one has finished; that, and a random generator derived from (run seed, agent, step), makes a run
deterministic given a deterministic evaluator, and lets `aira resume` continue exactly: the nodes
of an interrupted step are evaluated again, and the step after it is the one the interrupted run
would have taken.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Mapping

from aira_async.agents.base import AgentContext, BaseAgent
from aira_async.run_state import RunState
from populations.arrangement import Arrangement, ArrangementError
from populations.policies.base import BasePolicy
from populations.records import (
    EvalOutcome,
    EvalStatus,
    NodeRecord,
    NodeStats,
    NodeStatus,
    Proposal,
    Split,
)
from populations.tree import SearchTree
from store import NewNode

log = logging.getLogger(__name__)


class AgentRunner:
    """Drives one agent over its own search tree. Owned by the daemon's TaskGroup."""

    def __init__(
        self,
        state: RunState,
        *,
        agent: BaseAgent,
        agent_id: int,
        policy: BasePolicy,
        max_steps: int | None,
        records: list[NodeRecord],
        stats: Mapping[int, NodeStats],
    ) -> None:
        self.state = state
        self.agent = agent
        self.agent_id = agent_id
        self.policy = policy
        self.max_steps = max_steps
        self.tree = SearchTree(records)
        self.stats: dict[int, NodeStats] = dict(stats)
        self.step = max((r.step for r in records), default=0)
        self._unfinished = [r for r in records if not r.status.finished]

    def step_rng(self, step: int, *salt: object) -> random.Random:
        """The random generator of one step (and, with a salt, of one action of it)."""
        parts = ":".join(
            str(p) for p in (self.state.config.run.seed, self.agent.name, step, *salt)
        )
        return random.Random(parts)

    async def run(self) -> None:
        """Take steps until the stop event, the node cap or the agent's step limit."""
        if self._unfinished:
            log.info(
                "agent %s: re-evaluating %d unfinished nodes",
                self.agent.name,
                len(self._unfinished),
            )
            await self._evaluate_all(self._unfinished)
            self._unfinished = []
        while not self.state.stop.is_set():
            if self.max_steps is not None and self.step >= self.max_steps:
                break
            if not await self.take_step():
                break
        log.info("agent %s: stopped after step %d", self.agent.name, self.step)

    async def take_step(self) -> bool:
        """One step; False when there is nothing left to do (node cap reached)."""
        step = self.step + 1
        rng = self.step_rng(step)
        actions = self.policy.next_actions(self.tree, self.stats, rng)
        actions = actions[: self.state.reserve_nodes(len(actions))]
        if not actions:
            return False
        # Each action gets its own generator, so concurrent proposals cannot interleave draws.
        async with asyncio.TaskGroup() as group:
            asked = [
                group.create_task(self.agent.propose(action, self._context(step, i)))
                for i, action in enumerate(actions)
            ]
        proposals = [task.result() for task in asked]
        items = [self._new_node(p) for p in proposals]
        archive = self.state.writer.archive
        records = await self.state.writer.call(
            archive.add_nodes, self.state.run_id, self.agent_id, step, items
        )
        self.step = step
        for record in records:
            self.tree.add(record)
        await self._evaluate_all(records)
        return True

    def _context(self, step: int, index: int) -> AgentContext:
        return AgentContext(
            tree=self.tree,
            rng=self.step_rng(step, "action", index),
            task_description=self.state.task_description,
            alphabet=self.state.config.task.alphabet,
            length=self.state.config.task.length,
        )

    def _new_node(self, proposal: Proposal) -> NewNode:
        """Check a proposal before any evaluation time is spent (Analyze's static part)."""
        error = proposal.error
        key = proposal.text.strip()
        if error is None:
            try:
                arrangement = Arrangement.parse(
                    proposal.text,
                    alphabet=self.state.config.task.alphabet,
                    length=self.state.config.task.length,
                )
            except ArrangementError as exc:
                error = f"invalid proposal: {exc}"
            else:
                key = arrangement.key
                proposal = dataclasses.replace(proposal, text=arrangement.key)
        return NewNode(
            proposal=proposal,
            proposal_key=key,
            status=NodeStatus.PENDING,
            error=error,
            evaluator_version="",
            config_hash=self.state.config_hash,
            seed=self.state.config.task.seed,
        )

    async def _evaluate_all(self, records: list[NodeRecord]) -> None:
        async with asyncio.TaskGroup() as group:
            for record in records:
                group.create_task(self._evaluate(record), name=f"node:{record.node_id}")

    async def _evaluate(self, record: NodeRecord) -> None:
        outcome: EvalOutcome | None = None
        error: str | None
        if record.error is not None:
            status, fitness, error = NodeStatus.FAILED, None, record.error
        else:
            key = self.state.key(record.proposal_key, Split.VALIDATION)
            outcome = self.state.evaluations.get(key)
            if outcome is None:
                # The node stays PENDING in the archive until its result commits: a crash at any
                # point before that re-queues it, and nothing half-done is ever recorded.
                outcome = await self.state.queue.submit(self.state.request(key))
                if outcome is None:
                    return  # abandoned at shutdown: stays unfinished, re-queued on resume
            ok = outcome.status is EvalStatus.OK and outcome.score is not None
            status = NodeStatus.COMPLETE if ok else NodeStatus.FAILED
            fitness = outcome.score if ok else None
            error = None if ok else (outcome.error or outcome.status.value)
        finished = dataclasses.replace(record, status=status, val_fitness=fitness, error=error)
        # Tree and statistics change together, with no await in between: steps of one agent
        # finish concurrently, and each update must see the previous one.
        self.tree.update(finished)
        changes = self.policy.on_result(self.tree, finished, self.stats)
        self.stats.update(changes)
        stored = await self.state.writer.call(
            self.state.writer.archive.finish_node,
            record.node_id,
            status=status,
            outcome=outcome,
            val_fitness=fitness,
            error=error,
            stats=changes,
            agent_id=self.agent_id,
        )
        self.tree.update(stored)
        self.state.node_finished(stored, outcome)
