"""End to end in the lab: a fault, real checks see it, a playbook runs, real checks confirm the closure.

The lab is fakepve plus real sshd guests and real HTTPS sites bound to each VM's power and nginx state. The site
and SSH collectors record their checks through the health services; closure reads those checks.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.accounts.model import Principal, Role
from pdn_ops.accounts.tables import UserRow
from pdn_ops.complaints.service import ComplaintConfig
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.inventory import Inventory
from pdn_ops.health import service as health
from pdn_ops.health.model import Thresholds
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.closure import ClosurePolicy
from pdn_ops.runs.tables import RemediationRunRow
from pdn_ops.runs.worker import Clients, Worker, WorkerConfig, proxmox_executor_for
from tests.remediation.world import lab_with_database

# The site collector's aiohttp client (collectors/http, not this area) sometimes leaves a TLS transport to the lab's
# site for the garbage collector after an error answer; reported upstream rather than hidden in that package.
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning")]
THRESHOLDS = Thresholds()


class LabWorld:
    def __init__(self, lab: Any, inventory: Inventory, sessions: sessionmaker[Session]) -> None:
        self.lab = lab
        self.inventory = inventory
        self.sessions = sessions
        self.base_dir = lab.inventory_path.parent
        self.linked: list[tuple[int, dict[str, Any]]] = []
        self.complaints = ComplaintConfig(data_dir=self.base_dir / "complaints")
        clients = Clients(proxmox=lambda name: proxmox_executor_for(inventory, name, self.base_dir))
        self.worker = Worker(sessions.kw["bind"], sessions, inventory, clients, WorkerConfig(
            worker_id="e2e", base_dir=self.base_dir, closure=ClosurePolicy(needed=3),
            complaint_link=lambda cid, evidence, _s: self.linked.append((cid, evidence))))

    def sites_of(self, vmid: int) -> list[Any]:
        return [s for s in self.inventory.sites if s.vm == f"lab/{vmid}"]

    def check(self, vmid: int) -> list[bool]:
        """One round of the real collectors for this VM: its sites over HTTPS, its guest over SSH."""
        from collectors.http.collector import run_cycle
        from collectors.ssh.collector import SshCollector

        # In a thread of its own: run_cycle starts its own event loop, whatever loop this thread may hold.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            checks = pool.submit(run_cycle, self.sites_of(vmid), ca_file=str(self.lab.ca_file)).result(120)
        vm = self.inventory.vm(f"lab/{vmid}")
        assert vm is not None
        observation = SshCollector.from_inventory(vm, base_dir=self.base_dir).collect()
        with transaction(self.sessions) as session:
            health.record_site_checks(session, checks, thresholds=THRESHOLDS)
            health.record_ssh(session, [observation], thresholds=THRESHOLDS)
        return [c.ok for c in checks]

    def request(self, playbook: str, vmid: int, params: dict[str, object], key: str,
                complaint_id: int | None = None) -> int:
        with transaction(self.sessions) as session:
            return svc.request_run(session, self.inventory, playbook=playbook, target=f"lab/{vmid}", params=params,
                                   requester=svc.Requester("policy-engine"), idempotency_key=key,
                                   policy=rem.Policy(), trigger="rule:e2e", complaint_id=complaint_id,
                                   base_dir=self.base_dir).id

    def until_closed(self, vmid: int, within: float = 60.0) -> None:
        """Check the VM until the closure is decided. Bounded by time, not by a count of checks: a guest that
        boots after a start answers only after its boot delay, which a loaded machine stretches, and checks of a
        guest still down fail at once (ten of them can all fall inside that delay)."""
        deadline = time.monotonic() + within
        while True:
            self.check(vmid)
            if self.worker.close_runs() or time.monotonic() > deadline:
                return
            time.sleep(0.2)

    def fix_and_confirm(self, run_id: int, vmid: int) -> RemediationRunRow:
        assert self.worker.run_pending() >= 1
        self.until_closed(vmid)
        return self.run(run_id)

    def run(self, run_id: int) -> RemediationRunRow:
        """The run with its steps loaded."""
        with self.sessions() as session:
            run = session.get(RemediationRunRow, run_id)
            assert run is not None
            list(run.steps)
            return run


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabWorld]:
    directory = tmp_path_factory.mktemp("e2e")
    with lab_with_database(directory, vms=5, sites=5) as (lab, inventory, sessions):
        world = LabWorld(lab, inventory, sessions)
        world.complaints = ComplaintConfig(data_dir=directory / "complaints")
        try:
            yield world
        finally:
            world.worker.close()


def test_stopped_vm_is_started_by_the_auto_rule_and_closed_by_its_checks(world: LabWorld) -> None:
    vmid = 101
    _stop(world, vmid)
    world.lab.wait_guest(vmid, up=False)
    for _ in range(3):
        assert world.check(vmid) == [False] * len(world.sites_of(vmid))
    with transaction(world.sessions) as session:
        svc.add_rule(session, world.inventory, target=f"lab/{vmid}", playbook="restart_vm", created_by="eng1",
                     policy=rem.Policy())
        run, why = svc.evaluate_rules(session, world.inventory, target=f"lab/{vmid}",
                                      signals=rem.Signals(3, "stopped"), policy=rem.Policy(),
                                      now=datetime.now(UTC))
        assert run is not None, why
        run_id = run.id
    done = world.fix_and_confirm(run_id, vmid)
    assert (done.outcome, done.closure) == ("succeeded", "confirmed"), done.summary
    # An incident opened from alerts (no complaint) closes the same way, with the evidence on the run.
    assert done.evidence["run_log"] and any(done.evidence["checks_after"].values())
    assert all(not c["ok"] for checks in done.evidence["checks_before"].values() for c in checks[-1:])


def _stop(world: LabWorld, vmid: int) -> None:
    from remediation.executors.proxmox import ApiCall

    proxmox = proxmox_executor_for(world.inventory, "lab", world.base_dir)
    node = world.lab.pve.vm(vmid).node
    try:
        out = proxmox.start(ApiCall("POST", f"/nodes/{node}/qemu/{vmid}/status/stop"), lambda _u: None)
    finally:
        proxmox.close()
    assert out.ok, out.detail


def test_crashed_service_is_restarted_over_ssh_and_closed_by_its_checks(world: LabWorld) -> None:
    vmid = 102
    world.lab.faults.crash_service(vmid, "nginx.service")
    assert not all(world.check(vmid))
    complaint_id = _file_complaint(world, vmid)
    run_id = world.request("restart_service", vmid, {"unit": "nginx.service"}, "e2e-service", complaint_id)
    done = world.fix_and_confirm(run_id, vmid)
    assert (done.outcome, done.closure) == ("succeeded", "confirmed"), done.summary
    complaint, evidence = world.linked[-1]  # the complaint is resolved-awaiting-confirmation with the evidence
    assert complaint == complaint_id and evidence["run_log"][1]["intent"].endswith("systemctl restart nginx.service")


def test_full_disk_is_cleaned_and_the_space_reported(world: LabWorld) -> None:
    vmid = 103
    world.lab.faults.fill_disk(vmid, 97)
    world.check(vmid)
    run_id = world.request("free_disk", vmid, {"cleanup": "journal"}, "e2e-disk")
    done = world.fix_and_confirm(run_id, vmid)
    assert done.outcome == "succeeded", done.summary
    assert "MiB ->" in done.summary
    with world.sessions() as session:
        rows = list(session.scalars(select(RemediationRunRow).where(RemediationRunRow.id == run_id)))
        assert rows[0].closure == "confirmed", rows[0].evidence.get("checks_after")


# --- a bad update rolled back, a VM short of memory resized -------------------------------------------------------

def _site_status(url: str, cafile: Path) -> int | None:
    """The site's HTTP status (None: nothing answers), read directly to tell a 500 from a refused connection."""
    import ssl
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3, context=ssl.create_default_context(cafile=str(cafile))) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _serving(world: LabWorld, vmid: int) -> list[int | None]:
    """Wait for the guest to be up and its site to answer (after a start or reboot), then its sites' statuses."""
    world.lab.wait_guest(vmid, up=True)
    urls = [s.url for s in world.sites_of(vmid)]
    deadline = time.monotonic() + 10
    while any(_site_status(u, world.lab.ca_file) is None for u in urls):
        assert time.monotonic() < deadline, "the site did not come back"
        time.sleep(0.05)
    return [_site_status(u, world.lab.ca_file) for u in urls]


