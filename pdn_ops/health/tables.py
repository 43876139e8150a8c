"""Tables of the health model: current state per target, events, raw checks, hourly rollups."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pdn_ops.core.db.tables import Base, utcnow


class HealthTargetRow(Base):
    __tablename__ = "health_targets"
    __table_args__ = (UniqueConstraint("kind", "ref", name="uq_health_targets_kind_ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(2000))
    # Links into the inventory tables, for joins by OPD and the fleet pages; bounded ids for metric labels.
    opd_id: Mapped[int | None] = mapped_column(ForeignKey("opds.id"), default=None, index=True)
    vm_id: Mapped[int | None] = mapped_column(ForeignKey("vms.id"), default=None, index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), default=None, index=True)
    parent_key: Mapped[str | None] = mapped_column(String(2100), default=None)
    state: Mapped[str] = mapped_column(String(16), default="unknown", index=True)
    since: Mapped[datetime | None] = mapped_column(default=None)
    reason: Mapped[str] = mapped_column(String(32), default="ok")
    failure: Mapped[str | None] = mapped_column(String(32), default=None)
    detail: Mapped[str] = mapped_column(Text, default="")
    degraded: Mapped[list[str]] = mapped_column(JSON, default=list)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    successes: Mapped[int] = mapped_column(Integer, default=0)
    last_check_at: Mapped[datetime | None] = mapped_column(default=None)
    cause_key: Mapped[str | None] = mapped_column(String(2100), default=None)
    cause_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    # The latest measured values (response time, TLS expiry, cpu/memory/disk...) for /metrics and the pages.
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.ref}"


class HealthEventRow(Base):
    """A state change ("state") or a security event ("security", e.g. a changed SSH host key)."""

    __tablename__ = "health_events"
    __table_args__ = (Index("ix_health_events_target_at", "target_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("health_targets.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(index=True)
    event: Mapped[str] = mapped_column(String(16), default="state")
    old_state: Mapped[str | None] = mapped_column(String(16), default=None)
    new_state: Mapped[str | None] = mapped_column(String(16), default=None)
    reason: Mapped[str] = mapped_column(String(32), default="ok")
    detail: Mapped[str] = mapped_column(Text, default="")
    cause_key: Mapped[str | None] = mapped_column(String(2100), default=None)


class HealthCheckRow(Base):
    """One raw result; deleted after the retention period once rolled up."""

    __tablename__ = "health_checks"
    __table_args__ = (Index("ix_health_checks_target_at", "target_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("health_targets.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(index=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    failure: Mapped[str | None] = mapped_column(String(32), default=None)
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    detail: Mapped[str] = mapped_column(Text, default="")


class HealthRollupRow(Base):
    """Per target and UTC hour: how many checks, how many failed, and the seconds estimated UP."""

    __tablename__ = "health_rollups"

    target_id: Mapped[int] = mapped_column(ForeignKey("health_targets.id", ondelete="CASCADE"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    checks: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    up_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class StorageRollupRow(Base):
    """A storage's use per node and hour (the mean of the hour's samples): the days-until-full forecast is the
    least-squares slope over these (``pdn_ops.health.model.days_until_full``). Kept ``STORAGE_ROLLUP_DAYS``."""

    __tablename__ = "storage_rollups"

    cluster: Mapped[str] = mapped_column(String(64), primary_key=True)
    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    storage: Mapped[str] = mapped_column(String(100), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    samples: Mapped[int] = mapped_column(Integer, default=0)


class VmResourceRollupRow(Base):
    """A VM's CPU, memory and disk use per UTC hour: the mean of the hour's Proxmox samples while it ran, each a
    fraction of what the VM is given (None where Proxmox did not report it). The VM page's history; purged with
    the raw checks, after ``health_raw_retention_days``."""

    __tablename__ = "vm_resource_rollups"

    target_id: Mapped[int] = mapped_column(ForeignKey("health_targets.id", ondelete="CASCADE"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    cpu: Mapped[float | None] = mapped_column(Float, default=None)
    mem: Mapped[float | None] = mapped_column(Float, default=None)
    disk: Mapped[float | None] = mapped_column(Float, default=None)
    samples: Mapped[int] = mapped_column(Integer, default=0)


class HealthAlertRow(Base):
    """One alert episode as Alertmanager reported it (fingerprint + start), and the target it is about.

    Written by the Alertmanager receiver (``pdn_ops.alerts``); shown on the fleet and incident pages.
    ``notified_status`` is the last status (firing, resolved) engineers were told about: once per state change.
    """

    __tablename__ = "health_alerts"
    __table_args__ = (UniqueConstraint("fingerprint", "starts_at", name="uq_health_alerts_fingerprint_start"),
                      Index("ix_health_alerts_status", "status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column(default=None)
    alertname: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))  # firing | resolved
    severity: Mapped[str] = mapped_column(String(16), default="")
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    target_key: Mapped[str | None] = mapped_column(String(2100), default=None)
    opd_id: Mapped[int | None] = mapped_column(ForeignKey("opds.id"), default=None, index=True)
    notified_status: Mapped[str | None] = mapped_column(String(16), default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
