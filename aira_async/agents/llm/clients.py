"""Chat clients on the official async SDKs: OpenAI, Anthropic, and OpenAI-compatible servers.

A client sends one `ChatRequest` and returns one `ChatReply`, or raises `LLMCallError` saying
whether the failure is worth retrying and after how long the server asked us to wait. It makes
exactly one attempt: the SDKs' own retries are switched off (``max_retries=0``) so that retries,
their backoff, their count and the deadline are all decided in one place (`retry.py`).

OpenAI-compatible servers (vLLM, llama.cpp server, ollama) speak the chat-completions protocol at
their own base URL; they share `OpenAIClient`.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aira_async.errors import AiraError, ConfigError

if TYPE_CHECKING:  # the SDKs take seconds to import: only runs with LLM agents pay for it
    import anthropic
    import openai

__all__ = [
    "DEFAULT_KEY_ENV",
    "AnthropicClient",
    "BaseChatClient",
    "ChatReply",
    "ChatRequest",
    "LLMCallError",
    "OpenAIClient",
    "api_key_for",
    "make_client",
    "preload_sdks",
]

DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
"""Where a provider's key is read when `api_key_env` is not set (openai-compatible: none)."""

_NO_KEY = "not-needed"  # local OpenAI-compatible servers accept any key
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


