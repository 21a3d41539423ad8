"""`LLMAgent`: an agent whose Draft, Improve, Debug and Analyze operators call an LLM.

One call, in order (`LLMAgent._call`):

1. build the prompt (`prompts`) and its request key: a hash of the prompt messages, provider,
   model, settings and the call's identity (run, agent, step, slot, operator, parent, attempt;
   for Analyze, the node);
2. look the key up in the run's reply cache; a stored call is replayed, at no cost;
3. otherwise book its largest cost with the ledger (refused past the $ cap), wait for a slot of
   the provider's concurrency limit, and call with retries under the call's deadline;
4. store the call (reply or failure, tokens, $, latency, retries) through the archive writer,
   committed *before* the reply is parsed or used;
5. parse the reply (`parsing`). Every failure — refused by the cap, failed for good, unparsable —
   becomes `Proposal.error` (a buggy node Debug may repair); `propose` never raises.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from aira_async.agents.base import AgentContext, BaseAgent
from aira_async.agents.llm.clients import BaseChatClient, ChatReply, ChatRequest
from aira_async.agents.llm.ledger import CostCapReached
from aira_async.agents.llm.parsing import Analysis, parse_analysis, parse_solution
from aira_async.agents.llm.prompts import ANALYSIS_SCHEMA, analysis_messages, solution_messages
from aira_async.agents.llm.retry import CallFailed, call_with_retries
from aira_async.agents.llm.runtime import LLMRuntime, MemoryCalls
from aira_async.config import LLMConfig
from populations.records import Action, EvalOutcome, NodeRecord, Proposal
from store import LLMCallRecord

__all__ = ["LLMAgent", "LLMSettings", "request_key"]

log = logging.getLogger(__name__)

REQUEST_KEY_HEADER = "X-Aira-Request-Key"
"""Sent with every call, so a server (or a proxy's log) can count requests by key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMSettings:
    """One agent's model and its settings (from its `[[agents]]` entry)."""

    provider: str
    model: str
    base_url: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int = 4096
    sampling: bool = True
    structured_output: bool = True
    analyze: bool = False
    memory_limit: int = 20


def request_key(identity: dict[str, Any], settings: LLMSettings, request: ChatRequest) -> str:
    """The deterministic key of one call: same prompt, model, settings and place → same key."""
    payload = {
        "identity": identity,
        "provider": settings.provider,
        "base_url": settings.base_url,
        "model": request.model,
        "system": request.system,
        "messages": [list(m) for m in request.messages],
        "max_tokens": request.max_tokens,
        "sampling": request.sampling_params(),
        "schema": request.json_schema,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _prompt_hash(request: ChatRequest) -> str:
    blob = json.dumps([request.system, [list(m) for m in request.messages]])
    return hashlib.sha256(blob.encode()).hexdigest()


class LLMAgent(BaseAgent):
    """An LLM research agent (see the module docstring).

    Args:
        name: the agent's name in the run.
        client: the provider's chat client (the agent owns it and closes it).
        settings: model and settings.
        kind: what `aira status` shows for it.
    """

    def __init__(
        self, name: str, client: BaseChatClient, settings: LLMSettings, *, kind: str = "llm"
    ) -> None:
        self.name = name
        self.kind = kind
        self.client = client
        self.settings = settings
        self._standalone: LLMRuntime | None = None

    # ----------------------------------------------------------------------------- operators
    async def propose(self, action: Action, context: AgentContext) -> Proposal:
        try:
            system, messages = solution_messages(
                action,
                context.tree,
                task=context.task_description,
                alphabet=context.alphabet,
                length=context.length,
                memory_limit=self.settings.memory_limit,
                slot=context.slot,
                n_slots=context.n_slots,
            )
        except (KeyError, ValueError) as exc:
            return Proposal(action=action, text="", error=f"cannot build the prompt: {exc}")
        identity = {
            "run": context.run_id,
            "agent": self.name,
            "step": context.step,
            "slot": context.slot,
            "operator": action.operator.value,
            "parent": action.parent_id,
            "attempt": 0,
        }
        record = await self._call(context, system, messages, identity, action.operator.value)
        if record is None:
            return Proposal(action=action, text="", error="llm call refused: cost cap reached")
        if not record.ok or record.reply is None:
            return Proposal(
                action=action,
                text="",
                error=f"llm call failed: {record.error}",
                tokens_in=record.tokens_in,
                tokens_out=record.tokens_out,
                cost_usd=record.cost_usd,
            )
        finish = record.response.get("finish_reason")
        parsed = parse_solution(
            record.reply,
            alphabet=context.alphabet,
            length=context.length,
            finish_reason=finish if isinstance(finish, str) else None,
        )
        return Proposal(
            action=action,
            text=parsed.text,
            plan=parsed.plan,
            error=parsed.error,
            tokens_in=record.tokens_in,
            tokens_out=record.tokens_out,
            cost_usd=record.cost_usd,
        )

    async def analyze(
        self, record: NodeRecord, outcome: EvalOutcome, context: AgentContext
    ) -> Analysis | None:
        if not self.settings.analyze:
            return None
        system, messages = analysis_messages(
            record,
            task=context.task_description,
            status=outcome.status.value,
            score=outcome.score,
            metrics=outcome.metrics,
            error=outcome.error,
        )
        identity = {"run": context.run_id, "agent": self.name, "operator": "analyze",
                    "node": record.node_id, "attempt": 0}  # fmt: skip
        stored = await self._call(
            context, system, messages, identity, "analyze", node_id=record.node_id, schema=True
        )
        if stored is None or not stored.ok or stored.reply is None:
            return None
        try:
            return parse_analysis(stored.reply)
        except ValueError as exc:
            log.info("agent %s: analysis of node %d unreadable: %s", self.name,
                     record.node_id, exc)  # fmt: skip
            return None

    async def close(self) -> None:
        await self.client.close()

    # ------------------------------------------------------------------------------- calling
    def _runtime(self, context: AgentContext) -> LLMRuntime:
        if context.llm is not None:
            return context.llm
        if self._standalone is None:
            self._standalone = LLMRuntime(LLMConfig(), run_id=context.run_id, calls=MemoryCalls())
        return self._standalone

    async def _call(
        self,
        context: AgentContext,
        system: str,
        messages: tuple[tuple[str, str], ...],
        identity: dict[str, Any],
        operator: str,
        *,
        node_id: int | None = None,
        schema: bool = False,
    ) -> LLMCallRecord | None:
        """The stored call for this prompt and place: replayed, or made and stored first.

        Returns None when the $ cap refused the call (nothing was sent or stored).
        """
        runtime = self._runtime(context)
        s = self.settings
        request = ChatRequest(
            model=s.model,
            system=system,
            messages=messages,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            sampling=s.sampling,
            json_schema=ANALYSIS_SCHEMA if schema and s.structured_output else None,
        )
        key = request_key(identity, s, request)
        stored = await runtime.calls.get(key)
        if stored is not None:
            runtime.n_replayed += 1
            return stored
        request = dataclasses.replace(
            request, headers={**request.headers, REQUEST_KEY_HEADER: key}
        )
        prompt_chars = len(system) + sum(len(text) for _, text in messages)
        try:
            booking = runtime.ledger.reserve(
                self.name, runtime.ledger.estimate(s.model, prompt_chars, s.max_tokens)
            )
        except CostCapReached:
            return None
        reply: ChatReply | None = None
        error: str | None = None
        retries = 0
        started = time.monotonic()
        cost = 0.0
        try:
            async with runtime.limit(s.provider):
                started = time.monotonic()
                reply, retries = await call_with_retries(
                    lambda timeout_s: self.client.complete(request, timeout_s=timeout_s),
                    runtime.retry,
                    what=f"agent {self.name} {operator}",
                )
        except CallFailed as exc:
            error, retries = str(exc), exc.retries
            log.warning("agent %s: %s call failed: %s", self.name, operator, exc)
        finally:
            if reply is not None:
                cost = runtime.ledger.prices.cost(s.model, reply.tokens_in, reply.tokens_out)
            booking.settle(cost)
        runtime.n_paid += 1
        record = LLMCallRecord(
            run_id=runtime.run_id,
            agent_id=context.agent_id or None,
            node_id=node_id,
            request_key=key,
            prompt_hash=_prompt_hash(request),
            provider=s.provider,
            model=s.model,
            operator=operator,
            status="ok" if reply is not None else "error",
            reply=None if reply is None else reply.text,
            error=error,
            request={"identity": identity, "system": system,
                     "messages": [list(m) for m in messages],
                     "settings": {"max_tokens": s.max_tokens, **request.sampling_params()}},
            response={} if reply is None else {"finish_reason": reply.finish_reason,
                                               "raw": dict(reply.response)},
            tokens_in=0 if reply is None else reply.tokens_in,
            tokens_out=0 if reply is None else reply.tokens_out,
            cost_usd=cost,
            latency_s=time.monotonic() - started,
            retries=retries,
        )  # fmt: skip
        return await runtime.calls.put(record)
