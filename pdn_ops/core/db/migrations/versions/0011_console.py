"""the console: a complaint's owner at Diskominfo (assignee_id) and its priority from its impact

Revision ID: 0011_console
Revises: 0010_busy_morning
Create Date: 2026-12-07 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_console"
down_revision = "0010_busy_morning"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("complaints") as batch:
        batch.add_column(sa.Column("assignee_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("priority", sa.String(length=8), nullable=False, server_default="medium"))
        batch.create_foreign_key("fk_complaints_assignee_id_users", "users", ["assignee_id"], ["id"])
        batch.create_index("ix_complaints_assignee_id", ["assignee_id"])


def downgrade() -> None:
    with op.batch_alter_table("complaints") as batch:
        batch.drop_index("ix_complaints_assignee_id")
        batch.drop_constraint("fk_complaints_assignee_id_users", type_="foreignkey")
        batch.drop_column("priority")
        batch.drop_column("assignee_id")
