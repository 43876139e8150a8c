"""Automatic remediation in the product, on SQLite and PostgreSQL: the scheduler's job reads the health model the
collectors write, applies the policy (opt-in, approvals, cooldown, attempts per hour, the off switch, maintenance
windows) and only enqueues; the worker executes against fakepve and closure confirms from the same checks.

Health is recorded through the real health services from observations built here (the lab end-to-end test uses
the real collectors); every job run goes through the scheduler's one wrapper.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.accounts import service as accounts
from pdn_ops.accounts.model import Role
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import AuditRow, JobRunRow
from pdn_ops.core.inventory import Inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.core.jobs import JobSpec, JobWrapper
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
from pdn_ops.notify.tables import NotifyOutboxRow
from pdn_ops.runs import alerts as remediation_alerts
from pdn_ops.runs import auto as remediation_auto
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.closure import ClosurePolicy
from pdn_ops.runs.jobs import remediation_jobs
from pdn_ops.runs.tables import AutoRuleRow, RemediationRunRow
from pdn_ops.runs.worker import Clients, Worker, WorkerConfig
from tests.remediation.pve_support import executor, tasks
from tests.remediation.world import add_vms, inventory, write_inventory

URL = "https://portal.dinkes.example.go.id/"
T = Thresholds()
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
PUBLIC = "https://pdn.example.go.id"


@pytest.fixture
def world(fakepve: Any, fakepve_cafile: str, tmp_path: Path, ssh_guest: Any,
          sessions: sessionmaker[Session]) -> Inventory:
    """VMs 101-103 (stopped) of Dinas Kesehatan; VM 101 hosts the portal and has SSH, nginx declared."""
    add_vms(fakepve, range(101, 104))
    path = write_inventory(tmp_path, fakepve, fakepve_cafile, ssh_guest)
    path.write_text(path.read_text() + f"sites:\n  - {{url: '{URL}', opd: dinkes, vm: pve/101}}\n")
    loaded = inventory(path)
    with transaction(sessions) as session:
        sync_inventory(session, loaded)
    return loaded


class Clock:
    """The instant of the next round of checks: every round is one check interval after the previous one."""

    def __init__(self) -> None:
        self.now = START

    def tick(self) -> datetime:
        self.now += timedelta(seconds=60)
        return self.now


def observe(sessions: sessionmaker[Session], at: datetime, *, vm: str = "stopped", site_ok: bool = False,
            disk_ratio: float = 0.3, nginx: str = "active", guest_ok: bool | None = None) -> None:
    """One round of every collector for VM pve/101 (Proxmox, the site, the guest over SSH), recorded as the
    scheduler's jobs record it."""
    guest_up = vm == "running" if guest_ok is None else guest_ok
    size = 10 * 2**30
    with transaction(sessions) as session:
        health.record_cluster(session, ClusterObservation(
            cluster="pve", at=at, ok=True, quorate=True, nodes=(NodeObservation("pve", "pve1", True),),
            guests=tuple(GuestObservation("pve", vmid, "pve1", f"vm{vmid}", "qemu", vm if vmid == 101 else "running")
                         for vmid in (101, 102, 103))), thresholds=T)
        health.record_site_checks(session, [SiteCheck(url=URL, at=at, ok=site_ok, status_code=200 if site_ok else None,
                                                      failure=None if site_ok else FailureClass.REFUSED)],
                                  thresholds=T)
        if guest_up:
            used = int(size * disk_ratio)
            guest = SshObservation(cluster="pve", vmid=101, at=at, ok=True,
                                   mounts=(Mount("/", size, used, size - used),),
                                   services={"nginx.service": nginx, "php8.2-fpm.service": "active"})
        else:
            guest = SshObservation(cluster="pve", vmid=101, at=at, ok=False, failure=FailureClass.TIMEOUT)
        health.record_ssh(session, [guest], thresholds=T)


def job(world: Inventory, name: str = "remediation:auto-rules", policy: rem.Policy | None = None) -> JobSpec:
    return next(s for s in remediation_jobs(world, policy=policy, public_url=PUBLIC) if s.name == name)


def run_job(sessions: sessionmaker[Session], spec: JobSpec) -> None:
    JobWrapper(sessions).run(spec)


