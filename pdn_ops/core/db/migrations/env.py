from __future__ import annotations

from alembic import context
from sqlalchemy import pool

import pdn_ops.accounts.tables
import pdn_ops.complaints.tables
import pdn_ops.health.tables
import pdn_ops.notify.tables
import pdn_ops.runs.tables  # noqa: F401
from pdn_ops.core.db.engine import make_engine
from pdn_ops.core.db.tables import Base

config = context.config
target_metadata = Base.metadata


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
