"""backups: a per-OPD and per-VM threshold for the age of the newest backup (none: the global one, 26 hours)

Revision ID: 0016_backup_age
Revises: 0015_storage_rollups
Create Date: 2026-12-07 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_backup_age"
down_revision = "0015_storage_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("opds") as batch:
        batch.add_column(sa.Column("backup_max_age_h", sa.Float(), nullable=True))
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("backup_max_age_h", sa.Float(), nullable=True))


def downgrade() -> None:
    for table in ("vms", "opds"):
        if op.get_bind().dialect.name == "sqlite":
            # Not batch mode: it rebuilds the table (DROP TABLE), which SQLite refuses while other tables' rows
            # refer to it (sites -> vms -> opds, foreign keys on). SQLite >= 3.35 drops a plain column in place.
            op.execute(f"ALTER TABLE {table} DROP COLUMN backup_max_age_h")
        else:
            op.drop_column(table, "backup_max_age_h")