def runs(sessions: sessionmaker[Session]) -> list[RemediationRunRow]:
    with sessions() as session:
        return list(session.scalars(select(RemediationRunRow).order_by(RemediationRunRow.id)))


def make_worker(sessions: sessionmaker[Session], world: Inventory, pve: Any, cafile: str,
                alert: Any = None) -> Worker:
    return Worker(sessions.kw["bind"], sessions, world, Clients(proxmox=lambda _c: executor(pve, cafile)),
                  WorkerConfig(worker_id="w1", closure=ClosurePolicy(needed=3), alert=alert))


def add_rule(sessions: sessionmaker[Session], world: Inventory, playbook: str = "restart_vm", **kw: Any) -> int:
    with transaction(sessions) as session:
        view = remediation_auto.create_rule(session, world, target=kw.pop("target", "pve/101"), playbook=playbook,
                                            min_failed_checks=kw.pop("min_failed_checks", 3),
                                            vm_status=kw.pop("vm_status", "stopped"), params=kw.pop("params", {}),
                                            created_by="eng1", policy=rem.Policy())
        return view.id


def engineer(sessions: sessionmaker[Session], name: str, *, phone: str | None = None, email: str | None = None,
             language: str = "id") -> None:
    with transaction(sessions) as session:
        user = accounts.create_user(session, username=name, password="x" * 12, role=Role.ENGINEER,
                                    language=language)
        user.phone, user.email = phone, email


# --- the scheduled job, end to end against fakepve ----------------------------------------------------------------

def test_stopped_vm_rule_fires_from_the_health_model_once_and_closes_from_the_checks(
        sessions: sessionmaker[Session], world: Inventory, fakepve: Any, fakepve_cafile: str) -> None:
    add_rule(sessions, world)
    clock = Clock()
    spec = job(world)
    for round_ in range(3):
        observe(sessions, clock.tick())
        run_job(sessions, spec)
        if round_ < 2:
            assert runs(sessions) == [], "two failed checks are not enough for a rule that needs three"
    [run] = runs(sessions)
    assert (run.playbook, run.target, run.state, run.approvals_needed) == ("restart_vm", "pve/101", "pending", 0)
    assert run.trigger.startswith("rule:") and run.requested_by == "policy-engine"
    # The same signals evaluated again (the job runs every 15 s, checks come every minute): no second run.
    run_job(sessions, spec)
    run_job(sessions, spec)
    assert len(runs(sessions)) == 1
    worker = make_worker(sessions, world, fakepve, fakepve_cafile)
    try:
        assert worker.run_pending() == 1
        assert tasks(fakepve, 101) == ["qmstart"]
        # Later rounds see the VM and its site again: three passing checks of every linked target close it.
        closed: list[tuple[int, str]] = []
        for _ in range(4):
            observe(sessions, datetime.now(UTC) + timedelta(seconds=len(closed)), vm="running", site_ok=True)
            run_job(sessions, spec)  # no new run: the site is up
            closed += worker.close_runs()
            if closed:
                break
            clock.tick()
    finally:
        worker.close()
    [done] = runs(sessions)
    assert closed == [(done.id, "confirmed")] and (done.outcome, done.closure) == ("succeeded", "confirmed")
    # No complaint: the incident closed the same way, with the evidence on the run.
    assert done.complaint_id is None and done.evidence["run_log"] and done.evidence["checks_after"]
    with sessions() as session:
        count = session.scalar(select(func.count()).select_from(JobRunRow).where(
            JobRunRow.job == "remediation:auto-rules", JobRunRow.outcome == "succeeded"))
    assert count is not None and count >= 6


def test_a_rule_whose_playbook_needs_approval_enqueues_a_run_that_waits_for_an_engineer(
        sessions: sessionmaker[Session], world: Inventory, fakepve: Any, fakepve_cafile: str) -> None:
    """The issue: restarting a VM, resizing and rolling back need an engineer's explicit approval."""
    add_rule(sessions, world, vm_status=None)  # restart_vm whatever the VM's state: a real restart
    clock = Clock()
    for _ in range(3):
        observe(sessions, clock.tick(), vm="running", site_ok=False)
    run_job(sessions, job(world))
    [run] = runs(sessions)
    assert (run.state, run.approvals_needed) == ("awaiting_approval", 1)
    worker = make_worker(sessions, world, fakepve, fakepve_cafile)
    try:
        assert worker.run_pending() == 0
    finally:
        worker.close()
    assert tasks(fakepve, 101) == []
    with transaction(sessions) as session:
        assert svc.approve(session, run.id, engineer="eng2").state == "approved"


