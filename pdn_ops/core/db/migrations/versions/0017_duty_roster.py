"""on-duty roster: the weekly rota's shifts and dated overrides, for routing alerts to the engineers on duty

Revision ID: 0017_duty_roster
Revises: 0016_backup_age
Create Date: 2026-12-07 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_duty_roster"
down_revision = "0016_backup_age"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "duty_shifts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("start_minute", sa.Integer(), nullable=False),
        sa.Column("end_minute", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
    )
    op.create_index("ix_duty_shifts_weekday", "duty_shifts", ["weekday"])
    op.create_table(
        "duty_overrides",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("kind", sa.String(3), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
    )
    op.create_index("ix_duty_overrides_ends_at", "duty_overrides", ["ends_at"])


def downgrade() -> None:
    op.drop_index("ix_duty_overrides_ends_at", "duty_overrides")
    op.drop_table("duty_overrides")
    op.drop_index("ix_duty_shifts_weekday", "duty_shifts")
    op.drop_table("duty_shifts")
