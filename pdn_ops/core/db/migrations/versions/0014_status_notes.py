"""status pages: the OPD may show the resolution notes of its incidents (off by default)

Revision ID: 0014_status_notes
Revises: 0013_public
Create Date: 2026-12-07 15:25:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_status_notes"
down_revision = "0013_public"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("status_pages") as batch:
        batch.add_column(sa.Column("show_notes", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("status_pages") as batch:
        batch.drop_column("show_notes")