def test_a_rule_fires_on_its_own_symptom_only(sessions: sessionmaker[Session], world: Inventory) -> None:
    """A full disk never triggers the service restart, a crashed nginx never the cleanup."""
    add_rule(sessions, world, "free_disk", vm_status="running", params={"cleanup": "journal"})
    add_rule(sessions, world, "restart_service", vm_status="running", params={"unit": "nginx.service"})
    clock = Clock()
    for _ in range(3):
        observe(sessions, clock.tick(), vm="running", site_ok=False, nginx="failed")
    run_job(sessions, job(world))
    [run] = runs(sessions)
    assert (run.playbook, run.params, run.state) == ("restart_service", {"unit": "nginx.service"}, "pending")
    with transaction(sessions) as session:
        svc.cancel(session, run.id, engineer="eng1")
        signals = remediation_auto.signals_for(session, "pve/101")
    assert signals.guest_problems == {"service_inactive": 3}
    assert signals.inactive_services == {"nginx.service"} and signals.vm_status == "running"
    assert signals.consecutive_failed_checks == 3
    for _ in range(3):
        observe(sessions, clock.tick(), vm="running", site_ok=True, disk_ratio=0.97)
    later = datetime.now(UTC) + timedelta(minutes=61)  # past the cooldown of the cancelled run
    with transaction(sessions) as session:
        run2, why = svc.evaluate_rules(session, world, target="pve/101",
                                       signals=remediation_auto.signals_for(session, "pve/101"),
                                       policy=rem.Policy(), now=later)
        assert run2 is not None and run2.playbook == "free_disk", why


def test_policy_holds_rules_back_end_to_end(sessions: sessionmaker[Session], world: Inventory) -> None:
    """Global switch, disabled and retired rules, maintenance windows, cooldown and attempts per hour."""
    rule_id = add_rule(sessions, world)
    clock = Clock()
    for _ in range(3):
        observe(sessions, clock.tick())

    def evaluate(now: datetime) -> tuple[int | None, str]:
        with transaction(sessions) as session:
            [result] = remediation_auto.evaluate_all(session, world, policy=rem.Policy(), now=now) or [
                remediation_auto.Evaluation("", None, "nothing evaluated")]
            return result.run_id, result.reason

    with transaction(sessions) as session:
        svc.set_auto_enabled(session, False, changed_by="eng1")
    assert evaluate(clock.now) == (None, "nothing evaluated")
    with transaction(sessions) as session:
        svc.set_auto_enabled(session, True, changed_by="eng1")
        remediation_auto.set_rule_enabled(session, rule_id, False, actor="eng1", policy=rem.Policy())
    assert evaluate(clock.now) == (None, "nothing evaluated")
    with transaction(sessions) as session:
        remediation_auto.set_rule_enabled(session, rule_id, True, actor="eng1", policy=rem.Policy())
        window = remediation_auto.create_window(session, world, starts_at=clock.now - timedelta(minutes=1),
                                                ends_at=clock.now + timedelta(hours=1), target=None,
                                                reason="UPS test", created_by="eng1", now=clock.now)
    run_id, why = evaluate(clock.now)
    assert run_id is None and "maintenance" in why
    with transaction(sessions) as session:
        assert remediation_auto.end_window(session, window.id, actor="eng1", now=clock.now).status == "ended"
    # Cooldown and attempts: each attempt fails at once (cancelled), the rule keeps seeing the site down.
    started: list[int] = []
    for minute in range(0, 60, 11):
        now = clock.now + timedelta(minutes=minute, seconds=1)
        observe(sessions, now)
        run_id, why = evaluate(now)
        if run_id is not None:
            started.append(run_id)
            with transaction(sessions) as session:
                svc.cancel(session, run_id, engineer="eng1")
        elif started:
            assert "cooldown" in why or "attempts" in why, why
    assert len(started) == rem.Policy().max_attempts_per_hour
    with transaction(sessions) as session:
        remediation_auto.retire_rule(session, rule_id, actor="eng1")
        assert remediation_auto.list_rules(session, policy=rem.Policy()) == []
        assert session.get(AutoRuleRow, rule_id) is not None, "retired, never deleted"
    assert evaluate(clock.now + timedelta(hours=3)) == (None, "nothing evaluated")


