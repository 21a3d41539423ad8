"""The one engine factory of the archive.

`make_engine` turns a path or a database URL into a SQLAlchemy `Engine`:

* A plain path (``runs/mad.db``) or a ``sqlite:///`` URL gives an SQLite file in WAL mode. Every
  new connection gets ``journal_mode=WAL``, ``foreign_keys=ON``, ``busy_timeout`` and
  ``synchronous=NORMAL`` (durable at every commit against a process crash; a power cut may lose
  the last commits but never corrupts the file).
* ``read_only=True`` on SQLite opens ``file:PATH?mode=ro`` as a URI: the reader can neither create
  the file nor write to it, and in WAL mode it never blocks the writer (readers cannot hurt it).
* ``sqlite://`` (in memory) uses one shared connection (`StaticPool`): single-threaded use only,
  for tests.
* Any other URL (``postgresql+psycopg://...``) passes through unchanged.

Transactions: the pysqlite driver's own transaction handling is switched off and the engine emits
``BEGIN IMMEDIATE`` (writer) or ``BEGIN`` (reader) itself, so every unit of work is one real SQLite
transaction: reads inside a write see a consistent state, and the writer takes the write lock up
front instead of failing to upgrade a read lock.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

__all__ = ["BUSY_TIMEOUT_MS", "is_memory", "make_engine", "sqlite_path", "to_url"]

BUSY_TIMEOUT_MS = 30_000
"""How long an SQLite connection waits for a lock before failing with "database is locked"."""


def to_url(url_or_path: str | Path | URL) -> URL:
    """Return the SQLAlchemy URL for a URL string, a `URL`, or a plain filesystem path.

    A string without ``://`` is a path; it becomes an absolute ``sqlite:///`` URL.
    """
    if isinstance(url_or_path, URL):
        return url_or_path
    text = str(url_or_path)
    if isinstance(url_or_path, Path) or "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    return make_url(text)


def is_memory(url: URL) -> bool:
    """Whether `url` names an in-memory SQLite database."""
    if not url.drivername.startswith("sqlite"):
        return False
    database = url.database or ""
    return (
        database in ("", ":memory:")
        or "mode=memory" in database
        or (url.query.get("mode") == "memory")
    )


def sqlite_path(url: URL) -> Path | None:
    """The file an SQLite URL points at, or None for other databases and in-memory SQLite."""
    if not url.drivername.startswith("sqlite") or is_memory(url):
        return None
    database = url.database or ""
    if database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
    return Path(database)


def make_engine(url_or_path: str | Path | URL, *, read_only: bool = False) -> Engine:
    """Create the engine for an archive.

    Args:
        url_or_path: A filesystem path (SQLite) or a SQLAlchemy database URL.
        read_only: Open SQLite with ``mode=ro`` (never creates the file; writes fail in the
            driver). For other databases it only marks intent: the `Archive` refuses writes.

    Returns:
        An engine whose connections are configured as the module docstring says. The caller owns
        it and must `dispose()` it.
    """
    url = to_url(url_or_path)
    if not url.drivername.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    if is_memory(url):
        engine = create_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    elif read_only:
        path = sqlite_path(url)
        assert path is not None  # not in memory, so it has a path
        # A URI filename: characters that mean something in a URI must be percent-encoded.
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        # The URL only names the file (for messages and pool choice); `creator` connects.
        engine = create_engine(
            URL.create("sqlite", database=str(path)),
            creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
        )
    else:
        engine = create_engine(url, connect_args={"check_same_thread": False})
    _install_sqlite_hooks(engine, read_only=read_only)
    return engine


def _install_sqlite_hooks(engine: Engine, *, read_only: bool) -> None:
    begin_sql = "BEGIN" if read_only else "BEGIN IMMEDIATE"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from pysqlite; `_do_begin` below emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not read_only:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            if read_only:
                cursor.execute("PRAGMA query_only=ON")
        finally:
            cursor.close()

    def _do_begin(dbapi_connection: Any) -> None:
        dbapi_connection.execute(begin_sql)

    # The dialect's begin hook rather than a "begin" ConnectionEvents listener: any connection
    # event listener switches on event dispatch for every statement the engine runs, which
    # costs about a fifth of the writer's time per node. Each engine owns its dialect instance.
    engine.dialect.do_begin = _do_begin  # type: ignore[method-assign]
