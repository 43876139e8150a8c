"""Automatic remediation end to end in the lab, with nothing fed by hand: the real collectors (Proxmox API, HTTPS
sites, SSH guests) record what they see, the scheduler's ``remediation:auto-rules`` job (through the one job
wrapper) derives the signals and enqueues, the worker executes, and the same checks confirm the closure.

The scenarios of the issue's benchmark: a stopped VM ("site down for 3 checks and its VM stopped -> start the
VM") and a crashed service (its guest reports the declared unit inactive -> restart it over SSH).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.inventory import Inventory
from pdn_ops.core.jobs import JobSpec, JobWrapper
from pdn_ops.health.collection import InventoryCollectorFactory
from pdn_ops.health.jobs import HealthConfig, build_jobs
from pdn_ops.runs import auto as remediation_auto
from pdn_ops.runs import model as rem
from pdn_ops.runs.closure import ClosurePolicy
from pdn_ops.runs.jobs import remediation_jobs
from pdn_ops.runs.tables import RemediationRunRow
from pdn_ops.runs.worker import Clients, Worker, WorkerConfig, proxmox_executor_for
from tests.remediation.world import lab_with_database

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning")]


class AutoLab:
    def __init__(self, lab: Any, inventory: Inventory, sessions: sessionmaker[Session]) -> None:
        self.lab, self.inventory, self.sessions = lab, inventory, sessions
        base = lab.inventory_path.parent
        self.factory = InventoryCollectorFactory(inventory, base_dir=base, site_ca_file=str(lab.ca_file))
        # The product's jobs: the collectors of build_jobs and the policy engine of remediation_jobs.
        self.collectors = [j for j in build_jobs(inventory, self.factory, HealthConfig()) if j.kind != "maintenance"]
        self.rules: JobSpec = remediation_jobs(inventory, base_dir=base)[0]
        self.wrapper = JobWrapper(sessions)
        self.worker = Worker(sessions.kw["bind"], sessions, inventory,
                             Clients(proxmox=lambda name: proxmox_executor_for(inventory, name, base)),
                             WorkerConfig(worker_id="auto-lab", base_dir=base, closure=ClosurePolicy(needed=3)))

    def round(self) -> None:
        """One check interval: every collector job, then the rules job, then the worker (execute and close)."""
        for spec in self.collectors:
            self.wrapper.run(spec)
        self.wrapper.run(self.rules)
        self.worker.run_pending()
        self.worker.close_runs()

    def runs(self, target: str) -> list[RemediationRunRow]:
        with self.sessions() as session:
            rows = list(session.scalars(select(RemediationRunRow).where(RemediationRunRow.target == target)))
            for row in rows:
                list(row.steps)
            return rows


@pytest.fixture(scope="module")
def lab_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AutoLab]:
    with lab_with_database(tmp_path_factory.mktemp("autolab"), vms=3, sites=3) as (lab, inventory, sessions):
        world = AutoLab(lab, inventory, sessions)
        try:
            yield world
        finally:
            world.worker.close()
            world.factory.close()


def rule(world: AutoLab, target: str, playbook: str, vm_status: str | None, params: dict[str, object]) -> None:
    with transaction(world.sessions) as session:
        remediation_auto.create_rule(session, world.inventory, target=target, playbook=playbook,
                                     min_failed_checks=3, vm_status=vm_status, params=params, created_by="eng1",
                                     policy=rem.Policy())


def until_closed(world: AutoLab, target: str, rounds: int = 12) -> tuple[RemediationRunRow, int]:
    for n in range(1, rounds + 1):
        world.round()
        runs = world.runs(target)
        if runs and runs[-1].closure in ("confirmed", "ineffective"):
            return runs[-1], n
    raise AssertionError(f"no closure for {target} in {rounds} rounds: {[(r.state, r.closure) for r in runs]}")


def test_a_stopped_vm_is_started_by_its_rule_and_closed_by_the_checks(lab_world: AutoLab) -> None:
    world, vmid = lab_world, 101
    rule(world, f"lab/{vmid}", "restart_vm", "stopped", {})
    world.round()
    assert world.runs(f"lab/{vmid}") == [], "a healthy VM: the rule does nothing"
    world.lab.faults.stop_vm(vmid)
    world.lab.wait_guest(vmid, up=False)
    run, rounds = until_closed(world, f"lab/{vmid}")
    assert (run.playbook, run.approvals_needed, run.outcome, run.closure) == ("restart_vm", 0, "succeeded",
                                                                              "confirmed"), run.summary
    assert run.trigger.startswith("rule:") and run.complaint_id is None
    assert [s.name for s in run.steps if s.state == "succeeded" and s.side_effect] == ["start"]
    assert rounds >= 3 + 3, "three failed checks before the rule fires, three passing ones before the closure"
    assert len(world.runs(f"lab/{vmid}")) == 1


def test_a_crashed_service_is_restarted_by_its_rule_and_closed_by_the_checks(lab_world: AutoLab) -> None:
    world, vmid = lab_world, 102
    rule(world, f"lab/{vmid}", "restart_service", "running", {"unit": "nginx.service"})
    world.lab.faults.crash_service(vmid, "nginx.service")
    run, _ = until_closed(world, f"lab/{vmid}")
    assert (run.playbook, run.state, run.closure) == ("restart_service", "succeeded", "confirmed"), run.summary
    assert run.params == {"unit": "nginx.service"} and run.approvals_needed == 0
    assert len(world.runs(f"lab/{vmid}")) == 1
