"""Errors raised by the archive.

Every error that leaves `store` is a `StoreError`; a `sqlalchemy.exc.SQLAlchemyError` never does.
The `Archive` translates driver and SQLAlchemy errors at its single transaction boundary and chains
the original (``raise StoreError(...) from exc``), so the cause stays visible in tracebacks.

Caller mistakes (a FAILED status where PENDING is required, a test outcome passed as a validation
outcome) raise `ValueError` naming the argument instead; they are bugs, not archive states.

Exception tree::

    StoreError
    ├── ArchiveNotFoundError      no archive at the given path or URL
    ├── SchemaVersionError        the stored schema revision is not the one this code knows as head
    ├── ReadOnlyError             a write method was called on a read-only archive
    ├── DuplicateNodeError        the nodes of an agent step were already written
    ├── NodeFinishedError         a finished node was asked to change
    ├── UnknownNodeError          no node has the given id
    └── UnknownRunError           no run has the given id (or there is no run at all)
"""

from __future__ import annotations

__all__ = [
    "ArchiveNotFoundError",
    "DuplicateNodeError",
    "NodeFinishedError",
    "ReadOnlyError",
    "SchemaVersionError",
    "StoreError",
    "UnknownNodeError",
    "UnknownRunError",
]


class StoreError(Exception):
    """Root of the archive's errors.

    Raised as such when the database fails in a way no subclass names: a lost connection, a disk
    error, a constraint the caller could not have known about. The SQLAlchemy error is chained.
    """


class ArchiveNotFoundError(StoreError):
    """Raised by `Archive.open` when the SQLite file does not exist, or the database holds no
    aira schema at all. The file is never created as a side effect: use `Archive.create`."""


class SchemaVersionError(StoreError):
    """Raised when opening a database whose stored Alembic revision differs from this code's head.

    Nothing is written before it is raised. An older (known) revision can be upgraded with
    ``aira db upgrade``; a newer or unknown one was written by a newer aira and is left alone.

    Attributes:
        stored: The revision found in the database (None if the version table is empty).
        head: The newest revision this code knows.
        newer: True when `stored` is not a revision this code knows (assumed newer).
    """

    def __init__(self, *, stored: str | None, head: str, newer: bool, where: str) -> None:
        self.stored = stored
        self.head = head
        self.newer = newer
        if newer:
            message = (
                f"{where}: this database was written by a newer aira "
                f"(schema {stored}, this aira knows up to {head}); upgrade aira to open it"
            )
        else:
            message = (
                f"{where}: database schema is {stored or 'empty'}, this aira needs {head}; "
                f"run `aira db upgrade --db {where}`"
            )
        super().__init__(message)


class ReadOnlyError(StoreError):
    """Raised by every write method of an archive opened with ``read_only=True``, before the
    database is touched."""


class DuplicateNodeError(StoreError):
    """Raised by `Archive.add_nodes` when nodes for the same (agent, step) already exist, so a
    step replayed after a crash cannot be stored twice. Nothing of the batch is written."""


class NodeFinishedError(StoreError):
    """Raised when a finished (COMPLETE or FAILED) node is asked to finish again or to run.

    A finished node is immutable; the transaction that raised it is rolled back whole, so the
    node, its evaluation and the policy statistics are exactly as before the call."""


class UnknownNodeError(StoreError, LookupError):
    """Raised when a node id does not exist in the archive."""


class UnknownRunError(StoreError, LookupError):
    """Raised when a run id does not exist, or the latest run is asked for and there is none."""
