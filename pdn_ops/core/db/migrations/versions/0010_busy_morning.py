"""a busy morning: the complaint form's idempotency key (a retry or a double click never files twice)

Revision ID: 0010_busy_morning
Revises: 0009
Create Date: 2026-12-07 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_busy_morning"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("complaints") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=64), nullable=True))
    # One complaint per author and key; rows without a key (older ones, the WhatsApp intake) are not constrained.
    op.create_index("ux_complaints_created_by_idempotency_key", "complaints", ["created_by", "idempotency_key"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("ux_complaints_created_by_idempotency_key", table_name="complaints")
    with op.batch_alter_table("complaints") as batch:
        batch.drop_column("idempotency_key")
