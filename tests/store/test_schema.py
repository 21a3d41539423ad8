"""Schema versioning: migrations build exactly the models, and revisions are checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from store import SchemaVersionError, StoreError, head_revision, make_engine, upgrade
from store.models import Base
from store.schema import check_revision, create_schema, known_revisions


def test_migrations_build_the_models(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "fresh.db")
    try:
        create_schema(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_create_schema_at_head_is_a_no_op(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "fresh.db")
    try:
        create_schema(engine)
        create_schema(engine)  # at head already: alembic has nothing to do
    finally:
        engine.dispose()


def test_head_is_known() -> None:
    assert head_revision() in known_revisions()
    check_revision(head_revision(), where="x")


def test_older_revision_says_to_upgrade() -> None:
    known = frozenset({"0001_a", "0002_b"})
    with pytest.raises(
        SchemaVersionError, match=r"run `aira db upgrade --db runs/x.db`"
    ) as caught:
        check_revision("0001_a", where="runs/x.db", head="0002_b", known=known)
    assert not caught.value.newer


def test_unknown_revision_is_newer() -> None:
    with pytest.raises(SchemaVersionError, match=r"schema 0003_c, this aira knows up to 0002_b"):
        check_revision("0003_c", where="db", head="0002_b", known=frozenset({"0002_b"}))


def test_upgrade_of_a_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        upgrade(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
