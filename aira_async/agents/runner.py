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
from collections.abc import Mapping, Sequence

from aira_async.agents.base import AgentContext, BaseAgent
from aira_async.run_state import RunState
from populations.arrangement import Arrangement, ArrangementError
from populations.policies.base import BasePolicy
from populations.records import (
    Action,
    EvalOutcome,
    EvalStatus,
    NodeRecord,
    NodeStats,
    NodeStatus,
    Operator,
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
        imported: Sequence[NodeRecord] = (),
    ) -> None:
        self.state = state
        self.agent = agent
        self.agent_id = agent_id
        self.policy = policy
        self.max_steps = max_steps
        self.tree = SearchTree(records, imported=imported)
        self._inbox: list[NodeRecord] = []  # migrants received, imported at the next step
        self._explore_steps = 0
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

    def receive(self, record: NodeRecord) -> None:
        """Take a migrant (an island exchange); it enters the tree before the next step, so a
        step never sees its tree change, and is ignored if the tree already holds it."""
        self._inbox.append(record)

    def boost_exploration(self, n_steps: int) -> None:
        """Make the next `n_steps` steps Draft fresh arrangements (a collapse response)."""
        self._explore_steps = max(self._explore_steps, n_steps)

    async def take_step(self) -> bool:
        """One step; False when there is nothing left to do (node cap reached)."""
        step = self.step + 1
        rng = self.step_rng(step)
        inbox, self._inbox = self._inbox, []
        for migrant in inbox:
            if migrant.node_id not in self.tree:
                self.tree.import_migrant(migrant)
        actions = self.policy.next_actions(self.tree, self.stats, rng)
        if self._explore_steps and actions:
            self._explore_steps -= 1
            actions = [Action(operator=Operator.DRAFT, parent_id=None) for _ in actions]
        actions = actions[: self.state.reserve_nodes(len(actions))]
        if not actions:
            return False
        # Each action gets its own generator, so concurrent proposals cannot interleave draws.
        async with asyncio.TaskGroup() as group:
            asked = [
                group.create_task(self.agent.propose(action, self._context(step, i, len(actions))))
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

    def _context(self, step: int, index: int, n_slots: int = 1) -> AgentContext:
        return AgentContext(
            tree=self.tree,
            rng=self.step_rng(step, "action", index),
            task_description=self.state.task_description,
            alphabet=self.state.config.task.alphabet,
            length=self.state.config.task.length,
            run_id=self.state.run_id,
            agent_id=self.agent_id,
            step=step,
            slot=index,
            n_slots=n_slots,
            llm=self.state.llm,
        )

    async def _analyze(self, record: NodeRecord, outcome: EvalOutcome) -> None:
        """Ask the agent's Analyze operator about an evaluated node; store its judgement as an
        ``analysis`` event. Advisory only: the evaluator's status and score stand."""
        analysis = await self.agent.analyze(record, outcome, self._context(record.step, 0))
        if analysis is None:
            return
        payload = {
            "is_bug": analysis.is_bug,
            "summary": analysis.summary,
            "llm_metric": analysis.metric,
            "evaluator_status": outcome.status.value,
            "evaluator_score": outcome.score,
        }
        await self.state.writer.call(
            self.state.writer.archive.add_event,
            self.state.run_id,
            "analysis",
            payload,
            agent_id=self.agent_id,
            node_id=record.node_id,
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
        if outcome is not None:
            await self._analyze(record, outcome)
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
