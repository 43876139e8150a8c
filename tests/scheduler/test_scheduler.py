"""The scheduler: one wrapper for every job, isolation between jobs, exactly one scheduling process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.core.db.tables import JobRunRow, JobStatusRow
from pdn_ops.core.inventory import Cluster, Site, Vm, load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.core.jobs import JobSpec, JobWrapper
from pdn_ops.core.locks import FileLeaderLock, leader_lock_for
from pdn_ops.core.scheduler import build_scheduler
from pdn_ops.health.jobs import HealthConfig, build_jobs
from pdn_ops.health.observations import ClusterObservation, SiteCheck, SshObservation
from pdn_ops.health.tables import HealthTargetRow

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30.0  # upper bound for conditions polled below; they normally hold within a second


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for: {what}")


@pytest.fixture
def db(fresh_db_url: str) -> Iterator[tuple[str, Engine, sessionmaker[Session]]]:
    migrate.upgrade(fresh_db_url)
    engine = make_engine(fresh_db_url)
    yield fresh_db_url, engine, make_sessionmaker(engine)
    engine.dispose()


def status(sessions: sessionmaker[Session], job: str) -> JobStatusRow | None:
    with sessions() as session:
        return session.get(JobStatusRow, job)


class RecordedFactory:
    """Collectors that return fixed observations: the real collectors plug in through the same protocol."""

    def __init__(self) -> None:
        self.built: list[str] = []

    def proxmox(self, cluster: Cluster) -> Callable[[], ClusterObservation]:
        self.built.append(f"proxmox:{cluster.name}")
        from pdn_ops.core.db.tables import utcnow
        return lambda: ClusterObservation(cluster=cluster.name, at=utcnow(), ok=True, quorate=True)

    def sites(self, sites: Sequence[Site]) -> Callable[[], Sequence[SiteCheck]]:
        self.built.append(f"sites:{len(sites)}")
        from pdn_ops.core.db.tables import utcnow
        return lambda: [SiteCheck(url=s.url, at=utcnow(), ok=True, status_code=200, total_s=0.01) for s in sites]

    def ssh(self, vms: Sequence[Vm]) -> Callable[[], Sequence[SshObservation]]:
        self.built.append(f"ssh:{len(vms)}")
        return lambda: []


def test_jobs_are_built_per_collector_and_interval_with_explicit_policies() -> None:
    inventory = load_inventory(ROOT / "inventory.example.yaml")
    factory = RecordedFactory()
    specs = build_jobs(inventory, factory, HealthConfig())
    assert [s.name for s in specs] == ["health:rollup-retention", "health:stale", "proxmox:pdn1", "sites:60s",
                                       "ssh:60s"]
    assert factory.built == ["proxmox:pdn1", "sites:2", "ssh:1"]
    assert [s.name for s in build_jobs(inventory, None, HealthConfig())] == ["health:rollup-retention",
                                                                              "health:stale"]
    scheduler = build_scheduler(specs, JobWrapper(sessionmaker()), start_now=False)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {s.name for s in specs}
    for spec in specs:
        job = jobs[spec.name]
        assert job.coalesce is True and job.max_instances == 1
        assert job.misfire_grace_time == spec.misfire_grace and job.executor == spec.name
    assert jobs["proxmox:pdn1"].misfire_grace_time == 15, "half the cluster's 30 s interval"


def test_the_wrapper_records_runs_and_collected_observations(db) -> None:
    _url, _engine, sessions = db
    inventory = load_inventory(ROOT / "inventory.example.yaml")
    with transaction(sessions) as session:
        sync_inventory(session, inventory)
    spec = next(s for s in build_jobs(inventory, RecordedFactory(), HealthConfig()) if s.kind == "sites")
    JobWrapper(sessions).run(spec)
    with sessions() as session:
        runs = session.scalars(select(JobRunRow)).all()
        assert [(r.job, r.outcome) for r in runs] == [("sites:60s", "succeeded")]
        assert runs[0].duration_s is not None and runs[0].finished_at is not None
        states = session.scalars(select(HealthTargetRow.state).where(HealthTargetRow.kind == "site")).all()
        assert states == ["up", "up"]
    row = status(sessions, "sites:60s")
    assert row is not None and (row.runs_total, row.errors_total, row.last_ok) == (1, 0, True)


def test_a_failing_job_is_recorded_reported_and_does_not_stop_the_others(db) -> None:
    _url, _engine, sessions = db

    def broken() -> None:
        raise ConnectionError("proxmox said 500")

    failing = JobSpec("proxmox:broken", "proxmox", 0.2, broken, lambda s, r: None)
    healthy = JobSpec("sites:fast", "sites", 0.2, lambda: None, lambda s, r: None)
    reported: list[BaseException] = []
    scheduler = build_scheduler([failing, healthy], JobWrapper(sessions))

    def on_error(event: JobExecutionEvent) -> None:
        if event.exception is not None:
            reported.append(event.exception)

    scheduler.add_listener(on_error, EVENT_JOB_ERROR)
    scheduler.start()
    try:
        wait_for(lambda: (s := status(sessions, "proxmox:broken")) is not None and s.errors_total >= 2,
                 "two failed runs recorded")
        wait_for(lambda: (s := status(sessions, "sites:fast")) is not None and s.runs_total >= 3,
                 "the healthy job keeps running")
    finally:
        scheduler.shutdown(wait=True)
    row = status(sessions, "proxmox:broken")
    assert row is not None and row.last_ok is False and row.last_error == "ConnectionError: proxmox said 500"
    assert any(isinstance(e, ConnectionError) for e in reported), "APScheduler saw the exception: not swallowed"
    with sessions() as session:
        failed = session.scalars(select(JobRunRow).where(JobRunRow.job == "proxmox:broken")).all()
        assert failed and all(r.outcome == "failed" and "500" in r.error for r in failed)
    healthy_row = status(sessions, "sites:fast")
    assert healthy_row is not None and healthy_row.errors_total == 0


def test_a_locked_database_is_a_failed_run_logged_once_per_outage_not_a_traceback(db, caplog, monkeypatch) -> None:
    """Under load the scheduler's writes can wait past SQLite's busy timeout: that is not a bug. The run is
    recorded failed ("locked"), one line says the outage started (none per further run, none a traceback), and
    the next run that succeeds ends it."""
    import logging

    from sqlalchemy.exc import OperationalError

    from pdn_ops.core import jobs
    from pdn_ops.core.db.faults import OutageLog

    # A log of its own: no outage left open by another test, and an end as soon as a run succeeds.
    monkeypatch.setattr(jobs, "JOB_OUTAGES", OutageLog(logging.getLogger("pdn_ops.core.jobs"), what="job runs fail",
                                                       quiet_seconds=0.0))
    _url, _engine, sessions = db
    locked = True

    def record(_session: Session, _result: object) -> None:
        if locked:
            raise OperationalError("UPDATE job_status ...", {}, Exception("database is locked"))

    spec = JobSpec("sites:busy", "sites", 60, lambda: None, record)
    wrapper = JobWrapper(sessions)
    with caplog.at_level("INFO", logger="pdn_ops.core.jobs"):
        wrapper.run(spec)  # does not raise
        wrapper.run(spec)
        failed = status(sessions, "sites:busy")
        assert failed is not None and failed.last_failure == "locked" and failed.last_ok is False
        locked = False
        wrapper.run(spec)
    lines = [r for r in caplog.records if r.name == "pdn_ops.core.jobs"]
    assert not any(r.exc_info for r in lines), "no traceback for a locked database"
    started = [r for r in lines if "database locked" in r.getMessage() and "until it passes" in r.getMessage()]
    assert len(started) == 1, [r.getMessage() for r in lines]
    assert any("over after" in r.getMessage() for r in lines), "the outage's end is logged"
    row = status(sessions, "sites:busy")
    assert row is not None and (row.runs_total, row.errors_total, row.last_ok) == (3, 2, True)
    assert row.last_failure is None and row.last_success_at is not None
    with sessions() as session:
        runs = session.scalars(select(JobRunRow).where(JobRunRow.job == "sites:busy").order_by(JobRunRow.id)).all()
        assert [r.outcome for r in runs] == ["failed", "failed", "succeeded"]


def test_a_run_whose_calls_were_refused_is_a_failed_run_with_its_class_and_its_data_kept(db) -> None:
    _url, _engine, sessions = db
    inventory = load_inventory(ROOT / "inventory.example.yaml")
    with transaction(sessions) as session:
        sync_inventory(session, inventory)
    from pdn_ops.core.db.tables import utcnow
    from pdn_ops.health.observations import FailureClass

    class Revoked(RecordedFactory):
        def proxmox(self, cluster: Cluster) -> Callable[[], ClusterObservation]:
            return lambda: ClusterObservation(cluster=cluster.name, at=utcnow(), ok=False, failure=FailureClass.AUTH,
                                              detail="401 authentication failure")

    spec = next(s for s in build_jobs(inventory, Revoked(), HealthConfig()) if s.kind == "proxmox")
    wrapper = JobWrapper(sessions)
    wrapper.run(spec)
    wrapper.run(spec)
    row = status(sessions, spec.name)
    assert row is not None and (row.runs_total, row.errors_total, row.last_ok) == (2, 2, False)
    assert (row.last_failure, row.interval_s) == ("auth", spec.interval_s)
    assert row.last_error == "auth: 401 authentication failure" and row.last_success_at is None
    with sessions() as session:
        assert [r.outcome for r in session.scalars(select(JobRunRow))] == ["failed", "failed"]
        cluster = session.scalar(select(HealthTargetRow).where(HealthTargetRow.kind == "cluster"))
        assert cluster is not None and (cluster.state, cluster.failure) == ("down", "auth"), "what it saw is kept"


def test_run_failure_classes_of_each_collector() -> None:
    from pdn_ops.core.db.tables import utcnow
    from pdn_ops.health.jobs import run_failure_of_sites, run_failure_of_ssh
    from pdn_ops.health.observations import FailureClass

    def ssh(ok: bool, failure: FailureClass | None = None) -> SshObservation:
        return SshObservation(cluster="c", vmid=1, at=utcnow(), ok=ok, failure=failure)

    refused = run_failure_of_ssh([ssh(False, FailureClass.AUTH), ssh(False, FailureClass.AUTH)])
    assert refused is not None and refused.failure == "auth"
    assert run_failure_of_ssh([ssh(False, FailureClass.AUTH), ssh(True)]) is None, "one answer is usable data"
    assert run_failure_of_ssh([ssh(False, FailureClass.REFUSED)]) is None, "a guest that is down is data, not us"
    empty = run_failure_of_sites([], expected=3)
    assert empty is not None and empty.failure == "empty"
    assert run_failure_of_sites([], expected=0) is None


@pytest.mark.parametrize("engine_name", ["sqlite"])
def test_a_slow_collector_never_delays_another(db) -> None:
    _url, _engine, sessions = db
    release = threading.Event()

    def hung() -> None:
        release.wait(WAIT_S)

    slow = JobSpec("ssh:slow", "ssh", 0.2, hung, lambda s, r: None)
    fast = JobSpec("sites:fast", "sites", 0.2, lambda: None, lambda s, r: None)
    scheduler = build_scheduler([slow, fast], JobWrapper(sessions))
    scheduler.start()
    try:
        wait_for(lambda: (s := status(sessions, "ssh:slow")) is not None and s.last_started_at is not None,
                 "the slow job started")
        wait_for(lambda: (s := status(sessions, "sites:fast")) is not None and s.runs_total >= 5,
                 "the fast job ran five times meanwhile")
        slow_row = status(sessions, "ssh:slow")
        assert slow_row is not None and slow_row.runs_total == 0, "the slow job is still in its first run"
        with sessions() as session:
            running = session.scalars(select(JobRunRow.outcome).where(JobRunRow.job == "ssh:slow")).all()
        assert running == ["running"], "max_instances=1: no second copy of the slow job was started"
    finally:
        release.set()
        scheduler.shutdown(wait=True)
    slow_row = status(sessions, "ssh:slow")
    assert slow_row is not None and slow_row.runs_total >= 1


def probe(url: str, log: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("w") as errors:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "tests.scheduler.leader_probe", url], cwd=ROOT, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, text=True)


def stop(process: subprocess.Popen[str], *, crash: bool = False) -> None:
    if crash and process.poll() is None:
        process.terminate()
    if process.stdin is not None and not process.stdin.closed:
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()  # the graceful way: the probe stops its scheduler and releases the lock
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def probe_jobs(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        rows = session.scalars(select(JobStatusRow).where(JobStatusRow.job.like("probe:%"))).all()
        return {row.job: row.runs_total for row in rows}


def test_exactly_one_of_two_processes_schedules_and_the_other_takes_over(db, tmp_path: Path) -> None:
    url, _engine, sessions = db
    first, second = probe(url, tmp_path / "a.log"), probe(url, tmp_path / "b.log")
    try:
        wait_for(lambda: any(n >= 3 for n in probe_jobs(sessions).values()), "one process runs the job")
        leader_job = max(probe_jobs(sessions), key=lambda job: probe_jobs(sessions)[job])
        runs_then = probe_jobs(sessions)[leader_job]
        wait_for(lambda: probe_jobs(sessions)[leader_job] >= runs_then + 5, "the leader keeps running it")
        assert list(probe_jobs(sessions)) == [leader_job], "the other process never ran the job"
        leader, follower = (first, second) if leader_job == f"probe:{first.pid}" else (second, first)
        assert leader_job == f"probe:{leader.pid}"
        stop(leader, crash=True)  # a crash: the lock dies with the process (flock) or its connection (advisory lock)
        wait_for(lambda: probe_jobs(sessions).get(f"probe:{follower.pid}", 0) >= 2, "the follower takes over")
    finally:
        for process in (first, second):
            stop(process)
    assert first.returncode is not None and second.returncode is not None
    assert follower.returncode == 0, (tmp_path / "b.log").read_text() + (tmp_path / "a.log").read_text()


def test_the_sqlite_lock_file_sits_next_to_the_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pdn.sqlite3'}")
    lock = leader_lock_for(engine)
    assert isinstance(lock, FileLeaderLock) and lock.path == tmp_path / "pdn.sqlite3.scheduler.lock"
    other = FileLeaderLock(lock.path)
    assert lock.try_acquire() and not other.try_acquire() and lock.held()
    assert lock.path.read_text().strip() == str(os.getpid())
    lock.release()
    assert other.try_acquire()
    other.release()
    engine.dispose()


def test_the_app_starts_one_scheduler_only_when_settings_say_so(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from pdn_ops.app.factory import create_app
    from pdn_ops.app.hooks import scheduler_hook, sync_inventory_at_start
    from pdn_ops.app.runtime import build_runtime
    from pdn_ops.core.scheduler import SchedulerService
    from pdn_ops.core.settings import load_settings

    url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    migrate.upgrade(url)
    inventory = ROOT / "inventory.example.yaml"
    factory = RecordedFactory()
    settings = load_settings(demo=True, database_url=url, inventory=inventory, run_scheduler=True)
    app = create_app(build_runtime(settings), start_hooks=[sync_inventory_at_start, scheduler_hook(factory)])
    sessions = app.state.runtime.sessions
    with TestClient(app):
        service = app.state.runtime.scheduler
        assert isinstance(service, SchedulerService)
        assert service.became_leader.wait(WAIT_S) and service.scheduler is not None
        assert {job.id for job in service.scheduler.get_jobs()} == {
            "health:rollup-retention", "health:stale", "proxmox:pdn1", "sites:60s", "ssh:60s",
            "complaints:close-stale", "complaints:sla-at-risk", "complaints:photo-janitor", "remediation:auto-rules",
            "remediation:alerts", "health:fast-lane",
            "core:job-runs-retention", "accounts:retention"}
        wait_for(lambda: (s := status(sessions, "sites:60s")) is not None and s.runs_total >= 1,
                 "the site job ran at start")
        with sessions() as session:
            states = session.scalars(select(HealthTargetRow.state).where(HealthTargetRow.kind == "site")).all()
        assert states == ["up", "up"]
        # An event wakes a job at once (the fast lane after a run); an unknown job is not woken.
        wait_for(lambda: (s := status(sessions, "health:fast-lane")) is not None and s.runs_total >= 1,
                 "the fast lane ran at start")
        before = status(sessions, "health:fast-lane")
        assert before is not None and service.wake("health:fast-lane") and not service.wake("no-such-job")
        wait_for(lambda: (s := status(sessions, "health:fast-lane")) is not None and s.runs_total > before.runs_total,
                 "the woken fast lane ran")
    assert service.scheduler is None, "stopped with the app"
    assert not service.wake("health:fast-lane"), "no scheduler in this process any more"
    app.state.runtime.engine.dispose()

    quiet_settings = load_settings(demo=True, database_url=url, inventory=inventory, run_scheduler=False)
    quiet = create_app(build_runtime(quiet_settings), start_hooks=[scheduler_hook(factory)])
    with TestClient(quiet):
        assert quiet.state.runtime.scheduler is None
    quiet.state.runtime.engine.dispose()


@pytest.mark.parametrize("engine_name", ["postgresql"])
def test_the_advisory_lock_admits_one_holder_and_knows_when_it_holds(db) -> None:
    from pdn_ops.core.locks import PgAdvisoryLeaderLock

    _url, engine, _sessions = db
    first, second = leader_lock_for(engine), PgAdvisoryLeaderLock(engine)
    assert isinstance(first, PgAdvisoryLeaderLock)
    assert first.try_acquire() and first.held()
    assert not second.try_acquire() and not second.held()
    first.release()
    assert not first.held()
    assert second.try_acquire() and second.held()
    second.release()


@pytest.mark.parametrize("engine_name", ["sqlite"])
def test_a_site_that_breaks_is_down_within_two_runs_of_its_job(db) -> None:
    from dataclasses import replace

    from pdn_ops.core.db.tables import utcnow
    from pdn_ops.health.observations import FailureClass

    _url, _engine, sessions = db
    inventory = load_inventory(ROOT / "inventory.example.yaml")
    with transaction(sessions) as session:
        sync_inventory(session, inventory)
    broken = threading.Event()

    class Breaking(RecordedFactory):
        def sites(self, sites: Sequence[Site]) -> Callable[[], Sequence[SiteCheck]]:
            def check() -> list[SiteCheck]:
                down = broken.is_set()
                return [SiteCheck(url=s.url, at=utcnow(), ok=not down, status_code=None if down else 200,
                                  failure=FailureClass.REFUSED if down else None) for s in sites]
            return check

    spec = next(s for s in build_jobs(inventory, Breaking(), HealthConfig()) if s.kind == "sites")
    scheduler = build_scheduler([replace(spec, interval_s=0.3)], JobWrapper(sessions))

    def site_states() -> list[str]:
        with sessions() as session:
            return list(session.scalars(select(HealthTargetRow.state).where(HealthTargetRow.kind == "site")))

    scheduler.start()
    try:
        wait_for(lambda: site_states() == ["up", "up"], "both sites up")
        broken.set()
        wait_for(lambda: site_states() == ["down", "down"], "both sites down")
    finally:
        scheduler.shutdown(wait=True)
    from pdn_ops.health.tables import HealthCheckRow, HealthEventRow

    with sessions() as session:
        for target_id in session.scalars(select(HealthTargetRow.id).where(HealthTargetRow.kind == "site")):
            down_at = session.scalar(select(HealthEventRow.at).where(
                HealthEventRow.target_id == target_id, HealthEventRow.new_state == "down"))
            failed = session.scalars(select(HealthCheckRow.at).where(
                HealthCheckRow.target_id == target_id, HealthCheckRow.ok.is_(False),
                HealthCheckRow.at <= down_at)).all()
            assert len(failed) == 2, "DOWN on the second failed run of the job, not later"


def test_staleness_waits_for_three_runs_of_the_slowest_collector(db) -> None:
    from datetime import timedelta

    from pdn_ops.core.db.tables import utcnow

    _url, _engine, sessions = db
    inventory = load_inventory(ROOT / "inventory.example.yaml")
    hourly = inventory.model_copy(update={"sites": [s.model_copy(update={"interval": 3600}) for s in inventory.sites]})
    with transaction(sessions) as session:
        sync_inventory(session, hourly)
    specs = {s.name: s for s in build_jobs(hourly, RecordedFactory(), HealthConfig(stale_after=timedelta(minutes=15)))}
    JobWrapper(sessions).run(specs["sites:3600s"])
    with transaction(sessions) as session:  # as if the last check was 20 minutes ago
        for row in session.scalars(select(HealthTargetRow)):
            row.last_check_at = utcnow() - timedelta(minutes=20)
    JobWrapper(sessions).run(specs["health:stale"])
    with sessions() as session:
        states = session.scalars(select(HealthTargetRow.state).where(HealthTargetRow.kind == "site")).all()
    assert states == ["up", "up"], "20 minutes of silence is normal for an hourly check"
