"""The /metrics snapshot is kept current by the jobs, target by target: a job re-renders what it wrote, a job that
wrote no health data re-reads nothing of it, and scrapes never reload while jobs feed the cache."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.app.hooks import feed_snapshot
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.core.db.tables import utcnow
from pdn_ops.core.jobs import JobSpec, JobWrapper, collect_nothing
from pdn_ops.health import queries
from pdn_ops.health import service as health
from pdn_ops.health.metrics import SnapshotCache, render_health
from pdn_ops.health.observations import ClusterObservation, GuestObservation, Mount, NodeObservation, SshObservation
from tests.health_world import SITE_A, TH, record_world

TLS_LEFT = "pdn_tls_cert_expiry_remaining_seconds"


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('incremental') / 'metrics.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        record_world(session)
    yield factory
    engine.dispose()


class Loads:
    """The cache's two sources, counting the full loads."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.full = 0

    def cache(self, ttl: float = 0.0) -> SnapshotCache:
        return SnapshotCache(self.load, ttl=ttl, load_delta=lambda targets, opds: queries.load_delta(
            self.sessions, targets_written=targets, opds=opds))

    def load(self) -> queries.HealthSnapshot:
        self.full += 1
        return queries.load_snapshot(self.sessions)


def samples(body: str) -> set[str]:
    return {line for line in body.splitlines() if not line.startswith(("#", TLS_LEFT))}


def run_job(sessions: sessionmaker[Session], cache: SnapshotCache, name: str, record: object) -> None:
    spec = JobSpec(name, "test", 30.0, collect_nothing, feed_snapshot(cache, record))  # type: ignore[arg-type]
    JobWrapper(sessions, after_run=cache.after_job).run(spec)


def next_cycle(session: Session, _: object) -> object:
    """VM 103 stops (DOWN after two cycles), the guest of VM 101 frees its disk, SITE_A is checked again."""
    at = utcnow()
    for step in (1, 0):
        when = at - timedelta(seconds=step)
        guests = tuple(GuestObservation(cluster="pdn1", vmid=vmid, node="pve1", name=f"vm{vmid}", type="qemu",
                                        status="running" if vmid == 101 else "stopped", cpu=0.5, maxcpu=2,
                                        mem=2**30, maxmem=2**31, disk=0, maxdisk=32 * 2**30, uptime=60)
                       for vmid in (101, 102, 103))
        health.record_cluster(session, ClusterObservation(
            cluster="pdn1", at=when, ok=True, quorate=True, nodes=(NodeObservation("pdn1", "pve1", True, 0.3),),
            guests=guests, api_calls=2, duration_s=0.05), thresholds=TH)
        health.record_ssh(session, [SshObservation(
            cluster="pdn1", vmid=101, at=when, ok=True, mounts=(Mount("/", 100 * 2**30, 40 * 2**30, 60 * 2**30),),
            mem_total_bytes=2**31, mem_available_bytes=2**30, load1=0.1,
            services={"nginx.service": "active", "php8.2-fpm.service": "active"})], thresholds=TH)
    return None


def test_a_job_updates_the_snapshot_for_the_targets_it_wrote_as_a_full_reload_would(
        sessions: sessionmaker[Session]) -> None:
    loads = Loads(sessions)
    cache = loads.cache()
    before = cache.body().decode()
    assert loads.full == 1 and 'pdn_guest_filesystem_used_ratio{vm_id=' in before
    run_job(sessions, cache, "proxmox:pdn1", next_cycle)
    body = cache.body().decode()
    full = render_health(queries.load_snapshot(sessions))
    assert samples(body) == samples(full), "the update gives what a full reload renders"
    assert samples(body) != samples(before)
    assert re.search(r'pdn_vm_up\{vm_id="\d+",cluster="pdn1",vmid="103",opd="\w+"\} 0', body), "VM 103 is DOWN"
    assert 'mount="/"} 0.4' in body and 'mount="/boot"' not in body, "the guest's filesystems were replaced"
    # A VM whose Proxmox disk figure is 0 takes its disk from its guest's df: re-rendered with the guest.
    assert re.search(r'pdn_vm_disk_used_bytes\{vm_id="\d+",cluster="pdn1",vmid="101",opd="\w+"\} 42949672960',
                     body)
    assert re.findall(f"^{TLS_LEFT}.*$", body, re.M) and loads.full == 1, "scrapes did not reload"
    assert {j.job for j in cache.get().jobs} >= {"proxmox:pdn1"}


def test_a_job_that_writes_no_health_data_touches_no_target(sessions: sessionmaker[Session]) -> None:
    loads = Loads(sessions)
    cache = loads.cache(ttl=3600.0)
    snapshot, body = cache.get(), cache.body()
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", seen)
    try:
        run_job(sessions, cache, "remediation:auto-rules", lambda session, _: None)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert cache.get().targets is snapshot.targets and cache.body() == body
    assert "remediation:auto-rules" in {j.job for j in cache.get().jobs}, "its own run is counted"
    assert not [s for s in statements if "health_targets" in s], "no target re-read"
    assert loads.full == 1


def test_nothing_is_kept_before_the_first_scrape_and_that_scrape_reads_everything(
        sessions: sessionmaker[Session]) -> None:
    loads = Loads(sessions)
    cache = loads.cache()
    run_job(sessions, cache, "proxmox:pdn1", next_cycle)
    assert loads.full == 0, "jobs do not build a snapshot nobody asked for"
    assert samples(cache.body().decode()) == samples(render_health(queries.load_snapshot(sessions)))
    assert loads.full == 1


def test_site_lines_follow_a_site_job(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    from pdn_ops.health.observations import SiteCheck

    loads = Loads(sessions)
    cache = loads.cache()
    cache.body()

    def sites(session: Session, _: object) -> object:
        return health.record_site_checks(session, [SiteCheck(url=SITE_A, at=utcnow(), ok=True, status_code=203,
                                                             total_s=0.25)], thresholds=TH)

    run_job(sessions, cache, "sites:60s", sites)
    body = cache.body().decode()
    assert re.search(r'pdn_site_http_status_code\{site_id="\d+",opd="\w+"\} 203', body)
    assert samples(body) == samples(render_health(queries.load_snapshot(sessions))) and loads.full == 1


def test_what_a_job_wrote_is_kept_when_the_update_cannot_read_the_database(sessions: sessionmaker[Session]) -> None:
    from sqlalchemy.exc import OperationalError

    loads = Loads(sessions)
    failing = [True]

    def delta(targets: bool, opds: bool) -> queries.SnapshotDelta:
        if failing[0]:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return queries.load_delta(sessions, targets_written=targets, opds=opds)

    from pdn_ops.health.observations import SiteCheck

    def sites(session: Session, _: object) -> object:
        return health.record_site_checks(session, [SiteCheck(url=SITE_A, at=utcnow(), ok=True, status_code=299,
                                                             total_s=0.5)], thresholds=TH)

    cache = SnapshotCache(loads.load, ttl=3600.0, load_delta=delta)
    cache.body()
    run_job(sessions, cache, "sites:60s", sites)  # its update fails (the job wrapper logs it)
    assert "} 299\n" not in cache.body().decode()
    failing[0] = False
    run_job(sessions, cache, "remediation:auto-rules", lambda session, _: None)
    body = cache.body().decode()
    assert re.search(r'pdn_site_http_status_code\{site_id="\d+",opd="\w+"\} 299', body), "applied at the next job"
    assert samples(body) == samples(render_health(queries.load_snapshot(sessions))) and loads.full == 1
