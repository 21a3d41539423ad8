"""The event loop's door to the archive: one dedicated writer thread.

`Archive` methods are synchronous (SQLAlchemy); calling them on the event loop would block it.
`ArchiveWriter.call` runs each one on a single-thread executor, so there is exactly one writer,
writes are serialised in submission order, and the loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from store import Archive

P = ParamSpec("P")
T = TypeVar("T")


class ArchiveWriter:
    """Owns one `Archive`, opened and used only on its own thread."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aira-archive")
        self._archive: Archive | None = None

    async def open(self, url: str, *, create: bool) -> Archive:
        def _open() -> Archive:
            return Archive.create(url) if create else Archive.open(url)

        self._archive = await self._run(_open)
        return self._archive

    @property
    def archive(self) -> Archive:
        if self._archive is None:
            raise RuntimeError("ArchiveWriter.open() was not awaited")
        return self._archive

    async def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` (an `Archive` method) on the writer thread."""
        if asyncio.iscoroutinefunction(fn):
            raise TypeError(f"{fn!r} is a coroutine function; the writer runs synchronous calls")
        return await self._run(functools.partial(fn, *args, **kwargs))

    async def _run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    async def close(self) -> None:
        archive, self._archive = self._archive, None
        if archive is not None:
            await self._run(archive.close)
        self._executor.shutdown(wait=True)
