"""Fast confirmation in the lab: fault to health-confirmed closure in at most 3 check intervals.

The product's jobs run through the scheduler's job wrapper, driven here slot by slot instead of by the clock: one
slot is the fast lane's cadence (a sixth of the check interval, ``FAST_DIVISOR``), the regular collectors run every
``FAST_DIVISOR`` slots, the automatic rules every half interval (15 s of 30 s), the fast lane and the in-process
worker (execute, then close) at every slot. The test counts slots, not seconds: a fault made just after a regular
round (the worst phase) must be closed by health-confirmed closure within ``3 * FAST_DIVISOR`` slots.

The playbook's own time is not counted, as the goal says: the playbook runs inside one slot, and the test then
waits (uncounted) for the lab guest to finish what the playbook started (a VM's boot, the site answering again),
which on a real guest is part of the playbook's time too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.jobs import JobSpec, JobWrapper
from pdn_ops.health.collection import InventoryCollectorFactory
from pdn_ops.health.jobs import FAST_DIVISOR, HealthConfig, build_jobs, fast_lane_job
from pdn_ops.runs import auto as remediation_auto
from pdn_ops.runs import model as rem
from pdn_ops.runs import watch
from pdn_ops.runs.closure import ClosurePolicy
from pdn_ops.runs.jobs import fast_confirmation, remediation_jobs
from pdn_ops.runs.tables import RemediationRunRow
from pdn_ops.runs.worker import Clients, Worker, WorkerConfig, proxmox_executor_for
from tests.remediation.world import lab_with_database

# The site collector's aiohttp client leaves a TLS transport of a powered-off lab site to the garbage collector
# (see test_lab_end_to_end).
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning")]
RULES_EVERY = FAST_DIVISOR // 2  # the automatic rules' 15 s in slots of a 30 s interval


class Slots:
    """The lab, the product's jobs and one worker, advanced one fast-lane slot at a time."""

    def __init__(self, lab: Any, inventory: Any, sessions: Any) -> None:
        self.lab, self.inventory, self.sessions = lab, inventory, sessions
        self.base = lab.inventory_path.parent
        self.factory = InventoryCollectorFactory(inventory, base_dir=self.base, site_ca_file=str(lab.ca_file))
        config = HealthConfig()
        self.regular = [j for j in build_jobs(inventory, self.factory, config) if j.kind != "maintenance"]
        watched, after_record = fast_confirmation(inventory, base_dir=self.base, closure=ClosurePolicy())
        self.fast = fast_lane_job(inventory, self.factory, config, sessions=sessions, watched=watched,
                                  after_record=after_record)
        self.rules = remediation_jobs(inventory, base_dir=self.base)[0]
        self.wrapper = JobWrapper(sessions)
        clients = Clients(proxmox=lambda name: proxmox_executor_for(inventory, name, self.base))
        self.worker = Worker(sessions.kw["bind"], sessions, inventory, clients,
                             WorkerConfig(worker_id="fast", base_dir=self.base, closure=ClosurePolicy()))

    def close(self) -> None:
        self.worker.close()
        self.factory.close()

    def run(self, job: JobSpec) -> None:
        self.wrapper.run(job)

    def slot(self, index: int, settle: Callable[[], None]) -> list[tuple[int, str]]:
        """One slot: the regular jobs when due, the rules when due, the fast lane, then the worker."""
        if index % FAST_DIVISOR == 0:
            for job in self.regular:
                self.run(job)
        if index % RULES_EVERY == 0:
            self.run(self.rules)
        self.run(self.fast)
        if self.worker.run_pending():
            settle()  # the playbook's own time: not a slot
        return self.worker.close_runs()


@pytest.fixture(scope="module")
def slots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slots]:
    with lab_with_database(tmp_path_factory.mktemp("fast"), vms=3, sites=3) as (lab, inventory, sessions):
        driver = Slots(lab, inventory, sessions)
        try:
            yield driver
        finally:
            driver.close()


def _site_answers(url: str, cafile: Path) -> bool:
    import ssl
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3, context=ssl.create_default_context(cafile=str(cafile))):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _settled(slots: Slots, vmid: int) -> Callable[[], None]:
    def settle() -> None:
        slots.lab.wait_guest(vmid, up=True)
        urls = [s.url for s in slots.inventory.sites if s.vm == f"lab/{vmid}"]
        deadline = time.monotonic() + 10
        while not all(_site_answers(u, slots.lab.ca_file) for u in urls):
            assert time.monotonic() < deadline, "the guest's site did not come back after the playbook"
            time.sleep(0.05)
    return settle


