"""supervisor settings: the complaint procedure's terms in the database; phone and e-mail on users

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "procedure_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sla_days", sa.Integer(), nullable=False),
        sa.Column("sla_working_days", sa.Boolean(), nullable=False),
        sa.Column("holidays", sa.JSON(), nullable=False),
        sa.Column("autoclose_days", sa.Float(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("phone", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("email", sa.String(length=320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email")
        batch.drop_column("phone")
    op.drop_table("procedure_settings")