@pytest.mark.parametrize("engine_name", ["postgresql"])
def test_two_concurrent_evaluations_of_the_same_signals_enqueue_one_run(sessions: sessionmaker[Session],
                                                                          world: Inventory) -> None:
    """Two schedulers during a leader hand-over: the second transaction waits on the first one's unique index
    entries, then finds the run (its own insert is refused), whichever order the two take."""
    add_rule(sessions, world)
    clock = Clock()
    for _ in range(3):
        observe(sessions, clock.tick())
    first = sessions()
    first.begin()
    mine, _ = svc.evaluate_rules(first, world, target="pve/101", signals=remediation_auto.signals_for(first, "pve/101"),
                                 policy=rem.Policy(), now=clock.now)
    assert mine is not None
    answers: list[tuple[int | None, str]] = []

    def second() -> None:
        with transaction(sessions) as session:
            run, why = svc.evaluate_rules(session, world, target="pve/101",
                                          signals=remediation_auto.signals_for(session, "pve/101"),
                                          policy=rem.Policy(), now=clock.now + timedelta(seconds=1))
            answers.append((run.id if run is not None else None, why))

    thread = threading.Thread(target=second)
    thread.start()
    first.commit()
    first.close()
    thread.join(60)
    assert answers and answers[0][0] is None, answers
    assert len(runs(sessions)) == 1


# --- alerts --------------------------------------------------------------------------------------------------------

def test_failed_unknown_and_ineffective_runs_alert_engineers_once_per_run(sessions: sessionmaker[Session],
                                                                          world: Inventory) -> None:
    engineer(sessions, "eng-a", phone="+6281234567001", email="a@diskominfo.example.go.id")
    engineer(sessions, "eng-b", email="b@diskominfo.example.go.id", language="en")
    engineer(sessions, "eng-quiet")  # no contact: nothing to send
    with transaction(sessions) as session:
        gone = accounts.create_user(session, username="eng-gone", password="x" * 12, role=Role.ENGINEER)
        gone.phone, gone.active = "+6281234567009", False
    now = datetime.now(UTC)
    ids: dict[str, int] = {}
    with transaction(sessions) as session:
        for vmid, outcome in ((101, "failed"), (102, "unknown"), (103, "cancelled")):
            run = svc.request_run(session, world, playbook="restart_vm", target=f"pve/{vmid}", params={},
                                  requester=svc.Requester("eng1"), idempotency_key=f"a{vmid}", policy=rem.Policy(),
                                  trigger="rule:0")
            if outcome == "cancelled":
                svc.cancel(session, run.id, engineer="eng1")
            else:
                run.state = run.outcome = outcome
                run.started_at, run.finished_at = now - timedelta(seconds=30), now
            ids[outcome] = run.id
    sweep = job(world, "remediation:alerts")
    run_job(sessions, sweep)
    run_job(sessions, sweep)
    with sessions() as session:
        rows = list(session.scalars(select(NotifyOutboxRow).order_by(NotifyOutboxRow.id)))
        alerted = [a.subject for a in session.scalars(select(AuditRow).where(AuditRow.action == "remediation.alerted"))]
    # Two runs x (WhatsApp + e-mail for eng-a, e-mail for eng-b), once however often the sweep runs.
    assert len(rows) == 6 and {r.event for r in rows} == {"remediation_failed"}
    assert sorted(alerted) == sorted(f"remediation_run:{ids[o]}" for o in ("failed", "unknown"))
    by_address = {(r.address, r.idempotency_key.split(":")[1]): r for r in rows}
    english = by_address[("b@diskominfo.example.go.id", str(ids["unknown"]))]
    assert english.language == "en" and english.params["playbook"] == "Restart VM (outcome unknown)"
    indonesian = by_address[("+6281234567001", str(ids["failed"]))]
    assert indonesian.params["link"] == f"{PUBLIC}/remediation/runs/{ids['failed']}"
    assert "gagal" in str(indonesian.params["playbook"]) and indonesian.urgent


