"""The migrations create exactly the tables every feature declares: no column, index or table missing or extra,
on both engines (Alembic's autogenerate comparison finds nothing to do)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from pdn_ops.app.schema import metadata


def test_the_migrated_database_matches_the_declared_tables(db_engine: Engine) -> None:
    with db_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, metadata())
    assert differences == [], differences
