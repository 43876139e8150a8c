"""the satisfaction survey: invitations (who was asked about which complaint) and anonymous responses

Revision ID: 0012_survey
Revises: 0011_console
Create Date: 2026-12-07 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_survey"
down_revision = "0011_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "survey_invitations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("complaint_id", sa.Integer(), sa.ForeignKey("complaints.id"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=True),
        sa.UniqueConstraint("complaint_id", "user_id", name="uq_survey_invitations_complaint_user"),
    )
    op.create_index("ix_survey_invitations_user_id", "survey_invitations", ["user_id"])
    op.create_table(
        "survey_responses",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("answered_on", sa.Date(), nullable=False),
        *(sa.Column(f"u{i}", sa.Integer(), nullable=False) for i in range(1, 10)),
        sa.Column("suggestion", sa.Text(), nullable=False),
        sa.Column("follow_up", sa.Text(), nullable=False),
        sa.Column("follow_up_by", sa.String(length=80), nullable=True),
        sa.Column("follow_up_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_survey_responses_answered_on", "survey_responses", ["answered_on"])


def downgrade() -> None:
    op.drop_index("ix_survey_responses_answered_on", table_name="survey_responses")
    op.drop_table("survey_responses")
    op.drop_index("ix_survey_invitations_user_id", table_name="survey_invitations")
    op.drop_table("survey_invitations")
