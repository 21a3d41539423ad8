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

from populations.records import Action, Proposal
from populations.tree import SearchTree


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentContext:
    """What an agent may see when it proposes: its own tree and the task, never test labels.

    `rng` is derived from (run seed, agent, step), so a resumed run proposes exactly what the
    interrupted one would have.
    """

    tree: SearchTree
    rng: random.Random
    task_description: str
    alphabet: tuple[str, ...]
    length: int


class BaseAgent(ABC):
    """One research agent. Concurrency: `propose` may be awaited for several actions at once."""

    name: str
    kind: str

    @abstractmethod
    async def propose(self, action: Action, context: AgentContext) -> Proposal:
        """Plan and solution for `action`; failures come back as `Proposal.error`, not raised."""

    async def close(self) -> None:
        """Release clients and connections; idempotent."""