class LLMCallError(AiraError):
    """Raised by a client when one attempt fails.

    Attributes:
        retryable: a later attempt may succeed (429, 5xx, timeouts, dropped connections,
            unreadable bodies); False for requests the server refuses (400, 401, 403, 404...).
        retry_after_s: the wait the server asked for (``Retry-After``), if any.
        status: the HTTP status, if a response arrived.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    """One chat call: a system prompt, user/assistant turns and the model's settings.

    `temperature` and `top_p` are sent only when `sampling` is True (some models reject them).
    `json_schema`, when set, asks for structured output matching it (Analyze).
    """

    model: str
    system: str
    messages: tuple[tuple[str, str], ...]
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    sampling: bool = True
    json_schema: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def sampling_params(self) -> dict[str, float]:
        if not self.sampling:
            return {}
        params = {"temperature": self.temperature, "top_p": self.top_p}
        return {k: v for k, v in params.items() if v is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatReply:
    """The text of one reply, its token counts, why it stopped, and the raw response (JSON)."""

    text: str
    tokens_in: int
    tokens_out: int
    finish_reason: str | None
    response: Mapping[str, Any]


class BaseChatClient(ABC):
    """One provider endpoint. Concurrency: `complete` may be awaited many times at once."""

    provider: str

    @abstractmethod
    async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatReply:
        """One attempt, bounded by `timeout_s`. Raises `LLMCallError` on any failure."""

    @abstractmethod
    async def close(self) -> None:
        """Close the HTTP connections; idempotent."""


def preload_sdks() -> None:
    """Import both SDKs (seconds of CPU); the daemon runs this in a thread before agents start,
    so the first call never blocks the event loop on an import."""
    import anthropic  # noqa: F401
    import openai  # noqa: F401


def api_key_for(provider: str, api_key_env: str | None, *, where: str) -> str:
    """The API key of an agent, read from its environment variable (only at config time).

    Raises:
        ConfigError: naming the variable, when it is not set (or empty).
    """
    env = api_key_env if api_key_env is not None else DEFAULT_KEY_ENV.get(provider)
    if not env:
        return _NO_KEY
    key = os.environ.get(env, "")
    if not key:
        raise ConfigError(
            f"{where}: the environment variable {env} is not set"
            f" (it holds the API key for provider {provider!r})"
        )
    return key


def make_client(provider: str, *, api_key: str, base_url: str | None) -> BaseChatClient:
    """A client for `provider` ("openai", "anthropic" or "openai-compatible")."""
    if provider == "anthropic":
        return AnthropicClient(api_key=api_key, base_url=base_url)
    if provider in ("openai", "openai-compatible"):
        return OpenAIClient(api_key=api_key, base_url=base_url, provider=provider)
    raise ValueError(f"provider: unknown provider {provider!r}")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` (or ``retry-after-ms``) header; dates are not honoured."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


def _status_error(exc: openai.APIStatusError | anthropic.APIStatusError) -> LLMCallError:
    status = exc.status_code
    retryable = status in _RETRYABLE_STATUS or status >= 500
    return LLMCallError(
        f"HTTP {status}: {str(exc)[:300]}",
        retryable=retryable,
        retry_after_s=_retry_after(exc.response.headers),
        status=status,
    )


class OpenAIClient(BaseChatClient):
    """Chat completions through `openai.AsyncOpenAI` (OpenAI or any compatible server)."""

    def __init__(self, *, api_key: str, base_url: str | None, provider: str = "openai") -> None:
        self.provider = provider
        self._api_key = api_key
        self._base_url = base_url
        self._sdk: openai.AsyncOpenAI | None = None  # made at first use, on the event loop

    @property
    def _client(self) -> openai.AsyncOpenAI:
        import openai

        if self._sdk is None:
            self._sdk = openai.AsyncOpenAI(
                api_key=self._api_key, base_url=self._base_url, max_retries=0
            )
        return self._sdk

    async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatReply:
        import openai

        messages: list[Any] = [{"role": "system", "content": request.system}]
        messages += [{"role": role, "content": text} for role, text in request.messages]
        extra: dict[str, Any] = dict(request.sampling_params())
        if request.json_schema is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "analysis", "schema": dict(request.json_schema),
                                "strict": True},
            }  # fmt: skip
        try:
            completion = await self._client.chat.completions.create(
                model=request.model,
                messages=messages,
                max_tokens=request.max_tokens,
                timeout=timeout_s,
                extra_headers=dict(request.headers),
                **extra,
            )
        except openai.APIStatusError as exc:
            raise _status_error(exc) from exc
        except openai.APITimeoutError as exc:
            raise LLMCallError(f"timed out after {timeout_s:g} s", retryable=True) from exc
        except openai.APIConnectionError as exc:
            raise LLMCallError(f"connection failed: {exc}", retryable=True) from exc
        except (openai.APIResponseValidationError, ValueError) as exc:  # unreadable body
            raise LLMCallError(f"malformed response: {str(exc)[:200]}", retryable=True) from exc
        if not completion.choices:
            raise LLMCallError("malformed response: no choices", retryable=True)
        choice = completion.choices[0]
        usage = completion.usage
        return ChatReply(
            text=choice.message.content or "",
            tokens_in=usage.prompt_tokens if usage is not None else 0,
            tokens_out=usage.completion_tokens if usage is not None else 0,
            finish_reason=choice.finish_reason,
            response=_jsonable(completion.model_dump(mode="json")),
        )

    async def close(self) -> None:
        sdk, self._sdk = self._sdk, None
        if sdk is not None:
            await sdk.close()


class AnthropicClient(BaseChatClient):
    """The messages API through `anthropic.AsyncAnthropic`."""

    provider = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._sdk: anthropic.AsyncAnthropic | None = None  # made at first use, on the event loop

    @property
    def _client(self) -> anthropic.AsyncAnthropic:
        import anthropic

        if self._sdk is None:
            self._sdk = anthropic.AsyncAnthropic(
                api_key=self._api_key, base_url=self._base_url, max_retries=0
            )
        return self._sdk

    async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatReply:
        import anthropic

        messages: list[Any] = [{"role": role, "content": text} for role, text in request.messages]
        extra: dict[str, Any] = {}
        sampling = request.sampling_params()
        if sampling:  # the typed signature of recent SDKs omits them; the API still takes them
            extra["extra_body"] = sampling
        if request.json_schema is not None:
            extra["output_config"] = {
                "format": {"type": "json_schema", "schema": dict(request.json_schema)}
            }
        try:
            message = await self._client.messages.create(
                model=request.model,
                system=request.system,
                messages=messages,
                max_tokens=request.max_tokens,
                timeout=timeout_s,
                extra_headers=dict(request.headers),
                **extra,
            )
        except anthropic.APIStatusError as exc:
            raise _status_error(exc) from exc
        except anthropic.APITimeoutError as exc:
            raise LLMCallError(f"timed out after {timeout_s:g} s", retryable=True) from exc
        except anthropic.APIConnectionError as exc:
            raise LLMCallError(f"connection failed: {exc}", retryable=True) from exc
        except (anthropic.APIResponseValidationError, ValueError) as exc:
            raise LLMCallError(f"malformed response: {str(exc)[:200]}", retryable=True) from exc
        text = "".join(getattr(block, "text", "") for block in message.content or [])
        return ChatReply(
            text=text,
            tokens_in=message.usage.input_tokens,
            tokens_out=message.usage.output_tokens,
            finish_reason=message.stop_reason,
            response=_jsonable(message.model_dump(mode="json")),
        )

    async def close(self) -> None:
        sdk, self._sdk = self._sdk, None
        if sdk is not None:
            await sdk.close()


def _jsonable(value: Any) -> dict[str, Any]:
    """The response as plain JSON (what the archive stores)."""
    loaded = json.loads(json.dumps(value, default=str))
    return loaded if isinstance(loaded, dict) else {"value": loaded}
