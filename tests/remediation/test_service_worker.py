"""Requests, approvals, the worker and closure on SQLite and PostgreSQL, against fakepve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import AuditRow
from pdn_ops.core.errors import Conflict, NotFound, PolicyRefused
from pdn_ops.core.inventory import Inventory
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.tables import RemediationRunRow, RemediationStepRow
from pdn_ops.runs.worker import Clients, Worker, WorkerConfig
from tests.remediation.pve_support import executor, tasks
from tests.remediation.world import add_vms, inventory, write_inventory

ENG = svc.Requester("eng1")
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


@pytest.fixture
def world(fakepve: Any, fakepve_cafile: str, tmp_path: Path) -> Inventory:
    add_vms(fakepve, range(101, 104))
    return inventory(write_inventory(tmp_path, fakepve, fakepve_cafile))


def make_worker(sessions: sessionmaker[Session], world: Inventory, pve: Any, cafile: str,
                name: str = "w1") -> Worker:
    engine = sessions.kw["bind"]
    return Worker(engine, sessions, world, Clients(proxmox=lambda _c: executor(pve, cafile)),
                  WorkerConfig(worker_id=name))


def request(session: Session, world: Inventory, playbook: str = "restart_vm", target: str = "pve/101",
            key: str = "k1", params: dict[str, object] | None = None, **kw: Any) -> RemediationRunRow:
    return svc.request_run(session, world, playbook=playbook, target=target, params=params or {},
                           requester=kw.pop("requester", ENG), idempotency_key=key, policy=kw.pop("policy", rem.Policy()),
                           **kw)


def test_second_request_on_a_target_is_a_conflict_naming_the_active_run(sessions: sessionmaker[Session],
                                                                          world: Inventory) -> None:
    with transaction(sessions) as session:
        first = request(session, world)
        assert first.state == "awaiting_approval" and first.approvals_needed == 1
        assert any("status/start" in line for line in first.plan)
    with transaction(sessions) as session, pytest.raises(svc.ActiveRunConflict) as info:
        request(session, world, key="k2")
    assert info.value.run_id == first.id and f"run #{first.id}" in str(info.value)
    with transaction(sessions) as session:
        again = request(session, world)  # the same idempotency key: the same run, no second row
        assert again.id == first.id
        with pytest.raises(Conflict):
            request(session, world, target="pve/102")


def test_other_opd_and_unknown_targets_are_refused(sessions: sessionmaker[Session], world: Inventory) -> None:
    with transaction(sessions) as session:
        with pytest.raises(PolicyRefused, match="another OPD"):
            request(session, world, requester=svc.Requester("eng1", opd="disdik"))
        with pytest.raises(NotFound):
            request(session, world, requester=svc.Requester("opd-admin", is_staff=False))
        with pytest.raises(NotFound):
            request(session, world, target="pve/999")
        assert session.scalar(select(RemediationRunRow.id)) is None


def test_worker_runs_only_approved_runs_and_journals_every_step(sessions: sessionmaker[Session], world: Inventory,
                                                               fakepve: Any, fakepve_cafile: str) -> None:
    with transaction(sessions) as session:
        run_id = request(session, world).id
    worker = make_worker(sessions, world, fakepve, fakepve_cafile)
    try:
        assert worker.run_pending() == 0  # awaiting approval: nothing runs
        with transaction(sessions) as session:
            assert svc.approve(session, run_id, engineer="eng2").state == "approved"
        assert worker.run_pending() == 1
    finally:
        worker.close()
    with sessions() as session:
        run = session.get(RemediationRunRow, run_id)
        assert run is not None and (run.state, run.outcome) == ("succeeded", "succeeded")
        steps = {s.name: s for s in run.steps}
        assert steps["start"].upid and steps["start"].upid.startswith("UPID:pve1:")
        assert steps["shutdown"].state == "skipped"
        assert steps["start"].intent_at <= (steps["start"].finished_at or NOW)
        actions = {a.action for a in session.scalars(select(AuditRow))}
        assert {"remediation.requested", "remediation.approved", "remediation.succeeded"} <= actions
    assert tasks(fakepve, 101) == ["qmstart"]


def test_the_requester_never_approves_their_own_run_and_settings_name_playbooks_and_approvers(
        sessions: sessionmaker[Session], world: Inventory) -> None:
    policy = rem.Policy(approval_from=rem.Risk.HIGH, approval_playbooks=frozenset({"restart_vm"}), approvals=2,
                        approvers=frozenset({"eng2", "eng3"}))
    with transaction(sessions) as session:
        # restart_vm is below the risk that needs approval here, but the settings make it wait for two approvers.
        run = request(session, world, playbook="restart_vm", policy=policy)
        assert run.state == "awaiting_approval" and run.approvals_needed == 2
        with pytest.raises(PolicyRefused, match="requested this run"):
            svc.approve(session, run.id, engineer=run.requested_by, policy=policy)
        with pytest.raises(PolicyRefused, match="not one of the approvers"):
            svc.approve(session, run.id, engineer="eng9", policy=policy)
        assert svc.approve(session, run.id, engineer="eng2", policy=policy).state == "awaiting_approval"
        assert svc.approve(session, run.id, engineer="eng3", policy=policy).state == "approved"


def test_rollback_can_require_a_second_engineer(sessions: sessionmaker[Session], world: Inventory) -> None:
    policy = rem.Policy(rollback_second_engineer=True)
    with transaction(sessions) as session:
        run = request(session, world, playbook="restore_snapshot", params={"snapshot": "daily1"}, policy=policy)
        assert run.approvals_needed == 2
        assert svc.approve(session, run.id, engineer="eng3").state == "awaiting_approval"
        with pytest.raises(PolicyRefused, match="another engineer"):
            svc.approve(session, run.id, engineer="eng3")
        assert svc.approve(session, run.id, engineer="eng2").state == "approved"


def test_worker_reconciles_a_run_whose_worker_died_after_the_call(sessions: sessionmaker[Session],
                                                                 world: Inventory, fakepve: Any,
                                                                 fakepve_cafile: str) -> None:
    """The start call reached Proxmox, then the worker died before storing the UPID."""
    with transaction(sessions) as session:
        run = request(session, world, key="crash", trigger="rule:1")  # automatic: no approval
        run.state = "running"
        session.flush()
        for position, (name, state) in enumerate([("locate", "succeeded"), ("shutdown", "skipped"),
                                                   ("status_after_shutdown", "succeeded"), ("stop", "skipped"),
                                                   ("start", "running")]):
            facts = {"node": "pve1", "status": "stopped"} if name == "locate" else (
                {"status_after_shutdown": "stopped"} if name == "status_after_shutdown" else {})
            session.add(RemediationStepRow(run_id=run.id, position=position, name=name, kind="api", intent=name,
                                           state=state, facts=facts, side_effect=name != "locate",
                                           intent_at=datetime.now(UTC) - timedelta(seconds=1)))
        run_id = run.id
    proxmox = executor(fakepve, fakepve_cafile)
    from remediation.executors.proxmox import ApiCall

    proxmox.start(ApiCall("POST", "/nodes/pve1/qemu/101/status/start"), lambda _u: None)
    worker = make_worker(sessions, world, fakepve, fakepve_cafile)
    try:
        assert worker.run_pending() == 1
    finally:
        worker.close()
    with sessions() as session:
        done = session.get(RemediationRunRow, run_id)
        assert done is not None
        assert done.outcome == "succeeded", done.summary
        start = next(s for s in done.steps if s.name == "start")
        assert start.reconciled and start.upid
        assert done.attempt == 1
    assert tasks(fakepve, 101) == ["qmstart"]  # found in the task list, not started again


def test_auto_rule_enqueues_only_when_policy_allows(sessions: sessionmaker[Session], world: Inventory) -> None:
    policy = rem.Policy()
    down = rem.Signals(consecutive_failed_checks=3, vm_status="stopped")
    with transaction(sessions) as session:
        run, why = svc.evaluate_rules(session, world, target="pve/102", signals=down, policy=policy, now=NOW)
        assert run is None and "opt-in" in why
        svc.add_rule(session, world, target="pve/102", playbook="restart_vm", created_by="eng1", policy=policy)
        svc.set_auto_enabled(session, False, changed_by="eng1")
        run, why = svc.evaluate_rules(session, world, target="pve/102", signals=down, policy=policy, now=NOW)
        assert run is None and "switched off" in why
        svc.set_auto_enabled(session, True, changed_by="eng1")
        svc.add_window(session, starts_at=NOW - timedelta(minutes=5), ends_at=NOW + timedelta(hours=1),
                       target="pve/102", reason="kernel upgrade", created_by="eng1")
        run, why = svc.evaluate_rules(session, world, target="pve/102", signals=down, policy=policy, now=NOW)
        assert run is None and "maintenance" in why
        later = NOW + timedelta(hours=2)
        run, why = svc.evaluate_rules(session, world, target="pve/102", signals=down, policy=policy, now=later)
        assert run is not None and run.state == "pending" and run.trigger.startswith("rule:"), why
        run.state, run.outcome = "succeeded", "succeeded"
        session.flush()
        again, why = svc.evaluate_rules(session, world, target="pve/102", signals=down, policy=policy,
                                        now=later + timedelta(minutes=1))
        assert again is None and "cooldown" in why


def test_changed_host_key_is_recorded_as_a_security_event(sessions: sessionmaker[Session], fakepve: Any,
                                                           fakepve_cafile: str, tmp_path: Path,
                                                           ssh_guest: Any) -> None:
    add_vms(fakepve, [101])
    path = write_inventory(tmp_path, fakepve, fakepve_cafile, ssh_guest)
    path.write_text(path.read_text().replace(ssh_guest.host_key, ssh_guest.other_host_key))
    world = inventory(path)
    with transaction(sessions) as session:
        run_id = request(session, world, playbook="restart_service", params={"unit": "nginx.service"}).id
    worker = make_worker(sessions, world, fakepve, fakepve_cafile)
    try:
        assert worker.run_pending() == 1
    finally:
        worker.close()
    with sessions() as session:
        run = session.get(RemediationRunRow, run_id)
        assert run is not None and run.outcome == "failed"
        events = list(session.scalars(select(AuditRow).where(AuditRow.action == "security.ssh_host_key")))
        assert len(events) == 1 and "pinned" in events[0].detail
    assert ssh_guest.commands() == []


def test_rule_without_a_vm_state_fires_whatever_the_vm_state(sessions: sessionmaker[Session],
                                                             world: Inventory) -> None:
    with transaction(sessions) as session:
        rule = svc.add_rule(session, world, target="pve/103", playbook="restart_vm", vm_status=None,
                            created_by="eng1", policy=rem.Policy())
        session.expire(rule)
        assert rule.vm_status is None
        run, why = svc.evaluate_rules(session, world, target="pve/103", signals=rem.Signals(3, "running"),
                                      policy=rem.Policy(), now=NOW)
        assert run is not None, why


def test_a_resize_rule_fires_with_the_parameters_it_was_given(sessions: sessionmaker[Session],
                                                              world: Inventory) -> None:
    with transaction(sessions) as session:
        svc.add_rule(session, world, target="pve/101", playbook="resize_vm", vm_status=None, created_by="eng1",
                     params={"memory_mib": 4096, "reboot": True}, policy=rem.Policy())
        run, why = svc.evaluate_rules(session, world, target="pve/101", signals=rem.Signals(3, "running"),
                                      policy=rem.Policy(), now=NOW)
        assert run is not None, why
        assert run.params["request"]["memory_mib"] == 4096 and run.params["reboot"] is True
