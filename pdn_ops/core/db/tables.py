"""SQLAlchemy tables. Internal columns live here; API schemas are defined apart in the web layer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# The largest id a row can have on both engines (PostgreSQL's INTEGER is 32-bit): a larger one in a request can
# only be "not found", and must never reach a driver (SQLite raises OverflowError at 2**63, PostgreSQL refuses).
MAX_ID = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), dict: JSON}


class OpdRow(Base):
    __tablename__ = "opds"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    contacts: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    backup_max_age_h: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)


class VmRow(Base):
    __tablename__ = "vms"
    __table_args__ = (UniqueConstraint("cluster", "vmid", name="uq_vms_cluster_vmid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster: Mapped[str] = mapped_column(String(63))
    vmid: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(63))
    opd_id: Mapped[int] = mapped_column(ForeignKey("opds.id"), index=True)
    services: Mapped[list[str]] = mapped_column(JSON, default=list)
    has_ssh: Mapped[bool] = mapped_column(default=False)
    backup_max_age_h: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)

    opd: Mapped[OpdRow] = relationship()

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.vmid}"


class SiteRow(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    opd_id: Mapped[int] = mapped_column(ForeignKey("opds.id"), index=True)
    vm_id: Mapped[int | None] = mapped_column(ForeignKey("vms.id"), default=None)
    settings: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)

    opd: Mapped[OpdRow] = relationship()
    vm: Mapped[VmRow | None] = relationship()


class AuditRow(Base):
    """Who did what, when; never deleted."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(200), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class JobStatusRow(Base):
    """One row per scheduled job: what /metrics reports for collector duration and errors, from any worker."""

    __tablename__ = "job_status"

    job: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="maintenance")
    runs_total: Mapped[int] = mapped_column(Integer, default=0)
    errors_total: Mapped[int] = mapped_column(Integer, default=0)
    last_started_at: Mapped[datetime | None] = mapped_column(default=None)
    last_finished_at: Mapped[datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    last_duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    last_ok: Mapped[bool | None] = mapped_column(Boolean, default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    # Why the last run failed, bounded (a collector failure class such as "auth", or "error" for an exception).
    last_failure: Mapped[str | None] = mapped_column(String(32), default=None)
    # The job's interval, so a stall threshold can be relative to it (pdn_collector_interval_seconds).
    interval_s: Mapped[float | None] = mapped_column(Float, default=None)


class JobRunRow(Base):
    """One run of one job; the row is written before the job starts, so a run whose process died stays visible."""

    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(100), index=True)
    started_at: Mapped[datetime] = mapped_column(index=True)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    outcome: Mapped[str] = mapped_column(String(16), default="running")  # running | succeeded | failed
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    error: Mapped[str] = mapped_column(Text, default="")
