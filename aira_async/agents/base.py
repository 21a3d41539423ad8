"""The agent interface: what the daemon asks of an LLM agent or a classical proposer.

An agent turns one `Action` (Draft, Improve or Debug a node) into one `Proposal`: a plan and a
solution (an arrangement). It never scores anything: the fitness that steers the search comes
from the evaluator. LLM agents (OpenAI, Anthropic, OpenAI-compatible servers) and the classical
proposers of `populations.proposers` implement the same interface, so a population can mix them.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from populations.records import Action, EvalOutcome, NodeRecord, Proposal
from populations.tree import SearchTree

if TYPE_CHECKING:
    from aira_async.agents.llm.parsing import Analysis
    from aira_async.agents.llm.runtime import LLMRuntime


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentContext:
    """What an agent may see when it proposes: its own tree and the task, never test labels.

    `rng` is derived from (run seed, agent, step), so a resumed run proposes exactly what the
    interrupted one would have. `run_id`, `agent_id`, `step` and `slot` (the action's index
    among the `n_slots` of its step) place the proposal in the run: LLM agents hash them into
    the request key of their calls, so a resumed run that recomputes the same step replays the
    stored replies. `llm` holds the run's shared LLM services (None without LLM agents).
    """

    tree: SearchTree
    rng: random.Random
    task_description: str
    alphabet: tuple[str, ...]
    length: int
    run_id: int = 0
    agent_id: int = 0
    island: str | None = None
    step: int = 0
    slot: int = 0
    n_slots: int = 1
    llm: LLMRuntime | None = None


class BaseAgent(ABC):
    """One research agent. Concurrency: `propose` may be awaited for several actions at once."""

    name: str
    kind: str

    @abstractmethod
    async def propose(self, action: Action, context: AgentContext) -> Proposal:
        """Plan and solution for `action`; failures come back as `Proposal.error`, not raised."""

    async def analyze(
        self, record: NodeRecord, outcome: EvalOutcome, context: AgentContext
    ) -> Analysis | None:
        """Judge an evaluated node (the Analyze operator); None when the agent does not analyze.

        The daemon stores the judgement as an ``analysis`` event of the node. It is advisory:
        the node's status and fitness are the evaluator's, never the agent's. Failures come back
        as None (and are logged), never raised.
        """
        return None

    async def close(self) -> None:
        """Release clients and connections; idempotent."""
