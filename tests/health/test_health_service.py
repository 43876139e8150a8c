"""Recording observations into the health tables, on SQLite and PostgreSQL: states, causes, events, history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine
from pdn_ops.core.db.tables import SiteRow, VmRow
from pdn_ops.core.errors import NotFound
from pdn_ops.core.inventory import load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.health import queries as health_queries
from pdn_ops.health import service as health
from pdn_ops.health.model import Thresholds
from pdn_ops.health.observations import (
    ClusterObservation,
    FailureClass,
    GuestObservation,
    Mount,
    NodeObservation,
    SiteCheck,
    SshObservation,
)
from pdn_ops.health.tables import HealthCheckRow, HealthEventRow, HealthRollupRow, HealthTargetRow

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
TH = Thresholds(down_after=2, up_after=2)
SITE_A, SITE_B = "http://127.0.10.1/", "https://127.0.10.2/"


@pytest.fixture
def world(session: Session) -> Session:
    """The example inventory: OPDs dinkes, disdik, bpkad; VMs pdn1/101 (SSH), 102, 103; sites on 101 and 102."""
    sync_inventory(session, load_inventory(ROOT / "inventory.example.yaml"), now=T0)
    return session


def target(session: Session, kind: str, ref: str) -> HealthTargetRow:
    row = session.scalar(select(HealthTargetRow).where(HealthTargetRow.kind == kind, HealthTargetRow.ref == ref))
    assert row is not None, f"no target {kind}:{ref}"
    return row


def guest(vmid: int, status: str = "running", node: str = "pve1", **kw) -> GuestObservation:
    return GuestObservation(cluster="pdn1", vmid=vmid, node=node, name=f"vm{vmid}", type="qemu", status=status, **kw)


def cycle(at: datetime, *, stopped: tuple[int, ...] = (), node_online: bool = True, **kw) -> ClusterObservation:
    return ClusterObservation(
        cluster="pdn1", at=at, ok=True, quorate=True,
        nodes=(NodeObservation("pdn1", "pve1", online=node_online),),
        guests=tuple(guest(v, "stopped" if v in stopped else "running", cpu=0.25, maxcpu=2, mem=512, maxmem=1024,
                           disk=10, maxdisk=100) for v in (101, 102, 103)), api_calls=2, **kw)


def site_ok(url: str, at: datetime, **kw) -> SiteCheck:
    return SiteCheck(url=url, at=at, ok=True, status_code=200, total_s=0.05, **kw)


def site_down(url: str, at: datetime) -> SiteCheck:
    return SiteCheck(url=url, at=at, ok=False, failure=FailureClass.REFUSED, detail="connection refused")


def test_a_site_goes_down_after_two_failed_checks_and_the_change_is_an_event(world: Session) -> None:
    health.record_site_checks(world, [site_ok(SITE_A, T0)], thresholds=TH)
    first = health.record_site_checks(world, [site_down(SITE_A, T0 + timedelta(minutes=1))], thresholds=TH)
    assert target(world, "site", SITE_A).state == "up" and not first.changes
    second = health.record_site_checks(world, [site_down(SITE_A, T0 + timedelta(minutes=2))], thresholds=TH)
    row = target(world, "site", SITE_A)
    assert row.state == "down" and row.failure == "refused" and row.cause_key is None
    assert [(c.old.value, c.new.value) for c in second.changes] == [("up", "down")]
    site = world.scalar(select(SiteRow).where(SiteRow.url == SITE_A))
    assert site is not None and row.site_id == site.id and row.opd_id == site.opd_id
    events = world.scalars(select(HealthEventRow).where(HealthEventRow.target_id == row.id)
                           .order_by(HealthEventRow.at)).all()
    assert [(e.event, e.old_state, e.new_state) for e in events] == [("state", "unknown", "up"),
                                                                     ("state", "up", "down")]
    assert world.scalar(select(func.count()).where(HealthCheckRow.target_id == row.id)) == 3


def test_checks_for_unknown_urls_are_ignored(world: Session) -> None:
    result = health.record_site_checks(world, [site_ok("http://not-in-inventory/", T0)], thresholds=TH)
    assert not result.changes
    assert world.scalar(select(func.count()).select_from(HealthTargetRow)) == 0


def test_a_site_whose_vm_is_stopped_carries_the_vm_as_its_cause(world: Session) -> None:
    health.record_cluster(world, cycle(T0), thresholds=TH)
    health.record_site_checks(world, [site_ok(SITE_A, T0), site_ok(SITE_B, T0)], thresholds=TH)
    at = T0 + timedelta(minutes=1)
    result = health.record_cluster(world, cycle(at, stopped=(101,)), thresholds=TH)
    vm = target(world, "vm", "pdn1/101")
    assert vm.state == "down" and vm.reason == "vm_stopped" and vm.cause_key is None, "the VM is the root problem"
    assert [c.key for c in result.changes] == ["vm:pdn1/101"]
    for minute in (2, 3):
        health.record_site_checks(world, [site_down(SITE_A, T0 + timedelta(minutes=minute)),
                                          site_ok(SITE_B, T0 + timedelta(minutes=minute))], thresholds=TH)
    site = target(world, "site", SITE_A)
    assert site.state == "down"
    assert (site.cause_key, site.cause_reason) == ("vm:pdn1/101", "vm_stopped")
    view = health_queries.fleet(world)
    roots = [i for i in view.incidents if i.is_root]
    assert [(i.kind, i.label) for i in roots] == [("vm", "web-dinkes")]
    assert {(i.kind, i.label) for i in view.incidents} == {("vm", "web-dinkes"), ("site", "Portal Dinkes")}
    # Recovery clears the cause with the state.
    for minute in (4, 5):
        health.record_cluster(world, cycle(T0 + timedelta(minutes=minute)), thresholds=TH)
        health.record_site_checks(world, [site_ok(SITE_A, T0 + timedelta(minutes=minute))], thresholds=TH)
    site = target(world, "site", SITE_A)
    assert site.state == "up" and site.cause_key is None


def test_a_vm_on_an_offline_node_is_unknown_and_points_at_the_node(world: Session) -> None:
    health.record_cluster(world, cycle(T0), thresholds=TH)
    health.record_cluster(world, cycle(T0 + timedelta(minutes=1), stopped=(101, 102, 103), node_online=False),
                          thresholds=TH)
    node = target(world, "node", "pdn1/pve1")
    assert node.state == "down" and node.reason == "node_offline" and node.cause_key is None
    for vmid in (101, 102, 103):
        vm = target(world, "vm", f"pdn1/{vmid}")
        assert vm.state == "unknown" and vm.reason == "node_offline", "not stopped: nobody can see it"
        assert vm.cause_key == "node:pdn1/pve1"
    view = health_queries.fleet(world)
    assert [i.label for i in view.incidents if i.is_root] == ["pdn1/pve1"]


def test_a_failing_proxmox_api_makes_its_vms_unknown_not_down(world: Session) -> None:
    health.record_cluster(world, cycle(T0), thresholds=TH)
    revoked = ClusterObservation(cluster="pdn1", at=T0 + timedelta(minutes=1), ok=False,
                                 failure=FailureClass.AUTH, detail="401 token revoked")
    health.record_cluster(world, revoked, thresholds=TH)
    assert target(world, "vm", "pdn1/101").state == "up", "one failure is not yet evidence"
    health.record_cluster(world, revoked, thresholds=TH)
    cluster = target(world, "cluster", "pdn1")
    assert cluster.state == "down" and cluster.failure == "auth"
    vm = target(world, "vm", "pdn1/102")
    assert vm.state == "unknown" and vm.reason == "source_failing"
    assert (vm.cause_key, vm.cause_reason) == (None, "source_failing"), "a blind API is no cause: cause unknown"


def test_a_site_failing_while_the_api_is_blind_stays_its_own_incident(world: Session) -> None:
    health.record_cluster(world, cycle(T0), thresholds=TH)
    for minute in (1, 2):
        health.record_site_checks(world, [site_down(SITE_A, T0 + timedelta(minutes=minute))], thresholds=TH)
    assert target(world, "site", SITE_A).cause_key is None
    revoked = ClusterObservation(cluster="pdn1", at=T0 + timedelta(minutes=3), ok=False,
                                 failure=FailureClass.AUTH, detail="401 token revoked")
    health.record_cluster(world, revoked, thresholds=TH)
    health.record_cluster(world, revoked, thresholds=TH)
    site = target(world, "site", SITE_A)
    assert site.state == "down" and (site.cause_key, site.cause_reason) == (None, "source_failing")
    assert SITE_A in [i.health.ref for i in health_queries.fleet(world).incidents if i.is_root]


def test_a_vm_missing_from_a_non_empty_answer_is_down(world: Session) -> None:
    partial = ClusterObservation(cluster="pdn1", at=T0, ok=True, nodes=(NodeObservation("pdn1", "pve1", True),),
                                 guests=(guest(101), guest(102)))
    health.record_cluster(world, partial, thresholds=TH)
    assert target(world, "vm", "pdn1/103").reason == "vm_missing"
    assert target(world, "vm", "pdn1/101").values["maxdisk"] == 0


def test_ssh_checks_degrade_the_guest_and_a_changed_host_key_is_a_security_event(world: Session) -> None:
    full = SshObservation(cluster="pdn1", vmid=101, at=T0, ok=True, mounts=(Mount("/", 100, 97, 3),),
                          mem_total_bytes=1000, mem_available_bytes=500, load1=0.5,
                          services={"nginx.service": "active", "php8.2-fpm.service": "inactive"})
    health.record_ssh(world, [full], thresholds=TH)
    row = target(world, "guest", "pdn1/101")
    assert row.state == "degraded" and row.degraded == ["service_inactive", "disk_full"]
    assert row.values["mounts"][0] == {"mount": "/", "used_ratio": 0.97, "size": 100, "used": 97}
    assert row.values["services_inactive"] == 1 and row.parent_key == "vm:pdn1/101"
    changed = SshObservation(cluster="pdn1", vmid=101, at=T0 + timedelta(minutes=1), ok=False,
                             failure=FailureClass.HOST_KEY, detail="host key for 127.0.10.1 is not the pinned one")
    result = health.record_ssh(world, [changed], thresholds=TH)
    assert result.security_events == 1
    security = world.scalars(select(HealthEventRow).where(HealthEventRow.event == "security")).all()
    assert [(e.reason, e.target_id) for e in security] == [("host_key", row.id)]
    again = health.record_ssh(world, [changed], thresholds=TH)
    assert again.security_events == 0, "one event per key change, not one per refused run"
    assert target(world, "guest", "pdn1/101").state == "down"
    assert target(world, "guest", "pdn1/101").reason == "host_key"


def test_hourly_rollups_feed_uptime_and_retention_deletes_only_old_raw_rows(world: Session) -> None:
    start = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    for minute in range(0, 180, 10):  # three hours; the second hour half down
        at = start + timedelta(minutes=minute)
        check = site_down(SITE_A, at) if 60 <= minute < 90 else site_ok(SITE_A, at)
        health.record_site_checks(world, [check], thresholds=TH)
    row = target(world, "site", SITE_A)
    now = start + timedelta(hours=3, minutes=5)
    assert health.rollup(world, now=now) == 3
    assert health.rollup(world, now=now) == 0, "idempotent: nothing new to roll"
    rollups = world.scalars(select(HealthRollupRow).order_by(HealthRollupRow.hour)).all()
    assert [(r.checks, r.failures, r.up_seconds) for r in rollups] == [(6, 0, 3600.0), (6, 3, 1800.0),
                                                                       (6, 0, 3600.0)]
    assert health.uptime(world, target_id=row.id, since=start, until=now) == pytest.approx(5 / 6)
    recent = site_ok(SITE_A, now)
    health.record_site_checks(world, [recent], thresholds=TH)
    deleted = health.purge_raw(world, retention=timedelta(hours=1), now=now)
    assert deleted == 13, "00:00 to 02:00: older than an hour before 03:05"
    remaining = world.scalars(select(HealthCheckRow.at).where(HealthCheckRow.target_id == row.id)
                              .order_by(HealthCheckRow.at)).all()
    assert remaining == [start + timedelta(minutes=m) for m in range(130, 180, 10)] + [now]
    assert world.scalar(select(func.count()).select_from(HealthRollupRow)) == 3, "rollups outlive raw rows"


def test_resolved_alerts_go_after_their_retention_and_firing_ones_stay(world: Session) -> None:
    from pdn_ops.health.tables import HealthAlertRow

    old = T0 - health.ALERT_RETENTION - timedelta(days=1)
    for fingerprint, status in (("a1", "resolved"), ("a2", "firing")):
        world.add(HealthAlertRow(fingerprint=fingerprint, starts_at=old, alertname="PdnSiteDown", status=status,
                                 severity="critical", labels={}, annotations={}, received_at=old, updated_at=old))
    world.add(HealthAlertRow(fingerprint="a3", starts_at=T0, alertname="PdnVmDown", status="resolved",
                             severity="critical", labels={}, annotations={}, received_at=T0, updated_at=T0))
    world.flush()
    health.purge_raw(world, retention=timedelta(days=14), now=T0)
    assert sorted(world.scalars(select(HealthAlertRow.fingerprint))) == ["a2", "a3"]


def test_targets_without_news_become_unknown(world: Session) -> None:
    health.record_site_checks(world, [site_ok(SITE_A, T0)], thresholds=TH)
    health.mark_stale(world, max_age=timedelta(minutes=15), now=T0 + timedelta(minutes=10))
    assert target(world, "site", SITE_A).state == "up"
    result = health.mark_stale(world, max_age=timedelta(minutes=15), now=T0 + timedelta(minutes=20))
    assert target(world, "site", SITE_A).reason == "stale" and len(result.changes) == 1


def test_snapshot_and_details_scope_by_opd(world: Session) -> None:
    health.record_cluster(world, cycle(T0), thresholds=TH)
    health.record_site_checks(world, [site_ok(SITE_A, T0, tls_days_left=30.5,
                                              tls_expires_at=T0 + timedelta(days=30.5))], thresholds=TH)
    snap = health_queries.health_snapshot(world)
    kinds = sorted(t.kind for t in snap.targets)
    assert kinds == ["cluster", "node", "site", "vm", "vm", "vm"]
    site = next(t for t in snap.targets if t.kind == "site")
    assert site.opd == "dinkes" and site.values["tls_days_left"] == 30.5
    vm101 = world.scalar(select(VmRow).where(VmRow.vmid == 101))
    assert vm101 is not None
    detail = health_queries.vm_detail(world, vm101.id, opd_id=vm101.opd_id)
    assert detail.label == "web-dinkes" and [t.kind for t in detail.targets] == ["vm", "guest"]
    assert detail.related == (("Portal Dinkes", f"/fleet/site/{site.site_id}"),)
    assert detail.checks and detail.events
    with pytest.raises(NotFound):
        health_queries.vm_detail(world, vm101.id, opd_id=vm101.opd_id + 1)
    assert site.site_id is not None
    with pytest.raises(NotFound):
        health_queries.site_detail(world, site.site_id, opd_id=vm101.opd_id + 1)
    scoped = health_queries.fleet(world, opd_id=vm101.opd_id)
    assert [o.code for o in scoped.opds] == ["dinkes"] and not scoped.infrastructure
    assert [v.name for v in scoped.opds[0].vms] == ["web-dinkes"]


def test_migration_0003_upgrades_and_downgrades(fresh_db_url: str) -> None:
    migrate.upgrade(fresh_db_url)
    engine = make_engine(fresh_db_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"health_targets", "health_events", "health_checks", "health_rollups", "job_status",
                "job_runs"} <= tables
        migrate.downgrade(fresh_db_url, "0001")
        inspector = inspect(engine)
        assert "health_targets" not in inspector.get_table_names()
        assert "vms" in inspector.get_table_names()
        migrate.upgrade(fresh_db_url)
        assert "job_runs" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
