"""Alembic's environment: the migrations run over the connection or URL that ``pdn_ops.core.db.migrate`` passes.

The migrations are written out (``op.create_table`` ...), so running them needs no model. Autogenerate needs the
tables of every feature: the caller passes them as ``config.attributes["target_metadata"]``
(``pdn_ops.app.schema.metadata()``); core imports no feature.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from pdn_ops.core.db.engine import make_engine

config = context.config
target_metadata = config.attributes.get("target_metadata")


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as connection:
        # render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
