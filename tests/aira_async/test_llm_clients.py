"""The real OpenAI and Anthropic SDK clients against the local test server: faults and retries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from aira_async.agents.llm import (
    AnthropicClient,
    BaseChatClient,
    CallFailed,
    ChatRequest,
    LLMCallError,
    OpenAIClient,
    RetryPolicy,
    call_with_retries,
)
from tests.aira_async.llm_server import ArrangementScript, ScriptedLLMServer

REQUEST = ChatRequest(
    model="test-model",
    system="You design arrangements.",
    messages=(("user", "Operator: DRAFT. Propose one."),),
    max_tokens=256,
    temperature=0.7,
    headers={"X-Aira-Request-Key": "key-1"},
)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedLLMServer]:
    srv = ScriptedLLMServer(ArrangementScript(length=4, alphabet=("mA", "M"), bad_every=10**9))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def _clients(server: ScriptedLLMServer) -> list[BaseChatClient]:
    return [
        OpenAIClient(api_key="test", base_url=server.openai_url),
        AnthropicClient(api_key="test", base_url=server.anthropic_url),
        OpenAIClient(api_key="test", base_url=server.openai_url, provider="openai-compatible"),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["openai", "anthropic", "compatible"])
async def test_reply_and_every_fault(server: ScriptedLLMServer, index: int) -> None:
    client = _clients(server)[index]
    try:
        reply = await client.complete(REQUEST, timeout_s=10)
        assert reply.text and reply.tokens_in > 0 and reply.tokens_out > 0
        assert reply.response["model"] == "test-model"
        for fault, status in [("429", 429), ("500", 500), ("drop", None), ("malformed", None),
                              ("truncated", None)]:  # fmt: skip
            server.inject(fault, retry_after_s=0.25)
            with pytest.raises(LLMCallError) as caught:
                await client.complete(REQUEST, timeout_s=10)
            assert caught.value.retryable, fault
            assert caught.value.status == status
            assert caught.value.retry_after_s == (0.25 if fault == "429" else None)
        await server.restart(gap_s=0.05)
        assert (await client.complete(REQUEST, timeout_s=10)).text
    finally:
        await client.close()
    assert server.served["key-1"] == 2


async def test_retries_honour_retry_after_and_count(server: ScriptedLLMServer) -> None:
    client = OpenAIClient(api_key="test", base_url=server.openai_url)
    policy = RetryPolicy(timeout_s=5, deadline_s=30, max_retries=6, backoff_s=0.01)
    server.inject("429", 2, retry_after_s=0.2)
    server.inject("500")
    server.inject("drop")
    started = time.monotonic()
    try:
        reply, retries = await call_with_retries(
            lambda t: client.complete(REQUEST, timeout_s=t), policy
        )
    finally:
        await client.close()
    assert reply.text and retries == 4
    assert time.monotonic() - started >= 0.4  # two Retry-After waits of 0.2 s
    assert server.outcomes["429"] == 2 and server.outcomes["ok"] == 1


async def test_retries_run_out_and_deadline() -> None:
    attempts = 0

    async def failing(timeout_s: float) -> str:
        nonlocal attempts
        attempts += 1
        raise LLMCallError("HTTP 503", retryable=True, status=503)

    policy = RetryPolicy(timeout_s=1, deadline_s=10, max_retries=2, backoff_s=0.001)
    with pytest.raises(CallFailed, match="gave up after 2 retries") as caught:
        await call_with_retries(failing, policy)
    assert caught.value.retries == 2 and attempts == 3

    async def refused(timeout_s: float) -> str:
        raise LLMCallError("HTTP 401", retryable=False, status=401)

    with pytest.raises(CallFailed, match="401") as refused_info:
        await call_with_retries(refused, policy)
    assert refused_info.value.retries == 0

    async def slow(timeout_s: float) -> str:
        await asyncio.sleep(10)
        return "late"

    tight = RetryPolicy(timeout_s=1e-6, deadline_s=0.05, max_retries=100, backoff_s=0.001)
    with pytest.raises(CallFailed, match="deadline"):
        await call_with_retries(slow, tight)


async def test_concurrency_limit_per_provider(server: ScriptedLLMServer) -> None:
    server.latency_s = 0.1
    client = OpenAIClient(api_key="test", base_url=server.openai_url)
    limit = asyncio.Semaphore(2)

    async def one() -> None:
        async with limit:
            await client.complete(REQUEST, timeout_s=10)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(6):
                group.create_task(one())
    finally:
        await client.close()
    assert server.max_in_flight == 2 and server.outcomes["ok"] == 6
