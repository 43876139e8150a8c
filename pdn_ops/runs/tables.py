"""Remediation tables: runs, their journaled steps, maintenance windows, automatic rules and switches.

The journal is what makes a run crash-safe: a step's row is written with its intent *before* the side effect, the
Proxmox UPID is stored the moment the API returns it, and the result is written after. At restart the worker reads
these rows to reconcile what really happened instead of repeating a step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pdn_ops.core.db.tables import Base, utcnow
from pdn_ops.runs.model import ACTIVE_STATES

# Shared by the table and migration 0005 so the two never drift apart.
ACTIVE_STATES_SQL = "state IN (" + ", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATES)) + ")"


class RemediationRunRow(Base):
    __tablename__ = "remediation_runs"
    __table_args__ = (
        # One active run per target, enforced by the database itself (partial unique index, SQLite and PG).
        Index("uq_remediation_runs_active_target", "target", unique=True,
              sqlite_where=text(ACTIVE_STATES_SQL), postgresql_where=text(ACTIVE_STATES_SQL)),
        Index("ix_remediation_runs_state", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    playbook: Mapped[str] = mapped_column(String(63))
    target: Mapped[str] = mapped_column(String(200), index=True)  # "cluster/vmid"
    opd_code: Mapped[str] = mapped_column(String(63))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    risk: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(200))
    trigger: Mapped[str] = mapped_column(String(200), default="manual")  # manual | rule:<id> | complaint
    approvals_needed: Mapped[int] = mapped_column(Integer, default=0)
    approvals: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    state: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(32), default=None)
    summary: Mapped[str] = mapped_column(Text, default="")
    plan: Mapped[list[str]] = mapped_column(JSON, default=list)
    complaint_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(200), default=None)
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # how often a worker took it up (reconciliations)
    closure: Mapped[str | None] = mapped_column(String(32), default=None)  # confirming | confirmed | ineffective
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    approved_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    steps: Mapped[list[RemediationStepRow]] = relationship(
        back_populates="run", order_by="RemediationStepRow.position", cascade="all, delete-orphan")


class RemediationStepRow(Base):
    __tablename__ = "remediation_steps"
    __table_args__ = (UniqueConstraint("run_id", "position", name="uq_remediation_steps_run_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("remediation_runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))  # api | ssh | check
    side_effect: Mapped[bool] = mapped_column(default=False)
    intent: Mapped[str] = mapped_column(Text)  # the exact API call or command, as the dry run showed it
    state: Mapped[str] = mapped_column(String(32))
    node: Mapped[str | None] = mapped_column(String(63), default=None)
    upid: Mapped[str | None] = mapped_column(String(300), default=None)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    stdout: Mapped[str] = mapped_column(Text, default="")
    stderr: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reconciled: Mapped[bool] = mapped_column(default=False)
    intent_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    run: Mapped[RemediationRunRow] = relationship(back_populates="steps")


class MaintenanceWindowRow(Base):
    __tablename__ = "maintenance_windows"

    id: Mapped[int] = mapped_column(primary_key=True)
    target: Mapped[str | None] = mapped_column(String(200), default=None)  # None: the whole data centre
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AutoRuleRow(Base):
    __tablename__ = "remediation_auto_rules"
    __table_args__ = (UniqueConstraint("target", "playbook", name="uq_remediation_auto_rules_target_playbook"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    target: Mapped[str] = mapped_column(String(200))
    playbook: Mapped[str] = mapped_column(String(63))
    min_failed_checks: Mapped[int] = mapped_column(Integer, default=3)
    vm_status: Mapped[str | None] = mapped_column(String(32), default=None)  # None: any VM state
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RemediationSwitchRow(Base):
    """Named switches; ``auto`` is the global off switch for automatic remediation."""

    __tablename__ = "remediation_switches"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    changed_by: Mapped[str] = mapped_column(String(200), default="")
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
