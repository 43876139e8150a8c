"""storage pools: a storage's use per node and hour, for the days-until-full forecast

Revision ID: 0015_storage_rollups
Revises: 0014_status_notes
Create Date: 2026-12-07 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_storage_rollups"
down_revision = "0014_status_notes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storage_rollups",
        sa.Column("cluster", sa.String(64), primary_key=True),
        sa.Column("node", sa.String(64), primary_key=True),
        sa.Column("storage", sa.String(100), primary_key=True),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("storage_rollups")