def test_an_ineffective_run_alerts_through_the_closure_seam_and_the_sweep_adds_nothing(
        sessions: sessionmaker[Session], world: Inventory, fakepve: Any, fakepve_cafile: str) -> None:
    engineer(sessions, "eng-a", phone="+6281234567001")
    with transaction(sessions) as session:
        run = svc.request_run(session, world, playbook="restart_vm", target="pve/101", params={},
                              requester=svc.Requester("eng1"), idempotency_key="x", policy=rem.Policy(),
                              trigger="rule:0")
        run.state = run.outcome = "succeeded"
        run.started_at = run.finished_at = datetime.now(UTC) - timedelta(hours=1)  # past the closure deadline
        run_id = run.id
    worker = make_worker(sessions, world, fakepve, fakepve_cafile, alert=remediation_alerts.seam(PUBLIC))
    try:
        assert worker.close_runs() == [(run_id, "ineffective")]
    finally:
        worker.close()
    run_job(sessions, job(world, "remediation:alerts"))
    with sessions() as session:
        keys = list(session.scalars(select(NotifyOutboxRow.idempotency_key)))
        audits = list(session.scalars(select(AuditRow.action).where(AuditRow.subject == f"remediation_run:{run_id}")))
    assert keys == [f"remediation_run:{run_id}:ineffective:whatsapp:+6281234567001"]
    assert audits.count("remediation.alerted") == 1 and audits.count("remediation.ineffective") == 1


# --- closure is claimed ----------------------------------------------------------------------------------------------

def test_two_workers_closing_at_once_decide_each_run_once(sessions: sessionmaker[Session], world: Inventory,
                                                          fakepve: Any, fakepve_cafile: str) -> None:
    """Worker A is in the middle of deciding (its alert is running) when worker B looks for runs to close: B
    must not decide the same run (on PostgreSQL it skips the locked row; on SQLite it waits for A's commit)."""
    with transaction(sessions) as session:
        for vmid in (101, 102):
            run = svc.request_run(session, world, playbook="restart_vm", target=f"pve/{vmid}", params={},
                                  requester=svc.Requester("eng1"), idempotency_key=f"c{vmid}", policy=rem.Policy(),
                                  trigger="rule:0")
            run.state = run.outcome = "succeeded"
            run.started_at = run.finished_at = datetime.now(UTC) - timedelta(hours=1)
    inside, release = threading.Event(), threading.Event()
    alerted: list[tuple[str, int]] = []

    def slow_alert(run: RemediationRunRow, _session: Session) -> None:
        alerted.append(("a", run.id))
        inside.set()
        assert release.wait(60)

    a = make_worker(sessions, world, fakepve, fakepve_cafile, alert=slow_alert)
    b = make_worker(sessions, world, fakepve, fakepve_cafile, alert=lambda run, _s: alerted.append(("b", run.id)))
    decided: dict[str, list[tuple[int, str]]] = {}
    try:
        thread_a = threading.Thread(target=lambda: decided.setdefault("a", a.close_runs()))
        thread_a.start()
        assert inside.wait(60)
        thread_b = threading.Thread(target=lambda: decided.setdefault("b", b.close_runs()))
        thread_b.start()
        release.set()
        thread_a.join(60)
        thread_b.join(60)
    finally:
        a.close()
        b.close()
    assert sorted(decided["a"] + decided["b"]) == sorted((r.id, "ineffective") for r in runs(sessions))
    assert sorted(run_id for _, run_id in alerted) == sorted(r.id for r in runs(sessions))
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditRow).where(
            AuditRow.action == "remediation.ineffective")) == 2


def test_a_vm_without_site_or_ssh_is_judged_by_what_proxmox_says(sessions: sessionmaker[Session],
                                                                 world: Inventory) -> None:
    clock = Clock()
    for _ in range(3):
        observe(sessions, clock.tick(), vm="stopped")
    with sessions() as session:
        hosted = remediation_auto.signals_for(session, "pve/101")  # its site: the worst witness
        bare = remediation_auto.signals_for(session, "pve/102")  # no site, no SSH: the VM itself
        absent = remediation_auto.signals_for(session, "pve/999")
    assert (hosted.consecutive_failed_checks, hosted.vm_status) == (3, "stopped")
    assert (bare.consecutive_failed_checks, bare.vm_status, bare.guest_problems) == (0, "running", {})
    assert (absent.consecutive_failed_checks, absent.vm_status, absent.observed_at) == (0, None, None)
    assert hosted.observed_at == clock.now
