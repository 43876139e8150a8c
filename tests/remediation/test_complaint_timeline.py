"""A complaint's timeline shows every linked run, step, approval and outcome: real worker, fakepve, both engines.

Run 1: an engineer restores a snapshot for the complaint, two engineers approve, the worker executes it; the checks
do not confirm it (ineffective).
Run 2: the policy engine restarts the complaint's VM; its worker dies right after the start call; the next worker
reconciles the cut-off step from the node's task list; the health checks then confirm, and the complaint becomes fixed.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.accounts import service as accounts
from pdn_ops.accounts.model import Principal
from pdn_ops.complaints import queries as complaint_queries
from pdn_ops.complaints import service as complaints
from pdn_ops.complaints.model import Action
from pdn_ops.complaints.service import ComplaintConfig, Draft
from pdn_ops.complaints.timeline import Entry
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import VmRow
from pdn_ops.core.inventory import Inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.health.tables import HealthCheckRow, HealthTargetRow
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.closure import ClosurePolicy, complaint_link, evaluate_closures
from pdn_ops.runs.tables import RemediationRunRow, RemediationStepRow
from pdn_ops.runs.timeline_facts import linked_runs
from pdn_ops.runs.worker import Clients, Worker, WorkerConfig
from remediation.executors.proxmox import ApiCall
from tests.complaints.world import jpeg, principal_named
from tests.remediation.pve_support import executor, tasks
from tests.remediation.world import add_vms, inventory, write_inventory

# What an OPD user must never find in their timeline: node names and UPIDs, API paths, worker names, the
# policy engine, parameters and the engineers' English machine text.
INTERNAL = ("UPID", "pve1", "/nodes/", "/api2/", "worker-alpha", "worker-beta", "policy-engine", "before_update",
            "snapshot:", "summary", "checks passed", "final state", "vm:pve/")


@pytest.fixture
def world(fakepve: Any, fakepve_cafile: str, tmp_path: Path) -> Inventory:
    add_vms(fakepve, range(101, 103), status="running")
    return inventory(write_inventory(tmp_path, fakepve, fakepve_cafile))


def worker(sessions: sessionmaker[Session], world: Inventory, pve: Any, cafile: str, name: str) -> Worker:
    return Worker(sessions.kw["bind"], sessions, world, Clients(proxmox=lambda _c: executor(pve, cafile)),
                  WorkerConfig(worker_id=name, policy=rem.Policy(rollback_second_engineer=True)))


def file_complaint(session: Session, world: Inventory, tmp_path: Path) -> tuple[int, dict[str, Principal]]:
    sync_inventory(session, world)
    accounts.ensure_demo_accounts(session)
    users = {u: principal_named(session, u) for u in ("admin-dinkes", "engineer")}
    vm = session.scalar(select(VmRow.id).where(VmRow.vmid == 101))
    config = ComplaintConfig(data_dir=tmp_path)
    row = complaints.submit(session, users["admin-dinkes"], Draft(asset=f"vm:{vm}", category="site_down",
                                                                  description="Situs puskesmas mati"),
                            [("layar.jpg", jpeg())], config=config)
    complaints.act(session, users["engineer"], row.id, Action.VERIFY, config=config)
    return row.id, users


def actions(entries: list[Entry]) -> list[str]:
    return [e.action for e in entries]


def test_timeline_shows_each_run_step_approval_and_outcome_in_order_and_opd_users_only_the_work_and_outcome(
        sessions: sessionmaker[Session], world: Inventory, fakepve: Any, fakepve_cafile: str,
        tmp_path: Path) -> None:
    proxmox = executor(fakepve, fakepve_cafile)
    try:
        check_timeline(sessions, world, fakepve, fakepve_cafile, tmp_path, proxmox)
    finally:
        proxmox.close()


def check_timeline(sessions: sessionmaker[Session], world: Inventory, fakepve: Any, fakepve_cafile: str,
                   tmp_path: Path, proxmox: Any) -> None:
    assert proxmox.start(ApiCall("POST", "/nodes/pve1/qemu/101/snapshot", {"snapname": "before_update"}),
                         lambda _u: None).ok
    policy = rem.Policy(rollback_second_engineer=True)
    with transaction(sessions) as session:
        complaint_id, users = file_complaint(session, world, tmp_path)
        first = svc.request_run(session, world, playbook="restore_snapshot", target="pve/101",
                                params={"snapshot": "before_update"}, idempotency_key="t1", policy=policy,
                                requester=svc.Requester("engineer", opd="dinkes"), complaint_id=complaint_id)
        svc.approve(session, first.id, engineer="eng3")
    with transaction(sessions) as session:
        svc.approve(session, first.id, engineer="eng2")
    alpha = worker(sessions, world, fakepve, fakepve_cafile, "worker-alpha")
    try:
        assert alpha.run_pending() == 1
    finally:
        alpha.close()
    with transaction(sessions) as session:  # no check passed after the rollback before its deadline
        late = datetime.now(UTC) + timedelta(minutes=16)
        assert evaluate_closures(session, policy=ClosurePolicy(needed=3), now=late) == [(first.id, "ineffective")]

    # Run 2, automatic; its worker died right after Proxmox accepted the start call, before storing the UPID.
    with transaction(sessions) as session:
        second = svc.request_run(session, world, playbook="restart_vm", target="pve/101", params={},
                                 idempotency_key="t2", policy=policy, requester=svc.Requester("policy-engine"),
                                 complaint_id=complaint_id, trigger="rule:1")
        second_id = second.id
    with transaction(sessions) as session:
        running = session.get(RemediationRunRow, second_id)
        assert running is not None
        cut = datetime.now(UTC)
        running.state, running.claimed_by, running.attempt, running.started_at = "running", "worker-gone", 1, cut
        for position, (name, state) in enumerate([("locate", "succeeded"), ("shutdown", "skipped"),
                                                   ("status_after_shutdown", "succeeded"), ("stop", "skipped"),
                                                   ("start", "running")]):
            facts = {"node": "pve1", "status": "stopped"} if name == "locate" else (
                {"status_after_shutdown": "stopped"} if name == "status_after_shutdown" else {})
            session.add(RemediationStepRow(
                run_id=second_id, position=position, name=name, kind="api", intent=f"pve: {name}", state=state,
                facts=facts, side_effect=name != "locate", intent_at=cut + timedelta(milliseconds=position),
                finished_at=None if state == "running" else cut + timedelta(milliseconds=position, microseconds=1)))
    fakepve.vm(101).status = "stopped"
    before = len(tasks(fakepve, 101))
    assert proxmox.start(ApiCall("POST", "/nodes/pve1/qemu/101/status/start"), lambda _u: None).ok
    beta = worker(sessions, world, fakepve, fakepve_cafile, "worker-beta")
    try:
        assert beta.run_pending() == 1
    finally:
        beta.close()
    assert tasks(fakepve, 101)[before:] == ["qmstart"], "found in the task list, not started again"
    with transaction(sessions) as session:  # the collectors' checks of VM 101 pass after the run
        done = session.get(RemediationRunRow, second_id)
        assert done is not None and done.finished_at is not None
        finished = done.finished_at
        target = HealthTargetRow(kind="vm", ref="pve/101", state="up")
        session.add(target)
        session.flush()
        session.add_all(HealthCheckRow(target_id=target.id, at=finished + timedelta(seconds=s), ok=True)
                        for s in (1, 2, 3))
    with transaction(sessions) as session:
        decided = evaluate_closures(session, policy=ClosurePolicy(needed=3),
                                    complaint_link=complaint_link(ComplaintConfig(data_dir=tmp_path)))
        assert (second_id, "confirmed") in decided

    with sessions() as session:
        row = complaints.get(session, users["engineer"], complaint_id)
        staff = complaint_queries.timeline(session, users["engineer"], row, runs=linked_runs)
        opd = complaint_queries.timeline(session, users["admin-dinkes"], row, runs=linked_runs)
        runs = {r.id: r for r in session.scalars(select(RemediationRunRow))}
        steps = {(s.run_id, s.position): s for s in session.scalars(select(RemediationStepRow))}

    assert [e.at for e in staff] == sorted(e.at for e in staff)
    one = [e for e in staff if e.run_id == first.id]
    two = [e for e in staff if e.run_id == second_id]
    # Who and when, in order: requested with its parameters, the plan shown, two different engineers, then work.
    assert actions(one)[:5] == ["remediation.requested", "remediation.plan", "remediation.approved",
                                "remediation.approved", "remediation.started"]
    assert one[0].actor == "engineer" and one[0].params == {"snapshot": "before_update"} and not one[0].automatic
    assert list(one[1].plan) == runs[first.id].plan and any("/rollback" in line for line in one[1].plan)
    assert [(e.actor, e.approval, e.approvals_needed) for e in one[2:4]] == [("eng3", 1, 2), ("eng2", 2, 2)]
    assert one[4].actor == "worker-alpha" and actions(one)[-2:] == ["remediation.succeeded", "remediation.ineffective"]
    results = [e for e in one if e.action == "remediation.step_result"]
    assert [(e.step, e.state, e.upid) for e in results] == [
        (s.position + 1, s.state, s.upid) for (run_id, _), s in sorted(steps.items()) if run_id == first.id]
    assert any(e.upid and e.upid.startswith("UPID:pve1:") for e in results)
    intents = [e for e in one if e.action == "remediation.step_intent"]
    assert intents and all(e.intent and e.at <= next(r.at for r in results if r.step == e.step) for e in intents)

    assert two[0].action == "remediation.requested" and two[0].automatic and two[0].actor == "policy-engine"
    interrupted = actions(two).index("remediation.interrupted")
    reconciled = next(i for i, e in enumerate(two) if e.reconciled)
    assert interrupted < reconciled and two[interrupted].actor == "worker-beta"
    assert (two[reconciled].step_name, two[reconciled].state) == ("start", "succeeded") and two[reconciled].upid
    assert actions(two)[-2:] == ["remediation.succeeded", "remediation.confirmed"]
    assert actions(staff)[-1] == "complaint.fix" and staff[-1].actor == "pdn-ops"
    assert all(e.run_id is not None for e in one + two)

    # The OPD sees that work happened and how it ended: no steps, plans, UPIDs, parameters, workers or run links.
    assert actions(opd) == ["complaint.submit", "complaint.verify",
                            "remediation.requested", "remediation.approved", "remediation.approved",
                            "remediation.started", "remediation.succeeded", "remediation.ineffective",
                            "remediation.requested", "remediation.started", "remediation.interrupted",
                            "remediation.succeeded", "remediation.confirmed", "complaint.fix"]
    assert [e.actor for e in opd[2:5]] == ["engineer", "eng3", "eng2"], "engineers' names, as on every entry"
    assert {e.actor for e in opd[5:13]} - {"engineer"} == {"pdn-ops"}
    for entry in opd:
        assert entry.run_id is None and entry.upid is None and entry.intent is None and entry.output is None
        assert not entry.plan and not entry.params and entry.step is None
        text = repr(asdict(entry))
        assert not [word for word in INTERNAL if word in text], entry


def test_the_timeline_costs_two_queries_however_many_runs_and_steps(session: Session, db_engine: Any,
                                                                     tmp_path: Path) -> None:
    from tests.complaints.test_complaint_service import Named, _file

    named = Named(session)
    config = ComplaintConfig(data_dir=tmp_path)
    small, large = _file(session, named, config), _file(session, named, config)
    start = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)

    def add_run(complaint_id: int, target: str, n_steps: int) -> None:
        run = RemediationRunRow(playbook="free_disk", target=target, opd_code="dinkes", params={"cleanup": "logs"},
                                risk="low", requested_by="engineer", idempotency_key=f"{target}-{complaint_id}",
                                state="succeeded", outcome="succeeded", plan=["[act] x"] * n_steps,
                                complaint_id=complaint_id, claimed_by="w", attempt=1, created_at=start,
                                started_at=start, finished_at=start + timedelta(minutes=5))
        session.add(run)
        session.flush()
        session.add_all(RemediationStepRow(run_id=run.id, position=i, name=f"s{i}", kind="ssh", intent=f"cmd {i}",
                                           state="succeeded", stdout="x" * 5000, intent_at=start + timedelta(seconds=i),
                                           finished_at=start + timedelta(seconds=i, milliseconds=500))
                        for i in range(n_steps))
        session.flush()

    add_run(small, "pdn1/101", 2)
    for n in range(3):
        add_run(large, f"pdn1/10{n + 1}", 60)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engineer = named.users["engineer"]
    admin = named.users["admin-dinkes"]
    rows = {cid: complaints.get(session, engineer, cid) for cid in (small, large)}
    event.listen(db_engine, "before_cursor_execute", count)
    try:
        seen = {}
        for cid, row in rows.items():
            for who in (engineer, admin):
                statements.clear()
                entries = complaint_queries.timeline(session, who, row, runs=linked_runs)
                seen[(cid, who.username)] = (len(statements), len(entries))
    finally:
        event.remove(db_engine, "before_cursor_execute", count)
    assert {n for n, _ in seen.values()} == {2}, seen
    steps_shown = seen[(large, "engineer")][1] - seen[(small, "engineer")][1]
    assert steps_shown >= 3 * 60 * 2 - 2 * 2, "every step's intent and result is there"
    assert all(len(e.output or "") <= 300 for e in complaint_queries.timeline(session, engineer, rows[large], runs=linked_runs))


class Crash(BaseException):
    """Stands for SIGKILL inside a test process: nothing after the boundary runs, the run stays as it was."""


def test_a_run_taken_over_after_a_crash_shows_which_worker_started_it_and_did_each_step(
        sessions: sessionmaker[Session], world: Inventory, fakepve: Any, fakepve_cafile: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with transaction(sessions) as session:
        complaint_id, users = file_complaint(session, world, tmp_path)
        run_id = svc.request_run(session, world, playbook="restart_vm", target="pve/101", params={},
                                 idempotency_key="takeover", policy=rem.Policy(),
                                 requester=svc.Requester("policy-engine"), complaint_id=complaint_id,
                                 trigger="rule:1").id

    def crash_after_the_start_call(label: str) -> None:
        if label == "act:start:called":  # Proxmox accepted the start; its UPID is not journaled yet
            raise Crash(label)

    alpha = worker(sessions, world, fakepve, fakepve_cafile, "worker-alpha")
    monkeypatch.setattr(alpha, "kill", crash_after_the_start_call)
    try:
        with pytest.raises(Crash):
            alpha.run_pending()
    finally:
        alpha.close()  # the worker is gone: its run lock with it
    beta = worker(sessions, world, fakepve, fakepve_cafile, "worker-beta")
    try:
        assert beta.run_pending() == 1
    finally:
        beta.close()
    assert tasks(fakepve, 101) == ["qmshutdown", "qmstart"]

    with sessions() as session:
        row = complaints.get(session, users["engineer"], complaint_id)
        staff = [e for e in complaint_queries.timeline(session, users["engineer"], row, runs=linked_runs) if e.run_id == run_id]
        opd = complaint_queries.timeline(session, users["admin-dinkes"], row, runs=linked_runs)
        run = session.get(RemediationRunRow, run_id)
        assert run is not None and (run.state, run.claimed_by, run.attempt) == ("succeeded", "worker-beta", 2)

    started = next(e for e in staff if e.action == "remediation.started")
    assert started.actor == "worker-alpha", "the worker that started the run, not the one that finished it"
    interrupted = next(e for e in staff if e.action == "remediation.interrupted")
    assert interrupted.actor == "worker-beta" and "worker-alpha died" in interrupted.detail
    by_step = [(e.step_name, e.action.rsplit("_", 1)[-1], e.actor) for e in staff
               if e.action in ("remediation.step_intent", "remediation.step_result")]
    assert by_step == [
        ("locate", "intent", "worker-alpha"), ("locate", "result", "worker-alpha"),
        ("shutdown", "intent", "worker-alpha"), ("shutdown", "result", "worker-alpha"),
        ("status_after_shutdown", "intent", "worker-alpha"), ("status_after_shutdown", "result", "worker-alpha"),
        ("stop", "result", "worker-alpha"),  # skipped: the VM was already stopped
        ("start", "intent", "worker-alpha"), ("start", "result", "worker-beta"),  # reconciled by the next worker
        ("verify_running", "intent", "worker-beta"), ("verify_running", "result", "worker-beta")]
    assert next(e for e in staff if e.step_name == "start" and e.action == "remediation.step_result").reconciled
    # The OPD sees the work, never the workers' names.
    shown = [e for e in opd if e.action in ("remediation.started", "remediation.interrupted")]
    assert len(shown) == 2 and {e.actor for e in shown} == {"pdn-ops"}