def _file_complaint(world: LabWorld, vmid: int) -> int:
    """The OPD's admin files a complaint about the VM (with a photo); an engineer verifies it."""
    from argon2 import PasswordHasher

    from pdn_ops.accounts import service as accounts
    from pdn_ops.complaints import service as complaints
    from pdn_ops.complaints.model import Action
    from pdn_ops.core.db.tables import VmRow
    from tests.complaints.world import jpeg

    vm = world.inventory.vm(f"lab/{vmid}")
    assert vm is not None
    cheap = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("e2e-password-1")
    with transaction(world.sessions) as session:
        admin = session.scalar(select(UserRow).where(UserRow.username == f"admin-{vm.opd}")) or \
            accounts.create_user(session, username=f"admin-{vm.opd}", password="", role=Role.OPD_ADMIN,
                                 opd_code=vm.opd, password_hash=cheap)
        engineer = session.scalar(select(UserRow).where(UserRow.username == "engineer")) or \
            accounts.create_user(session, username="engineer", password="", role=Role.ENGINEER, password_hash=cheap)
        vm_id = session.scalar(select(VmRow.id).where(VmRow.cluster == "lab", VmRow.vmid == vmid))
        draft = complaints.Draft(asset=f"vm:{vm_id}", category="site_down",
                                 description="Portal menampilkan galat 500 sejak pembaruan tadi")
        row = complaints.submit(session, accounts.principal_of(admin), draft, [("layar.jpg", jpeg())],
                                config=world.complaints)
        complaints.act(session, accounts.principal_of(engineer), row.id, Action.VERIFY, config=world.complaints)
        return row.id


