"""Classical proposers (random search, regularised evolution) wrapped as agents.

They answer at once and cost nothing, so a population without API keys still searches; they are
also the baselines LLM agents are compared with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aira_async.agents.base import AgentContext, BaseAgent
from populations.proposers import BaseProposer, make_proposer
from populations.records import Action, Proposal


class ClassicalAgent(BaseAgent):
    """An agent whose proposals come from a pure `populations` proposer."""

    def __init__(self, name: str, proposer: BaseProposer, *, kind: str) -> None:
        self.name = name
        self.kind = kind
        self._proposer = proposer

    async def propose(self, action: Action, context: AgentContext) -> Proposal:
        return self._proposer.propose(action, context.tree, context.rng)


CLASSICAL = ("random", "evolution", "bo")


def make_classical_agent(
    name: str, proposer: str, params: Mapping[str, Any], *, alphabet: tuple[str, ...], length: int
) -> ClassicalAgent:
    """A classical agent by proposer name, searching `alphabet`^`length`."""
    return ClassicalAgent(
        name,
        make_proposer(proposer, alphabet=alphabet, length=length, **dict(params)),
        kind=proposer,
    )
