"""LLM research agents: OpenAI, Anthropic and OpenAI-compatible clients, operator prompts, reply
parsing, retries, the reply cache and the cost ledger.

`make_llm_agent` builds the agent of one `[[agents]]` entry with ``proposer = "llm"``; the daemon
builds one `LLMRuntime` per run and hands it to every agent through `AgentContext.llm`.
"""

from __future__ import annotations

from aira_async.agents.llm.agent import LLMAgent, LLMSettings, request_key
from aira_async.agents.llm.clients import (
    AnthropicClient,
    BaseChatClient,
    ChatReply,
    ChatRequest,
    LLMCallError,
    OpenAIClient,
    api_key_for,
    make_client,
)
from aira_async.agents.llm.ledger import CostCapReached, Ledger, PriceTable
from aira_async.agents.llm.parsing import Analysis, parse_analysis, parse_solution
from aira_async.agents.llm.retry import CallFailed, RetryPolicy, call_with_retries
from aira_async.agents.llm.runtime import ArchiveCalls, LLMRuntime, MemoryCalls
from aira_async.config import AgentConfig

__all__ = [
    "Analysis",
    "AnthropicClient",
    "ArchiveCalls",
    "BaseChatClient",
    "CallFailed",
    "ChatReply",
    "ChatRequest",
    "CostCapReached",
    "LLMAgent",
    "LLMCallError",
    "LLMRuntime",
    "LLMSettings",
    "Ledger",
    "MemoryCalls",
    "OpenAIClient",
    "PriceTable",
    "RetryPolicy",
    "call_with_retries",
    "make_client",
    "make_llm_agent",
    "parse_analysis",
    "parse_solution",
    "request_key",
]


def make_llm_agent(agent: AgentConfig) -> LLMAgent:
    """The LLM agent of one `[[agents]]` entry (``proposer = "llm"``).

    Its API key is read here, from `agent.api_key_env` (default: ``OPENAI_API_KEY`` or
    ``ANTHROPIC_API_KEY``; an openai-compatible server needs none unless `api_key_env` is set).

    Raises:
        ConfigError: the key's environment variable is not set; the message names it.
    """
    key = api_key_for(agent.provider, agent.api_key_env, where=f"agents.{agent.name}")
    settings = LLMSettings(
        provider=agent.provider,
        model=agent.model,
        base_url=agent.base_url,
        temperature=agent.temperature,
        top_p=agent.top_p,
        max_tokens=agent.max_tokens,
        sampling=agent.sampling,
        structured_output=agent.structured_output,
        analyze=agent.analyze,
        memory_limit=agent.memory_limit,
    )
    client = make_client(agent.provider, api_key=key, base_url=agent.base_url)
    return LLMAgent(agent.name, client, settings, kind=f"llm:{agent.provider}/{agent.model}")
