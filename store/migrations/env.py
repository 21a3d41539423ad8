"""Alembic environment of the archive.

`store.schema` runs migrations programmatically: it opens the transaction itself and passes the
connection in ``config.attributes["connection"]``, so a migration and the revision stamp commit
together or not at all. For developers using the ``alembic`` command line (``alembic -c
store/alembic.ini -x db=PATH revision --autogenerate -m ...``) a connection is made from the
``-x db=`` argument or ``sqlalchemy.url`` instead.

Only online migrations exist: SQLite needs batch mode (``render_as_batch``) to alter tables, and
that needs a live connection.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from store.engine import make_engine
from store.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database: pass -x db=PATH or set sqlalchemy.url")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
