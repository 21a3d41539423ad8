"""What the LLM agents of one run share: the reply cache, the ledger, retries and rate limits.

`LLMRuntime` is built once per run by the daemon and reaches every agent through
`AgentContext.llm`. It holds:

- `calls`: the reply cache, an async `get(request_key)` / `put(record)` handle. The archive-backed
  one (`ArchiveCalls`) goes through the daemon's single archive writer thread, so a reply is
  committed before the agent reads it; `MemoryCalls` serves tests and runs without an archive;
- `ledger`: dollars spent and booked, and the $ cap;
- `retry`: the retry policy built from `[llm]`;
- one semaphore per provider, bounding the calls in flight (`llm.concurrency`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from aira_async.agents.llm.clients import preload_sdks
from aira_async.agents.llm.ledger import Ledger, PriceTable
from aira_async.agents.llm.retry import RetryPolicy
from aira_async.archive_io import ArchiveWriter
from aira_async.config import LLMConfig
from store import LLMCallRecord

__all__ = ["ArchiveCalls", "CallStore", "LLMRuntime", "MemoryCalls"]


class CallStore(Protocol):
    """The reply cache. `put` returns what is stored: an earlier call under the same key wins."""

    async def get(self, request_key: str) -> LLMCallRecord | None: ...

    async def put(self, record: LLMCallRecord) -> LLMCallRecord: ...


class ArchiveCalls:
    """The reply cache of one run in the archive, through the daemon's writer thread."""

    def __init__(self, writer: ArchiveWriter, run_id: int) -> None:
        self._writer = writer
        self._run_id = run_id

    async def get(self, request_key: str) -> LLMCallRecord | None:
        archive = self._writer.archive
        return await self._writer.call(archive.llm_call, self._run_id, request_key)

    async def put(self, record: LLMCallRecord) -> LLMCallRecord:
        if record.run_id != self._run_id:
            raise ValueError(f"record of run {record.run_id} put into run {self._run_id}")
        return await self._writer.call(self._writer.archive.put_llm_call, record)


class MemoryCalls:
    """An in-memory reply cache (tests; agents used without a daemon)."""

    def __init__(self) -> None:
        self.records: dict[str, LLMCallRecord] = {}

    async def get(self, request_key: str) -> LLMCallRecord | None:
        return self.records.get(request_key)

    async def put(self, record: LLMCallRecord) -> LLMCallRecord:
        return self.records.setdefault(record.request_key, record)


class LLMRuntime:
    """Shared LLM services of one run (see the module docstring). One event loop only.

    Args:
        config: the `[llm]` section.
        run_id: the run whose calls are cached (part of every request key).
        calls: the reply cache.
        spent_usd: dollars already spent by the run (on resume).
        on_cap: called once when the $ cap is reached (the daemon's `request_stop`).
    """

    def __init__(
        self,
        config: LLMConfig,
        *,
        run_id: int,
        calls: CallStore,
        spent_usd: float = 0.0,
        on_cap: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.run_id = run_id
        self.calls = calls
        self.ledger = Ledger(
            PriceTable(config.prices),
            cap_usd=config.cost_cap_usd,
            spent_usd=spent_usd,
            on_cap=on_cap,
        )
        self.retry = RetryPolicy(
            timeout_s=config.timeout_s,
            deadline_s=config.deadline_s,
            max_retries=config.max_retries,
            backoff_s=config.backoff_s,
            backoff_max_s=config.backoff_max_s,
            max_retry_after_s=config.max_retry_after_s,
        )
        self._limits: dict[str, asyncio.Semaphore] = {}
        self.n_replayed = 0
        self.n_paid = 0

    def limit(self, provider: str) -> asyncio.Semaphore:
        """The semaphore bounding calls in flight to `provider`."""
        found = self._limits.get(provider)
        if found is None:
            found = self._limits[provider] = asyncio.Semaphore(self.config.limit(provider))
        return found

    @classmethod
    async def for_run(
        cls,
        config: LLMConfig,
        writer: ArchiveWriter,
        run_id: int,
        *,
        on_cap: Callable[[str], None] | None = None,
    ) -> LLMRuntime:
        """The runtime of a run stored in the archive; its ledger starts from the stored spend."""
        await asyncio.to_thread(preload_sdks)
        spent = await writer.call(writer.archive.llm_spent_usd, run_id)
        return cls(
            config,
            run_id=run_id,
            calls=ArchiveCalls(writer, run_id),
            spent_usd=spent,
            on_cap=on_cap,
        )