SCENARIOS = {
    "crashed service": (102, "restart_service", {"unit": "nginx.service"}, "running",
                        lambda lab: lab.faults.crash_service(102, "nginx.service")),
    "stopped VM": (101, "restart_vm", {}, "stopped", lambda lab: lab.faults.stop_vm(101)),
    "full disk": (103, "free_disk", {"cleanup": "journal"}, None, lambda lab: lab.faults.fill_disk(103, 97)),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_fault_to_confirmed_closure_within_three_check_intervals(slots: Slots, scenario: str) -> None:
    vmid, playbook, params, vm_status, fault = SCENARIOS[scenario]
    target = f"lab/{vmid}"
    with transaction(slots.sessions) as session:
        remediation_auto.create_rule(session, slots.inventory, target=target, playbook=playbook,
                                     min_failed_checks=3, vm_status=vm_status, params=params, created_by="eng",
                                     policy=rem.Policy())
    # Slot 0 is a regular round of a healthy lab; the fault comes right after it: the worst phase for detection.
    assert slots.slot(0, _settled(slots, vmid)) == []
    fault(slots.lab)
    marks: dict[str, int] = {}
    closed: list[tuple[int, str]] = []
    index = 0
    while not closed and index < 6 * FAST_DIVISOR:
        index += 1
        closed = slots.slot(index, _settled(slots, vmid))
        with slots.sessions() as session:
            run = session.scalar(select(RemediationRunRow).where(RemediationRunRow.target == target)
                                 .order_by(RemediationRunRow.id.desc()))
            if run is not None:
                marks.setdefault("run enqueued", index)
                if run.finished_at is not None:
                    marks.setdefault("run finished", index)
    assert closed, f"{scenario}: no closure in {index} slots ({marks})"
    with slots.sessions() as session:
        run = session.get(RemediationRunRow, closed[0][0])
        assert run is not None and run.target == target
        assert (run.playbook, run.outcome, run.closure) == (playbook, "succeeded", "confirmed"), run.summary
    assert index <= 3 * FAST_DIVISOR, (f"{scenario}: closed after {index / FAST_DIVISOR:.2f} check intervals "
                                       f"({index} slots; {marks})")
    # Detection waits for the next regular round (one interval, the worst phase); the rest is the fast lane's.
    assert marks["run enqueued"] <= FAST_DIVISOR + 3, marks


def test_an_alert_or_a_complaint_puts_its_target_in_the_fast_lane(slots: Slots) -> None:
    from pdn_ops.alerts import model as alerts_model
    from pdn_ops.alerts import service as alerts_service
    from pdn_ops.core.db.tables import SiteRow, VmRow

    now = datetime.now(UTC)
    site = slots.inventory.sites[0]
    with transaction(slots.sessions) as session:
        vm_id = session.scalar(select(VmRow.id).where(VmRow.cluster == "lab", VmRow.vmid == 101))
        site_id = session.scalar(select(SiteRow.id).where(SiteRow.url == site.url))
        assert watch.watched(session, now=now).reported == frozenset()

        def alert(labels: dict[str, str], status: str, fingerprint: str) -> alerts_model.ReceivedAlert:
            return alerts_model.ReceivedAlert(fingerprint=fingerprint, status=status, alertname="PdnVmDown",
                                              severity="critical", labels=labels, annotations={},
                                              starts_at=now, ends_at=None)

        alerts_service.receive(session, [alert({"vm_id": str(vm_id)}, "firing", "a1"),
                                         alert({"site_id": str(site_id)}, "resolved", "a2")],
                               engineers=[], public_url="http://pdn-ops.test")
        seen = watch.watched(session, now=now)
        # Firing: the VM and its guest, at once; a resolved alert says nothing is wrong.
        assert seen.reported == {"vm:lab/101", "guest:lab/101"}
        assert set(seen.keys()) >= {"vm:lab/101", "guest:lab/101"}
        # The event's window passes: back to the regular cadence.
        assert watch.watched(session, now=now + timedelta(minutes=5)).reported == frozenset()
        session.rollback()
    _complaint(slots, site_id, now)


def _complaint(slots: Slots, site_id: int | None, now: datetime) -> None:
    from pdn_ops.accounts.model import Role
    from pdn_ops.accounts.tables import UserRow
    from pdn_ops.complaints import ComplaintRow
    from pdn_ops.core.db.tables import OpdRow, SiteRow

    with transaction(slots.sessions) as session:
        site = session.get(SiteRow, site_id)
        assert site is not None
        opd = session.get(OpdRow, site.opd_id)
        assert opd is not None
        user = UserRow(username="admin-fast", password_hash="x", role=Role.OPD_ADMIN.value, opd_id=opd.id)
        session.add(user)
        session.flush()
        session.add(ComplaintRow(opd_id=opd.id, site_id=site.id, category="site_down", description="mati",
                                 state="submitted", created_by=user.id, created_at=now, updated_at=now))
        session.flush()
        assert watch.watched(session, now=now).reported == {f"site:{site.url}"}
        session.rollback()


def test_the_watch_is_bounded_and_ordered() -> None:
    seen = watch.Watch(confirming=frozenset({"vm:c/2"}), suspect=frozenset({"site:b", "vm:c/2"}),
                       reported=frozenset(f"site:r{i}" for i in range(500)))
    keys = seen.keys()
    assert keys[:2] == ["vm:c/2", "site:b"] and len(keys) == watch.MAX_WATCHED and len(set(keys)) == len(keys)
    assert not watch.Watch()
