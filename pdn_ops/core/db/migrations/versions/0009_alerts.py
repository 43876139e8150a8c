"""alerts that tell the truth: collector failure class and interval on job_status; alerts received from
Alertmanager (health_alerts)

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-07 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_status") as batch:
        batch.add_column(sa.Column("last_failure", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("interval_s", sa.Float(), nullable=True))
    op.create_table(
        "health_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("alertname", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("target_key", sa.String(length=2100), nullable=True),
        sa.Column("opd_id", sa.Integer(), nullable=True),
        sa.Column("notified_status", sa.String(length=16), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["opd_id"], ["opds.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint", "starts_at", name="uq_health_alerts_fingerprint_start"),
    )
    op.create_index("ix_health_alerts_status", "health_alerts", ["status"])
    op.create_index("ix_health_alerts_opd_id", "health_alerts", ["opd_id"])


def downgrade() -> None:
    op.drop_index("ix_health_alerts_opd_id", table_name="health_alerts")
    op.drop_index("ix_health_alerts_status", table_name="health_alerts")
    op.drop_table("health_alerts")
    with op.batch_alter_table("job_status") as batch:
        batch.drop_column("interval_s")
        batch.drop_column("last_failure")
