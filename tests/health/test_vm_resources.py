"""A VM's CPU, memory and disk use per hour: folded from each Proxmox cycle into an hourly mean, charted on the VM's
page over a week, and purged with the raw checks (on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.core.inventory import load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.health import history
from pdn_ops.health import service as health
from pdn_ops.health.model import Thresholds
from pdn_ops.health.observations import ClusterObservation, GuestObservation, NodeObservation
from pdn_ops.health.tables import HealthTargetRow, VmResourceRollupRow
from tests.health_world import ROOT

# One clock for the whole test: every observation and purge is dated from NOW, never the process's clock.
NOW = datetime(2031, 3, 4, 5, 20, tzinfo=UTC)
GIB = 2**30


def _cycle(session: Session, at: datetime, *, cpu: float, mem: int, fs_used: int | None, running: bool = True
           ) -> None:
    guests = (GuestObservation(cluster="pdn1", vmid=101, node="pve1", name="vm101", type="qemu",
                               status="running" if running else "stopped", cpu=cpu, maxcpu=2, mem=mem,
                               maxmem=4 * GIB, disk=0, maxdisk=32 * GIB, fs_used=fs_used,
                               fs_total=20 * GIB if fs_used is not None else None),)
    health.record_cluster(session, ClusterObservation(
        cluster="pdn1", at=at, ok=True, quorate=True, nodes=(NodeObservation("pdn1", "pve1", True, 0.2),),
        guests=guests, api_calls=2, duration_s=0.05), thresholds=Thresholds())


def test_samples_fold_into_hourly_means_chart_a_week_and_go_with_the_raw_checks(session: Session) -> None:
    sync_inventory(session, load_inventory(ROOT / "inventory.example.yaml"), now=NOW - timedelta(days=20))
    old = NOW - timedelta(days=15)
    _cycle(session, old, cpu=0.9, mem=4 * GIB, fs_used=20 * GIB)
    this_hour = NOW.replace(minute=0)
    _cycle(session, this_hour + timedelta(minutes=1), cpu=0.2, mem=GIB, fs_used=5 * GIB)
    _cycle(session, this_hour + timedelta(minutes=2), cpu=0.4, mem=3 * GIB, fs_used=None)  # no guest agent
    _cycle(session, this_hour + timedelta(minutes=3), cpu=0.0, mem=0, fs_used=None, running=False)  # not counted
    _cycle(session, this_hour - timedelta(hours=2), cpu=1.7, mem=2 * GIB, fs_used=10 * GIB)  # Proxmox over 1
    target = session.scalar(select(HealthTargetRow.id).where(HealthTargetRow.kind == "vm",
                                                             HealthTargetRow.ref == "pdn1/101"))
    assert target is not None
    rows = {r.hour: r for r in session.scalars(select(VmResourceRollupRow).where(
        VmResourceRollupRow.target_id == target))}
    now_row = rows[this_hour]
    assert now_row.samples == 2
    assert abs((now_row.cpu or 0) - 0.3) < 1e-9 and abs((now_row.mem or 0) - 0.5) < 1e-9
    assert abs((now_row.disk or 0) - 0.25) < 1e-9  # the sample without a disk figure leaves the mean alone

    week = history.resources(session, target, NOW)
    assert len(week.cpu) == len(week.mem) == len(week.disk) == 7 * 24
    assert week.cpu[-1] is not None and abs(week.cpu[-1] - 0.3) < 1e-9
    assert week.cpu[-3] == 1.0 and week.cpu[-2] is None  # clamped; an hour without samples is a gap
    assert week.seen and history.Resources.last(week.disk) is not None
    assert all(v is None for v in week.cpu[:-3])  # the 15-day-old hour is outside the week

    health.purge_raw(session, retention=timedelta(days=14), now=NOW)
    left = set(session.scalars(select(VmResourceRollupRow.hour).where(VmResourceRollupRow.target_id == target)))
    assert {h.astimezone(UTC) for h in left} == {this_hour, this_hour - timedelta(hours=2)}
