"""the public pages: the published standard's versions, complaints about the service, status pages per OPD

Revision ID: 0013_public
Revises: 0012_survey
Create Date: 2026-12-07 15:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_public"
down_revision = "0012_survey"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "standard_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("whatsapp", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
    )
    op.create_table(
        "service_feedback",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("contact", sa.String(length=254), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_by", sa.String(length=80), nullable=True),
    )
    op.create_index("ix_service_feedback_client_received", "service_feedback", ["client", "received_at"])
    op.create_index("ix_service_feedback_received_at", "service_feedback", ["received_at"])
    op.create_table(
        "status_pages",
        sa.Column("opd_id", sa.Integer(), sa.ForeignKey("opds.id"), primary_key=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("share_token", sa.String(length=64), nullable=False, unique=True),
        sa.Column("show_addresses", sa.Boolean(), nullable=False),
        sa.Column("site_ids", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=80), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("status_pages")
    op.drop_index("ix_service_feedback_received_at", table_name="service_feedback")
    op.drop_index("ix_service_feedback_client_received", table_name="service_feedback")
    op.drop_table("service_feedback")
    op.drop_table("standard_versions")
