"""Health-confirmed closure on SQLite and PostgreSQL: every linked target must pass before the deadline, and one run
whose closure breaks neither stops the others nor the app's worker thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.accounts import service as accounts
from pdn_ops.complaints import service as complaints
from pdn_ops.complaints.model import Action, State
from pdn_ops.complaints.service import ComplaintConfig, Draft
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.core.db.tables import AuditRow, SiteRow, VmRow
from pdn_ops.core.inventory import load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.health.tables import HealthCheckRow, HealthTargetRow
from pdn_ops.runs.closure import ClosurePolicy, complaint_link, evaluate_closures
from pdn_ops.runs.tables import RemediationRunRow
from pdn_ops.runs.worker import Clients, Worker, WorkerConfig
from tests.complaints.world import ROOT, jpeg, principal_named

FINISHED = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
POLICY = ClosurePolicy(needed=3, deadline=timedelta(minutes=15))
SITE = "http://127.0.10.1/"  # hosted on pdn1/101, which has SSH: its VM, guest and site are checked


@pytest.fixture
def sessions(fresh_db_url: str) -> Iterator[sessionmaker[Session]]:
    migrate.upgrade(fresh_db_url)
    engine = make_engine(fresh_db_url)
    with transaction(make_sessionmaker(engine)) as session:
        sync_inventory(session, load_inventory(ROOT / "inventory.example.yaml"))
    yield make_sessionmaker(engine)
    engine.dispose()


def targets(session: Session, vmid: int = 101) -> dict[str, int]:
    """The health targets the collectors keep for a VM: the VM, its guest (SSH) and the sites it hosts."""
    vm = session.scalar(select(VmRow).where(VmRow.vmid == vmid))
    assert vm is not None
    rows = [HealthTargetRow(kind="vm", ref=vm.key, vm_id=vm.id, state="up"),
            HealthTargetRow(kind="guest", ref=vm.key, vm_id=vm.id, state="up")]
    for site in session.scalars(select(SiteRow).where(SiteRow.vm_id == vm.id)):
        rows.append(HealthTargetRow(kind="site", ref=site.url, site_id=site.id, state="up"))
    session.add_all(rows)
    session.flush()
    return {r.kind: r.id for r in rows}


def checks(session: Session, target_id: int, *minutes: float, ok: bool = True) -> None:
    session.add_all(HealthCheckRow(target_id=target_id, at=FINISHED + timedelta(minutes=m), ok=ok) for m in minutes)
    session.flush()


def succeeded_run(session: Session, target: str = "pdn1/101", complaint_id: int | None = None,
                  key: str = "r") -> RemediationRunRow:
    """A run as the worker leaves it when its steps succeeded (or as older versions left one)."""
    run = RemediationRunRow(playbook="restart_service", target=target, opd_code="dinkes", params={}, risk="low",
                            requested_by="engineer", trigger="manual", idempotency_key=key, plan=[],
                            complaint_id=complaint_id, state="succeeded", outcome="succeeded", summary="ok",
                            created_at=FINISHED - timedelta(minutes=2), started_at=FINISHED - timedelta(minutes=1),
                            finished_at=FINISHED)
    session.add(run)
    session.flush()
    return run


def verified_complaint(session: Session, config: ComplaintConfig) -> int:
    accounts.ensure_demo_accounts(session)
    vm = session.scalar(select(VmRow.id).where(VmRow.vmid == 101))
    row = complaints.submit(session, principal_named(session, "admin-dinkes"),
                            Draft(asset=f"vm:{vm}", category="site_down", description="Portal puskesmas tidak bisa"),
                            [("layar.jpg", jpeg())], config=config)
    complaints.act(session, principal_named(session, "engineer"), row.id, Action.VERIFY, config=config)
    return row.id


def test_a_site_not_checked_since_the_run_holds_the_closure_until_it_passes_too(
        sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        ids = targets(session)
        run_id = succeeded_run(session).id
        checks(session, ids["vm"], 0.5, 1, 1.5)
        checks(session, ids["guest"], 0.5, 1, 1.5)  # the site checks every 10 minutes: nothing yet
        assert evaluate_closures(session, policy=POLICY, now=FINISHED + timedelta(minutes=2)) == []
        assert session.get(RemediationRunRow, run_id).closure == "confirming"  # type: ignore[union-attr]
        checks(session, ids["site"], 3, 6)
        assert evaluate_closures(session, policy=POLICY, now=FINISHED + timedelta(minutes=7)) == []
        checks(session, ids["site"], 9)
        decided = evaluate_closures(session, policy=POLICY, now=FINISHED + timedelta(minutes=10))
        assert decided == [(run_id, "confirmed")]
        evidence = session.get(RemediationRunRow, run_id).evidence  # type: ignore[union-attr]
        assert set(evidence["checks_after"]) == {"vm:pdn1/101", "guest:pdn1/101", f"site:{SITE}"}


def test_only_consecutive_passes_count_and_the_links_hear_the_outcome(sessions: sessionmaker[Session]) -> None:
    linked: list[tuple[int, dict[str, Any]]] = []
    alerts: list[int] = []

    def link(complaint_id: int, evidence: dict[str, Any], _session: Session) -> None:
        linked.append((complaint_id, evidence))

    def alert(row: RemediationRunRow, _session: Session) -> None:
        alerts.append(row.id)

    def all_targets(*minutes: float, ok: bool = True) -> None:
        for target_id in ids.values():
            checks(session, target_id, *minutes, ok=ok)

    with transaction(sessions) as session:
        ids = targets(session, vmid=103)  # pdn1/103: no SSH, no site; its VM is its one target
        ok = succeeded_run(session, target="pdn1/103", complaint_id=42, key="ok")
        all_targets(1, ok=False)
        all_targets(2, 3)
        all_targets(4, ok=False)
        all_targets(5)
        assert evaluate_closures(session, policy=POLICY, now=FINISHED + timedelta(minutes=6),
                                 complaint_link=link) == [], "two passes, a failure, one pass: no three in a row yet"
        all_targets(6, 7)
        assert evaluate_closures(session, policy=POLICY, now=FINISHED + timedelta(minutes=8),
                                 complaint_link=link) == [(ok.id, "confirmed")]
        assert linked and linked[0][0] == 42 and [c["ok"] for c in linked[0][1]["checks_after"]["vm:pdn1/103"]][-3:] == [True] * 3
        bad = succeeded_run(session, target="pdn1/103", key="bad")
        bad.finished_at = FINISHED + timedelta(minutes=8)
        all_targets(9, 10, 11, ok=False)
        assert evaluate_closures(session, policy=POLICY, now=FINISHED + timedelta(minutes=30),
                                 alert=alert) == [(bad.id, "ineffective")]
        assert (bad.state, alerts) == ("ineffective", [bad.id])


def test_checks_after_the_deadline_do_not_confirm_and_a_failing_target_is_ineffective(
        sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        ids = targets(session)
        late = succeeded_run(session, key="late")
        for kind in ("vm", "guest"):
            checks(session, ids[kind], 1, 2, 3)
        checks(session, ids["site"], 16, 17, 18)  # the worker was down; these came after the 15 minutes
        assert evaluate_closures(session, policy=POLICY, now=FINISHED + timedelta(minutes=20)) == [
            (late.id, "ineffective")]
        assert late.state == "ineffective"


def test_a_run_with_no_checked_target_is_never_confirmed(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        run = succeeded_run(session, target="pdn1/103")  # no health target at all
        assert evaluate_closures(session, policy=POLICY, now=FINISHED + timedelta(minutes=1)) == []
        assert evaluate_closures(session, policy=POLICY, now=FINISHED + timedelta(minutes=16)) == [
            (run.id, "ineffective")]


def test_one_broken_closure_neither_stops_the_worker_thread_nor_the_other_runs(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """A run linked to a complaint that does not exist (made before requests were checked), and one whose target
    is unreadable: the app's worker thread keeps going, each failure is recorded on its run and not retried, and
    the good run closes its complaint."""
    config = ComplaintConfig(data_dir=tmp_path)
    with transaction(sessions) as session:
        ids = targets(session)
        for target_id in ids.values():
            checks(session, target_id, 0.5, 1, 1.5)
        complaint_id = verified_complaint(session, config)
        missing = succeeded_run(session, complaint_id=424242, key="missing").id
        unreadable = succeeded_run(session, target="pdn1/not-a-vmid", key="unreadable").id
        good = succeeded_run(session, complaint_id=complaint_id, key="good").id
    worker = Worker(sessions.kw["bind"], sessions, None, Clients(proxmox=_no_proxmox),
                    WorkerConfig(worker_id="app:test", closure=ClosurePolicy(needed=3, deadline=timedelta(days=3650)),
                                 complaint_link=complaint_link(config)))
    rounds = iter(range(3))
    died: list[BaseException] = []

    def loop() -> None:
        try:
            worker.loop(lambda: next(rounds, None) is None, idle=0.01)
        except BaseException as exc:  # what would end the app's only worker thread
            died.append(exc)

    thread = threading.Thread(target=loop)
    thread.start()
    thread.join(60)
    worker.close()
    assert not thread.is_alive() and died == []
    with sessions() as session:
        runs = {r.id: r for r in session.scalars(select(RemediationRunRow))}
        assert runs[good].closure == "confirmed"
        assert complaints.get(session, principal_named(session, "engineer"), complaint_id).state == State.FIXED
        assert runs[missing].closure == "confirmed", "its checks passed; only the complaint link failed"
        assert "no such complaint" in runs[missing].evidence["complaint_not_updated"]
        assert runs[unreadable].closure == "error"
        notes = {(a.action, a.subject) for a in session.scalars(select(AuditRow))}
        assert ("remediation.complaint_not_updated", "complaint:424242") in notes
        assert ("remediation.closure_error", f"remediation_run:{unreadable}") in notes
        assert sum(1 for a in session.scalars(select(AuditRow.action)) if a == "remediation.closure_error") == 1, \
            "recorded once, not retried every round"


def _no_proxmox(_cluster: str) -> Any:
    raise AssertionError("no run is executed here")


def test_the_worker_thread_outlives_a_database_it_cannot_write_to(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Another process holds SQLite's write lock past the busy timeout: claiming fails, the loop logs it and goes
    on, and executes the queued run once the database is free again."""
    import sqlite3
    import time

    url = f"sqlite:///{tmp_path / 'locked.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as session:
        session.add(RemediationRunRow(playbook="retired_playbook", target="pdn1/101", opd_code="dinkes", params={},
                                      risk="low", requested_by="engineer", trigger="manual", idempotency_key="q",
                                      plan=[], state="pending", created_at=FINISHED))
    holder = sqlite3.connect(tmp_path / "locked.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    worker = Worker(engine, sessions, None, Clients(proxmox=_no_proxmox), WorkerConfig(worker_id="app:test"))
    stop = threading.Event()
    thread = threading.Thread(target=worker.loop, args=(stop.is_set,), kwargs={"idle": 0.05})
    try:
        with caplog.at_level("WARNING", logger="pdn_ops.runs.worker"):
            thread.start()
            deadline = time.monotonic() + 60
            # A locked database is an outage, logged once when it starts (not a traceback per attempt).
            while not any("remediation worker app:test waits" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline and thread.is_alive()
                time.sleep(0.05)
        holder.rollback()
        while (state := _state(sessions)) in ("pending", "running"):
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        assert state == "unknown", "executed once the lock was gone; an unknown playbook ends unknown"
    finally:
        holder.close()
        stop.set()
        thread.join(30)
        worker.close()
        engine.dispose()
    assert not thread.is_alive()


def _state(sessions: sessionmaker[Session]) -> str:
    with sessions() as session:
        return str(session.scalar(select(RemediationRunRow.state)))
