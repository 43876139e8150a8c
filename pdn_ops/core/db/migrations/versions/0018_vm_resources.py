"""VM resources: a VM's CPU, memory and disk use per hour, for the history chart on its page

Revision ID: 0018_vm_resources
Revises: 0017_duty_roster
Create Date: 2026-12-07 18:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_vm_resources"
down_revision = "0017_duty_roster"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vm_resource_rollups",
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cpu", sa.Float(), nullable=True),
        sa.Column("mem", sa.Float(), nullable=True),
        sa.Column("disk", sa.Float(), nullable=True),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["target_id"], ["health_targets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("target_id", "hour"),
    )


def downgrade() -> None:
    op.drop_table("vm_resource_rollups")
