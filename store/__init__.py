"""store: the durable archive of aira runs (SQLite in WAL mode by default, PostgreSQL by URL).

Open it with `Archive.create` (the daemon) or `Archive.open` (``read_only=True`` for `query`,
`status` and the dashboard). Every method is one transaction and returns frozen records.
"""

from __future__ import annotations

from store.archive import Archive
from store.engine import make_engine
from store.errors import (
    ArchiveNotFoundError,
    DuplicateNodeError,
    NodeFinishedError,
    ReadOnlyError,
    SchemaVersionError,
    StoreError,
    UnknownNodeError,
    UnknownRunError,
)
from store.llm_calls import LLMCallRecord
from store.migrants import MigrationRecord, NewMigration
from store.records import (
    AgentRecord,
    EventRecord,
    IslandRecord,
    NewNode,
    RunRecord,
    RunStatus,
    RunTotals,
)
from store.schema import create_schema, current_revision, head_revision, upgrade

__all__ = [
    "AgentRecord",
    "Archive",
    "ArchiveNotFoundError",
    "DuplicateNodeError",
    "EventRecord",
    "IslandRecord",
    "LLMCallRecord",
    "MigrationRecord",
    "NewMigration",
    "NewNode",
    "NodeFinishedError",
    "ReadOnlyError",
    "RunRecord",
    "RunStatus",
    "RunTotals",
    "SchemaVersionError",
    "StoreError",
    "UnknownNodeError",
    "UnknownRunError",
    "create_schema",
    "current_revision",
    "head_revision",
    "make_engine",
    "upgrade",
]
