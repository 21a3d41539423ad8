"""Retries with backoff for one LLM call, under one deadline.

`call_with_retries` runs attempts of a client call until one succeeds, a failure is not worth
retrying, the retries are used up, or the call's deadline would pass. Between attempts it waits
``min(backoff_max_s, backoff_s * 2**k)`` with full jitter, or — when the server sent
``Retry-After`` on a 429 or 5xx — what the server asked (capped by `max_retry_after_s`). Every
attempt has its own timeout and the whole call a deadline: nothing waits without a bound.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aira_async.agents.llm.clients import LLMCallError

__all__ = ["CallFailed", "RetryPolicy", "call_with_retries"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How one call is retried. Times in seconds."""

    timeout_s: float = 120.0
    deadline_s: float = 600.0
    max_retries: int = 6
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 120.0

    def wait_s(self, retry: int, error: LLMCallError, rng: random.Random) -> float:
        """The pause before retry number `retry` (1-based) after `error`."""
        if error.retry_after_s is not None:
            return min(error.retry_after_s, self.max_retry_after_s)
        ceiling = min(self.backoff_max_s, self.backoff_s * 2 ** (retry - 1))
        return rng.uniform(0.0, ceiling)


class CallFailed(Exception):
    """Raised when a call failed for good; `retries` attempts were made after the first."""

    def __init__(self, message: str, *, retries: int, status: int | None = None) -> None:
        super().__init__(message)
        self.retries = retries
        self.status = status


async def call_with_retries(
    attempt: Callable[[float], Awaitable[T]],
    policy: RetryPolicy,
    *,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
    what: str = "llm call",
) -> tuple[T, int]:
    """Run `attempt(timeout_s)` until it succeeds; return its result and the number of retries.

    Args:
        attempt: one try, given the seconds it may take; raises `LLMCallError` on failure.
        policy: timeouts, deadline and backoff.
        rng: jitter source (a private one by default; jitter never affects results).
        clock: monotonic time, for tests.
        what: a label for log lines.

    Raises:
        CallFailed: the failure was not retryable, the retries ran out, or the deadline passed.
    """
    rng = rng or random.Random()
    deadline = clock() + policy.deadline_s
    retries = 0
    while True:
        left = deadline - clock()
        if left <= 0:
            raise CallFailed(
                f"deadline of {policy.deadline_s:g} s passed after {retries} retries",
                retries=retries,
            )
        budget = min(policy.timeout_s, left)
        try:
            async with asyncio.timeout(budget):
                return await attempt(budget), retries
        except TimeoutError:
            error = LLMCallError(f"timed out after {budget:.3g} s", retryable=True)
        except LLMCallError as exc:
            error = exc
        if not error.retryable:
            raise CallFailed(str(error), retries=retries, status=error.status) from error
        if retries >= policy.max_retries:
            raise CallFailed(
                f"gave up after {retries} retries: {error}", retries=retries, status=error.status
            ) from error
        retries += 1
        pause = policy.wait_s(retries, error, rng)
        if clock() + pause >= deadline:
            raise CallFailed(
                f"deadline of {policy.deadline_s:g} s would pass while waiting {pause:.3g} s"
                f" to retry ({error})",
                retries=retries - 1,
                status=error.status,
            ) from error
        log.info("%s: %s; retry %d in %.2f s", what, error, retries, pause)
        await asyncio.sleep(pause)
