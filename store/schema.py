"""Schema versioning: Alembic, configured in code.

The revisions live in `store/migrations/versions/`; this module finds them through the package
folder, so it works from a source checkout and from an installed wheel alike, and never reads an
``alembic.ini``. Migrations run on a connection this module opens inside one transaction
(``config.attributes["connection"]``): a migration and its revision stamp commit together.

An archive is opened only when its stored revision equals `head_revision()`; `check_revision`
raises `SchemaVersionError` otherwise, before anything is written. ``aira db upgrade`` calls
`upgrade`.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import SQLAlchemyError

from store.engine import make_engine, sqlite_path, to_url
from store.errors import ArchiveNotFoundError, SchemaVersionError, StoreError

__all__ = [
    "check_revision",
    "create_schema",
    "current_revision",
    "describe",
    "has_tables",
    "head_revision",
    "known_revisions",
    "upgrade",
]

_MIGRATIONS = Path(__file__).resolve().with_name("migrations")


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = _scripts().get_current_head()
    assert head is not None, "store/migrations/versions holds no revision"
    return head


def known_revisions() -> frozenset[str]:
    """Every revision this code knows (and can upgrade from)."""
    return frozenset(script.revision for script in _scripts().walk_revisions())


def describe(url: URL) -> str:
    """How messages name a database: its file for SQLite, else its URL without password."""
    path = sqlite_path(url)
    return str(path) if path is not None else url.render_as_string(hide_password=True)


def current_revision(engine: Engine) -> str | None:
    """The revision stored in the database, None if it has no (or an empty) version table.

    Only reads. Raises `StoreError` if the database cannot be read at all (not a database).
    """
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise StoreError(
            f"{describe(engine.url)}: cannot read the schema revision: {exc}"
        ) from exc


def has_tables(engine: Engine) -> bool:
    """Whether the database holds any table at all."""
    try:
        with engine.connect() as connection:
            return bool(inspect(connection).get_table_names())
    except SQLAlchemyError as exc:
        raise StoreError(f"{describe(engine.url)}: cannot list tables: {exc}") from exc


def check_revision(
    stored: str | None,
    *,
    where: str,
    head: str | None = None,
    known: frozenset[str] | None = None,
) -> None:
    """Refuse any stored revision but head.

    Args:
        stored: The database's revision (`current_revision`).
        where: The database as messages should name it.
        head: Defaults to `head_revision()`.
        known: Defaults to `known_revisions()`.

    Raises:
        SchemaVersionError: `stored` differs from head; ``newer`` is set when it is unknown.
    """
    head = head_revision() if head is None else head
    if stored == head:
        return
    known = known_revisions() if known is None else known
    newer = stored is not None and stored not in known
    raise SchemaVersionError(stored=stored, head=head, newer=newer, where=where)


def create_schema(engine: Engine, revision: str = "head") -> None:
    """Create the schema in an empty database, in one transaction.

    Args:
        engine: An engine from `make_engine`.
        revision: Head by default; an older revision only to make sample databases.

    Raises:
        StoreError: The database already holds tables but no aira revision, or DDL failed.
    """
    where = describe(engine.url)
    if current_revision(engine) is None and has_tables(engine):
        raise StoreError(f"{where}: the database holds tables but is not an aira archive")
    _upgrade_engine(engine, revision)


def upgrade(url_or_path: str | Path | URL, revision: str = "head") -> tuple[str | None, str]:
    """Upgrade an existing archive in place (``aira db upgrade``).

    Returns:
        (revision before, revision after). Both equal when there was nothing to do.

    Raises:
        ArchiveNotFoundError: The SQLite file does not exist, or the database holds no archive.
        SchemaVersionError: The stored revision is newer than this code knows.
    """
    url = to_url(url_or_path)
    where = describe(url)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise ArchiveNotFoundError(f"{where}: no such archive")
    engine = make_engine(url)
    try:
        before = current_revision(engine)
        if before is None:
            raise ArchiveNotFoundError(f"{where}: the database holds no aira archive")
        if before not in known_revisions():
            check_revision(before, where=where)
        _upgrade_engine(engine, revision)
        after = current_revision(engine)
    finally:
        engine.dispose()
    assert after is not None
    return before, after


def _upgrade_engine(engine: Engine, revision: str) -> None:
    try:
        with engine.begin() as connection:
            command.upgrade(_config(connection), revision)
    except SQLAlchemyError as exc:
        raise StoreError(f"{describe(engine.url)}: migration failed: {exc}") from exc
