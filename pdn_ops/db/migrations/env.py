from __future__ import annotations

from alembic import context
from sqlalchemy import pool

import pdn_ops.db.complaint_tables
import pdn_ops.db.health_tables
import pdn_ops.db.intake_tables
import pdn_ops.db.notify_tables
import pdn_ops.db.remediation_tables
import pdn_ops.db.settings_tables  # noqa: F401
from pdn_ops.db.engine import make_engine
from pdn_ops.db.tables import Base

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
