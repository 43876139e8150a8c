"""complaint intake drafts over WhatsApp and e-mail

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 20:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"  # after 0005 remediation on main
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "complaint_intake_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("opd_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("asset", sa.String(length=40), nullable=False),
        sa.Column("texts", sa.JSON(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("complaint_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["opd_id"], ["opds.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["complaint_id"], ["complaints.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_complaint_intake_drafts_sender", "complaint_intake_drafts",
                    ["channel", "address", "complaint_id"])
    op.create_table(
        "complaint_intake_photos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=False),
        sa.Column("media_type", sa.String(length=40), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["draft_id"], ["complaint_intake_drafts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_complaint_intake_photos_draft_id", "complaint_intake_photos", ["draft_id"])


def downgrade() -> None:
    op.drop_index("ix_complaint_intake_photos_draft_id", table_name="complaint_intake_photos")
    op.drop_table("complaint_intake_photos")
    op.drop_index("ix_complaint_intake_drafts_sender", table_name="complaint_intake_drafts")
    op.drop_table("complaint_intake_drafts")
