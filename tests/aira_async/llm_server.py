"""A local test server speaking the chat-completions (OpenAI) and messages (Anthropic) protocols.

Replies are scripted and deterministic: a function of the request body, never of arrival order,
so a run and its resumed continuation get the same reply for the same prompt. Faults are queued
with `inject` and consumed one request each, in order:

- ``"429"``: rate limited, with ``Retry-After`` (`retry_after_s`);
- ``"500"``: an internal error;
- ``"drop"``: the connection is closed without a response;
- ``"malformed"``: 200 with a body that is not JSON;
- ``"truncated"``: 200 whose body stops halfway (Content-Length promises more).

`restart` closes the listening socket and opens it again on the same port after a gap (a server
restart mid-run). Counters: `received` (every request by its ``X-Aira-Request-Key`` header),
`served` (200 replies with a complete body, i.e. paid), `outcomes` (per fault kind or "ok").
`ServerThread` runs one on its own thread and loop, for daemons in a subprocess.

Bound to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")
KEY_HEADER = "X-Aira-Request-Key"
Script = Callable[[str, dict[str, Any]], str]


def _rng(text: str) -> random.Random:
    return random.Random(hashlib.sha256(text.encode()).hexdigest())


class ArrangementScript:
    """Default replies: valid arrangements in the many forms models write, some bad ones.

    Args:
        length / alphabet: the task's search space.
        bad_every: about one Draft/Improve reply in `bad_every` has no valid arrangement (Debug
            replies are always valid, so Debug repairs them).
    """

    def __init__(self, *, length: int, alphabet: tuple[str, ...], bad_every: int = 6) -> None:
        self.length = length
        self.alphabet = alphabet
        self.bad_every = bad_every

    def __call__(self, prompt: str, body: dict[str, Any]) -> str:
        rng = _rng(prompt)
        if "Operator: ANALYZE" in prompt:
            return json.dumps(
                {"is_bug": False, "summary": "trained fine; attention early helps", "metric": 0.99}
            )
        layers = [rng.choice(self.alphabet) for _ in range(self.length)]
        plan = f"Idea {rng.randrange(1000)}: interleave mixers and MLPs, attention early."
        if "Operator: DEBUG" not in prompt and rng.randrange(self.bad_every) == 0:
            if rng.random() < 0.5:
                return f"PLAN: {plan}\nI think attention is all you need, so more of it."
            return f"PLAN: {plan}\nARRANGEMENT:\n```\n{' '.join(layers[:-1])}\n```"
        style = rng.randrange(8)
        spaced = " ".join(layers)
        if style == 0:
            return f"PLAN: {plan}\nARRANGEMENT:\n```\n{spaced}\n```"
        if style == 1:
            return f"Plan: {plan}\n\nArrangement: {', '.join(layers)}"
        if style == 2:
            return f"{plan}\nI suggest [{', '.join(layers)}] for this task."
        if style == 3:
            return f"plan: {plan}\narrangement: {spaced.lower()}"
        if style == 4:
            return json.dumps({"plan": plan, "arrangement": layers})
        if style == 5:
            return f"{plan}\n```text\n{spaced.upper()}\n```\nThat should do it."
        if style == 6:
            return f"Let me think. {plan}\n\nFinal answer: {spaced}"
        return f"PLAN: {plan}\nARRANGEMENT: " + ", ".join(f"'{x}'" for x in layers)


class ScriptedLLMServer:
    """The server (see the module docstring). Start it on a running loop with `start`."""

    def __init__(self, script: Script, *, latency_s: float = 0.0, port: int = 0) -> None:
        self.script = script
        self.latency_s = latency_s
        self.port = port
        self.faults: deque[tuple[str, float]] = deque()
        self.received: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.prompts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/messages", self._messages)
        self._app = app

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, kind: str, n: int = 1, *, retry_after_s: float = 0.1) -> None:
        if kind not in ("429", "500", "drop", "malformed", "truncated"):
            raise ValueError(f"unknown fault {kind!r}")
        self.faults.extend([(kind, retry_after_s)] * n)

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            server = site._server
            assert isinstance(server, asyncio.base_events.Server)
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def restart(self, gap_s: float = 0.5) -> None:
        """Close every connection and the socket; listen again on the same port after `gap_s`."""
        self.outcomes["restart"] += 1
        await self.stop()
        await asyncio.sleep(gap_s)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/messages", self._messages)
        self._app = app
        await self.start()

    # ---------------------------------------------------------------------------- handlers
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        return await self._answer(request, body, prompt, self._chat_body)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = (
            str(body.get("system", ""))
            + "\n"
            + "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        )
        return await self._answer(request, body, prompt, self._messages_body)

    async def _answer(
        self,
        request: web.Request,
        body: dict[str, Any],
        prompt: str,
        render: Callable[[dict[str, Any], str, str], dict[str, Any]],
    ) -> web.StreamResponse:
        key = request.headers.get(KEY_HEADER, "-")
        self.received[key] += 1
        self.prompts[hashlib.sha256(prompt.encode()).hexdigest()[:16]] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
        finally:
            self.in_flight -= 1
        fault, retry_after = self.faults.popleft() if self.faults else ("ok", 0.0)
        self.outcomes[fault] += 1
        if fault == "429":
            return web.json_response(
                {"error": {"type": "rate_limit_error", "message": "slow down"}},
                status=429,
                headers={"Retry-After": f"{retry_after:g}"},
            )
        if fault == "500":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if fault == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        if fault == "malformed":
            return web.Response(text="{not json", content_type="application/json")
        text = self.script(prompt, body)
        payload = json.dumps(render(body, prompt, text)).encode()
        if fault == "truncated":
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            response.content_length = len(payload)
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        self.served[key] += 1
        return web.Response(body=payload, content_type="application/json")

    @staticmethod
    def _chat_body(body: dict[str, Any], prompt: str, text: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "test"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": len(prompt) // 4,
                "completion_tokens": len(text) // 4,
                "total_tokens": len(prompt) // 4 + len(text) // 4,
            },
        }

    @staticmethod
    def _messages_body(body: dict[str, Any], prompt: str, text: str) -> dict[str, Any]:
        return {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "test"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": len(prompt) // 4, "output_tokens": len(text) // 4},
        }


class ServerThread:
    """A `ScriptedLLMServer` on its own thread and event loop (for daemons in subprocesses)."""

    def __init__(self, server: ScriptedLLMServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ScriptedLLMServer:
        self._thread.start()
        self.call(self.server.start())
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.call(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def snapshot(self) -> tuple[Counter[str], Counter[str], Counter[str]]:
        """Copies of (received, served, outcomes), taken on the server's loop."""

        async def take() -> tuple[Counter[str], Counter[str], Counter[str]]:
            s = self.server
            return Counter(s.received), Counter(s.served), Counter(s.outcomes)

        return self.call(take())