def _close(world: LabWorld, vmid: int, run_id: int, *, link: Any, rounds: int = 12) -> RemediationRunRow:
    """Check rounds until the closure decides the run (the complaint link is the real one)."""
    from pdn_ops.runs.closure import evaluate_closures

    for _ in range(rounds):
        world.check(vmid)
        with transaction(world.sessions) as session:
            if run_id in dict(evaluate_closures(session, policy=ClosurePolicy(needed=3), complaint_link=link)):
                break
    with world.sessions() as session:
        run = session.get(RemediationRunRow, run_id)
        assert run is not None
        list(run.steps)
        return run


def _restart_alone_is_ineffective(world: LabWorld, vmid: int, playbook: str, params: dict[str, object],
                                  complaint_id: int, alerts: list[int]) -> None:
    """A restart runs fine, yet the site still fails: after its deadline the closure says ineffective."""
    from datetime import timedelta

    from pdn_ops.runs.closure import evaluate_closures

    with transaction(world.sessions) as session:
        run = svc.request_run(session, world.inventory, playbook=playbook, target=f"lab/{vmid}", params=params,
                              requester=svc.Requester("engineer"), idempotency_key=f"e2e-bad-{playbook}",
                              policy=rem.Policy(), complaint_id=complaint_id, base_dir=world.base_dir)
        if run.approvals_needed:
            svc.approve(session, run.id, engineer="eng2")
        run_id = run.id
    assert world.worker.run_pending() == 1
    assert _serving(world, vmid) == [500] * len(world.sites_of(vmid)), f"{playbook} does not bring the release back"
    for _ in range(3):
        assert not any(world.check(vmid))
    with transaction(world.sessions) as session:
        assert evaluate_closures(session, policy=ClosurePolicy(needed=3)) == []  # still confirming
        late = datetime.now(UTC) + timedelta(minutes=16)
        decided = evaluate_closures(session, policy=ClosurePolicy(needed=3), now=late,
                                    alert=lambda row, _s: alerts.append(row.id))
    assert decided == [(run_id, "ineffective")] and alerts[-1] == run_id
    with world.sessions() as session:
        row = session.get(RemediationRunRow, run_id)
        assert row is not None
        assert (row.outcome, row.state) == ("succeeded", "ineffective"), row.summary


def test_bad_update_is_rolled_back_to_the_suggested_snapshot_and_the_complaint_closed_by_its_checks(
        world: LabWorld) -> None:
    import math

    from pdn_ops.complaints import service as complaints
    from pdn_ops.complaints.model import State
    from pdn_ops.runs.closure import complaint_link, linked_targets
    from pdn_ops.runs.snapshots import SnapshotCache, inventory_fetch, problem_started_at, suggest

    vmid, target, lab = 104, "lab/104", world.lab
    lab.faults.take_snapshot(vmid, "weekly")
    lab.pve.vm(vmid).snapshots["weekly"]["snaptime"] -= 7 * 86400  # as if taken a week ago
    lab.faults.take_snapshot(vmid, "before_update", description="before opd-portal 1.5.0")
    assert all(world.check(vmid))
    lab.faults.ship_bad_update(vmid, version="1.5.0")
    for _ in range(2):
        assert not any(world.check(vmid))
    with world.sessions() as session:
        assert {t.kind: t.state for t in linked_targets(session, target)}["site"] == "down"
    complaint_id = _file_complaint(world, vmid)
    with world.sessions() as session:
        began = problem_started_at(session, target)
    assert began is not None
    time.sleep(max(0.0, math.ceil(began.timestamp()) - time.time()))  # snapshot times are whole seconds
    lab.faults.take_snapshot(vmid, "after_update")  # taken while broken: never the one to suggest

    alerts: list[int] = []
    _restart_alone_is_ineffective(world, vmid, "restart_service", {"unit": "php8.2-fpm.service"}, complaint_id,
                                  alerts)
    _restart_alone_is_ineffective(world, vmid, "restart_vm", {}, complaint_id, alerts)

    cache = SnapshotCache(fetch=inventory_fetch(lambda: world.inventory, world.base_dir))
    with world.sessions() as session:
        assert suggest(session, cache, world.inventory, target=target, complaint_id=complaint_id).listing.refreshing
    assert cache.wait(target, 10).state == "fresh"
    with world.sessions() as session:
        suggestion = suggest(session, cache, world.inventory, target=target, complaint_id=complaint_id)
    assert [s.name for s in suggestion.listing.snapshots] == ["weekly", "before_update", "after_update"]
    assert suggestion.suggested == "before_update", suggestion

    with transaction(world.sessions) as session:
        run = svc.request_run(session, world.inventory, playbook="restore_snapshot", target=target,
                              params={"snapshot": suggestion.suggested}, requester=svc.Requester("engineer"),
                              idempotency_key="e2e-rollback", policy=rem.Policy(), complaint_id=complaint_id,
                              base_dir=world.base_dir)
        assert (run.state, run.approvals_needed) == ("awaiting_approval", 1)
        run_id = run.id
    assert world.worker.run_pending() == 0, "nothing runs before an engineer approves"
    with transaction(world.sessions) as session:
        svc.approve(session, run_id, engineer="eng2")
    assert world.worker.run_pending() == 1
    assert f"pdn_safety_{run_id}" in lab.pve.vm(vmid).snapshots, "a safety snapshot was taken first"
    done = _close(world, vmid, run_id, link=complaint_link(world.complaints))
    steps = {s.name: s for s in done.steps}
    assert steps["status_after_rollback"].detail.endswith("is stopped"), "no RAM in the snapshot: stopped"
    assert steps["start"].state == "succeeded" and steps["verify_running"].state == "succeeded"
    assert (done.outcome, done.closure) == ("succeeded", "confirmed"), done.evidence.get("checks_after")
    assert _serving(world, vmid) == [200] * len(world.sites_of(vmid))
    status, version = _guest(world, vmid, "cat /srv/opd-portal/VERSION")
    assert (status, version) == (0, "1.4.2\n")
    evidence = done.evidence
    assert any(not c["ok"] for checks in evidence["checks_before"].values() for c in checks)
    assert [s["step"] for s in evidence["run_log"]][2:4] == ["safety_snapshot", "rollback"]
    with transaction(world.sessions) as session:
        staff = Principal(user_id=0, username="pdn-ops", role=Role.ENGINEER, opd_id=None)
        assert complaints.get(session, staff, complaint_id).state == State.FIXED  # awaiting the OPD's confirmation


def _guest(world: LabWorld, vmid: int, command: str) -> tuple[int, str]:
    from tests.lab_fixtures import lab_run

    status, out, _err = lab_run(world.lab, vmid, command)
    return status, out


def test_memory_pressure_is_fixed_by_an_approved_resize_with_the_reboot_it_needs(world: LabWorld) -> None:
    vmid, target = 105, "lab/105"
    world.lab.faults.memory_pressure(vmid, need_mib=3072)
    for _ in range(2):
        assert not any(world.check(vmid))  # an incident from the checks (no complaint): the app is OOM-killed
    assert _guest(world, vmid, "systemctl is-active php8.2-fpm.service")[1] == "failed\n"
    with transaction(world.sessions) as session:
        plan, _lines = svc.dry_run(world.inventory, playbook="resize_vm", target=target,
                                   params={"memory_mib": 4096, "reboot": True}, policy=rem.Policy(),
                                   requester=svc.Requester("engineer"), base_dir=world.base_dir)
        run = svc.request_run(session, world.inventory, playbook="resize_vm", target=target,
                              params={"memory_mib": 4096, "reboot": True}, requester=svc.Requester("engineer"),
                              idempotency_key="e2e-resize", policy=rem.Policy(), base_dir=world.base_dir)
        assert run.approvals_needed == 1 and plan["reboot"] is True
        svc.approve(session, run.id, engineer="eng2")
        run_id = run.id
    assert world.worker.run_pending() == 1
    done = _close(world, vmid, run_id, link=None)
    assert (done.outcome, done.closure) == ("succeeded", "confirmed"), done.summary
    assert "rebooted to apply memory" in done.summary, "the run says the change needed the reboot it performed"
    assert {s.name: s.state for s in done.steps}["reboot"] == "succeeded"
    _status, out = _guest(world, vmid, "free -m")
    assert int(out.splitlines()[1].split()[1]) == 4096, "the guest sees the new memory"
    assert _guest(world, vmid, "systemctl is-active php8.2-fpm.service")[1] == "active\n"
