"""The shipped rules the fault matrix does not reach, made to fire for real: a filesystem filling up on a guest
(PdnGuestDiskAlmostFull), a scheduler that stops running its collectors (PdnCollectorStalled), complaints near and
past their SLA (PdnComplaintSlaAtRisk, PdnComplaintSlaBreached) and pdn-ops itself unreachable
(PdnOpsScrapeFailing).

Everything is real except Proxmox (the lab): the collectors through the scheduler's job wrapper, /metrics, a real
Prometheus with the shipped rules and a real Alertmanager with the shipped routing, posting to pdn-ops' receiver.
Time is scaled as in the fault matrix (tests/alerts/test_fault_matrix.py: one minute of a rule's ``for:`` is one
check interval of a fraction of a second), and each job's own interval is that check interval, so that the stall
threshold (twice the job's interval plus a margin) is reached in a few intervals. The service is served twice: one
server is what Prometheus scrapes, the other receives Alertmanager's posts, so that stopping the first (pdn-ops
unreachable) still lets the alert about it reach the receiver.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from pdn_ops.accounts.model import Role
from pdn_ops.accounts.service import create_user, principal_of
from pdn_ops.app.factory import create_app
from pdn_ops.app.runtime import build_runtime
from pdn_ops.complaints import service as complaints
from pdn_ops.complaints import stats as complaint_stats
from pdn_ops.complaints.service import ComplaintConfig, Draft
from pdn_ops.complaints.sla import SlaPolicy
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import OpdRow, VmRow, utcnow
from pdn_ops.core.inventory import load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.core.jobs import JobWrapper
from pdn_ops.core.settings import load_settings
from pdn_ops.health.collection import InventoryCollectorFactory
from pdn_ops.health.jobs import HealthConfig, build_jobs
from pdn_ops.health.tables import HealthAlertRow
from pdn_ops.lab import guest_state
from pdn_ops.notify.tables import NotifyOutboxRow
from tests.alerts.test_fault_matrix import (
    INTERVAL,
    TOKEN,
    Process,
    duration,
    get_json,
    scaled_alertmanager,
    scaled_rules,
    wait_until,
)
from tests.complaints.world import jpeg
from tests.support import free_port, require_binary, serve_in_thread

pytestmark = pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning")

DISK_VMID = 103  # the lab's third guest: no guest agent (its disk comes from df over SSH), no site
BOOT_EFI = (124 * 1024**2, 12 * 1024**2)  # the lab guest's second real filesystem (size, used): see its df


@dataclasses.dataclass
class Stack:
    lab: Any
    app: Any
    prometheus: str
    alertmanager: str
    interval: float
    cycles: list[float]
    running: threading.Event  # cleared: the scheduler stops running the collectors
    scraped: Any  # the server Prometheus scrapes (a context manager; closing it makes pdn-ops unreachable)

    def received(self) -> list[HealthAlertRow]:
        with self.app.state.runtime.sessions() as session:
            return list(session.scalars(select(HealthAlertRow).order_by(HealthAlertRow.id)))

    def firing(self) -> dict[str, HealthAlertRow]:
        return {r.alertname: r for r in self.received() if r.status == "firing"}

    def checks_since(self, started: float) -> int:
        return sum(1 for done in self.cycles if done > started)


@pytest.fixture(scope="module")
def stack(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if os.environ.get("PDN_OPS_FUTURE_CLOCK"):
        # Prometheus is a Go program: it reads the clock without libc, so libfaketime does not move it, and its
        # time() would lag the collectors' timestamps by the +400 days (the stall rule could never fire). The
        # moved clock is proven end to end by the fault matrix; every cycle is also three times slower there.
        pytest.skip("rules firing for real: real-clock pass only (Prometheus ignores libfaketime)")
    prometheus_bin = require_binary("prometheus", "/usr/bin/prometheus")
    alertmanager_bin = require_binary("prometheus-alertmanager", "/usr/bin/prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("rules-fire")
    url = f"sqlite:///{tmp / 'db.sqlite3'}"
    migrate.upgrade(url)
    inventory = load_inventory(lab.inventory_path)
    settings = load_settings(demo=True, database_url=url, inventory=lab.inventory_path, run_scheduler=False,
                             notify_worker=False, alertmanager_token=TOKEN)
    app = create_app(build_runtime(settings))
    runtime = app.state.runtime
    with transaction(runtime.sessions) as session:
        sync_inventory(session, inventory)
        engineer = create_user(session, username="eng-duty", password="x" * 12, role=Role.ENGINEER)
        engineer.email = "duty@diskominfo.example.go.id"
    factory = InventoryCollectorFactory(inventory, base_dir=lab.inventory_path.parent, site_ca_file=str(lab.ca_file))
    jobs = [job for job in build_jobs(inventory, factory, HealthConfig()) if job.kind != "maintenance"]
    wrapper = JobWrapper(runtime.sessions)
    pool = ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="rules-fire-job")
    stop, running = threading.Event(), threading.Event()
    cycles: list[float] = []

    def run(job: Any) -> None:
        with contextlib.suppress(Exception):  # a failing job is a failed run; the loop goes on
            wrapper.run(job)

    def cycle() -> float:
        started = time.monotonic()
        list(pool.map(run, jobs))
        try:
            runtime.health.snapshot.refresh()
        except Exception:
            logging.getLogger(__name__).exception("snapshot refresh failed")
        cycles.append(time.monotonic())
        return cycles[-1] - started

    cycle()
    took = sorted(cycle() for _ in range(3))[1]
    interval = max(INTERVAL, math.ceil(15 * took) / 10)
    # Each job runs every check interval here, and says so (pdn_collector_interval_seconds): the stall threshold
    # is relative to it.
    jobs = [dataclasses.replace(job, interval_s=interval) for job in jobs]
    cycle()

    def collect() -> None:
        while not stop.is_set():
            if not running.is_set():
                stop.wait(interval / 5)
                continue
            stop.wait(max(0.0, interval - cycle()))

    running.set()
    collector = threading.Thread(target=collect, name="rules-fire-collect", daemon=True)
    processes: list[Process] = []
    scraped = serve_in_thread(app)
    try:
        with serve_in_thread(app) as receiver:
            target = scraped.__enter__()
            am_port, prom_port = free_port(), free_port()
            am_config = scaled_alertmanager(tmp, receiver, interval)
            processes.append(Process([alertmanager_bin, f"--config.file={am_config}", f"--storage.path={tmp / 'am'}",
                                      f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                                     tmp / "alertmanager.log"))
            prom_config = {
                "global": {"scrape_interval": duration(interval), "scrape_timeout": duration(interval),
                           "evaluation_interval": duration(interval)},
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                "rule_files": scaled_rules(tmp, interval),
                "scrape_configs": [{"job_name": "pdn-ops", "static_configs": [
                    {"targets": [f"127.0.0.1:{urllib.parse.urlsplit(target).port}"]}]}],
            }
            (tmp / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
            processes.append(Process([prometheus_bin, f"--config.file={tmp / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={tmp / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s"],
                                     tmp / "prometheus.log"))
            collector.start()
            stack = Stack(lab, app, f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}", interval, cycles,
                          running, scraped)
            wait_until(lambda: _scraped(stack), 60, "Prometheus scrapes pdn-ops and nothing fires")
            yield stack
    finally:
        stop.set()
        if collector.is_alive():
            collector.join(timeout=30)
        with contextlib.suppress(Exception):
            scraped.__exit__(None, None, None)
        for process in reversed(processes):
            process.stop()
        pool.shutdown(wait=True)
        factory.close()
        runtime.engine.dispose()


def _scraped(stack: Stack) -> bool:
    try:
        result = get_json(f"{stack.prometheus}/api/v1/query?query=" + urllib.parse.quote(
            'up{job="pdn-ops"} == 1 and on() count(pdn_guest_up == 1) == 3'))["data"]["result"]
        alerts = get_json(f"{stack.prometheus}/api/v1/alerts")["data"]["alerts"]
        return bool(result) and not alerts
    except OSError:
        return False


def _prometheus_firing(stack: Stack) -> set[str]:
    alerts = get_json(f"{stack.prometheus}/api/v1/alerts")["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


def _one_filesystem_full_percent(lab: Any) -> float:
    """A fill of the guest's root filesystem over 90 % that leaves the VM's disks as a whole under 90 %: one
    filesystem filling up on a VM that has room overall (the VM's disk, summed over its filesystems, is
    PdnVmDiskAlmostFull's)."""
    size = int(lab.guest(DISK_VMID).state_file.read()["disk"]["size"])
    efi_size, efi_used = BOOT_EFI
    highest = (0.90 * (size + efi_size) - efi_used) / size  # the VM as a whole stays at or under 90 % below this
    assert highest > 0.9005, "the lab guest's disk is too small to fill one filesystem only"
    return round(100 * (0.9 + highest) / 2, 3)


def test_the_rules_the_matrix_does_not_reach_fire_for_real(stack: Stack, tmp_path: Path) -> None:
    interval = stack.interval
    # 1. A filesystem over 90 % on a guest without an agent (the SSH collector's df), the VM under 90 % overall.
    percent = _one_filesystem_full_percent(stack.lab)
    disk_from = time.monotonic()
    stack.lab.faults.fill_disk(DISK_VMID, percent=percent)
    state = stack.lab.guest(DISK_VMID).state_file.read()
    assert guest_state.disk_used(state) / state["disk"]["size"] > 0.90

    # 2. Complaints near and past their 7-day SLA: one filed six days ago (80 % of its time used), one a month ago.
    with transaction(stack.app.state.runtime.sessions) as session:
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})  # the collectors write meanwhile
        vm = session.scalar(select(VmRow).where(VmRow.vmid == DISK_VMID))
        assert vm is not None and vm.opd_id is not None
        code = session.get_one(OpdRow, vm.opd_id).code
        admin = create_user(session, username="admin-sla", password="x" * 12, role=Role.OPD_ADMIN, opd_code=code)
        session.flush()
        config = ComplaintConfig(data_dir=tmp_path, policy=SlaPolicy())
        draft = Draft(asset=f"vm:{vm.id}", category="slow", description="Portal lambat sejak minggu lalu")
        for days in (6, 30):
            complaints.submit(session, principal_of(admin), draft, [("a.jpg", jpeg())], config=config,
                              now=utcnow() - timedelta(days=days))
        levels = {(c, level): n for c, level, n in complaint_stats.snapshot(session, utcnow()).by_level}
        assert levels == {(code, "at_risk_80"): 1, (code, "breached"): 1}

    # 3. The scheduler stops running the collectors (no leader, a hung job): their last success grows old.
    wait_until(lambda: stack.checks_since(disk_from) >= 2, 30 * interval + 10, "the full filesystem is collected")
    stack.running.clear()
    stalled_from = time.monotonic()

    wanted = {"PdnGuestDiskAlmostFull", "PdnCollectorStalled", "PdnComplaintSlaAtRisk", "PdnComplaintSlaBreached"}
    # The slowest: the disk rule's "for: 10m" (10 intervals) after two checks, then Alertmanager's group wait.
    wait_until(lambda: wanted <= set(stack.firing()), 25 * interval + 10, f"{sorted(wanted)} reach the receiver")
    got = stack.firing()
    assert got["PdnGuestDiskAlmostFull"].labels["mount"] == "/"
    assert got["PdnGuestDiskAlmostFull"].labels["vm_id"] == str(vm.id)
    assert got["PdnComplaintSlaAtRisk"].labels["opd"] == code == got["PdnComplaintSlaBreached"].labels["opd"]
    assert got["PdnComplaintSlaBreached"].severity == "critical"
    # One problem, one alert: the VM as a whole is under the threshold, and nothing else fires.
    assert set(got) == wanted, sorted(got)
    stalled_after = time.monotonic() - stalled_from
    # Twice the job's interval plus the margin (5 intervals here), "for: 1m", delivery: well under 20 intervals.
    assert stalled_after < 20 * interval + 10, f"stall seen after {stalled_after / interval:.1f} intervals"
    assert not stack.checks_since(stalled_from + interval), "the collectors stayed stopped"
    print(f"\nrules fired (interval {interval:g} s): disk after {stack.checks_since(disk_from)} checks; "
          f"stall after {stalled_after / interval:.1f} intervals")

    # The scheduler comes back: the stall resolves; the filesystem is cleaned up: the disk alert resolves.
    stack.lab.faults.fill_disk(DISK_VMID, percent=0)
    stack.running.set()
    wait_until(lambda: not ({"PdnCollectorStalled", "PdnGuestDiskAlmostFull"} & set(stack.firing())),
               30 * interval + 10, "the stall and the full filesystem resolve after the repair")

    # 4. pdn-ops unreachable: the server Prometheus scrapes stops; the alert about it reaches the receiver (served
    # by the other server), and the inhibited collector alerts stay quiet.
    before = {r.id for r in stack.received()}
    stack.scraped.__exit__(None, None, None)
    wait_until(lambda: any(r.alertname == "PdnOpsScrapeFailing" and r.status == "firing"
                           for r in stack.received() if r.id not in before),
               15 * interval + 10, "PdnOpsScrapeFailing reaches the receiver")
    assert "PdnOpsScrapeFailing" in _prometheus_firing(stack)
    new = [r.alertname for r in stack.received() if r.id not in before and r.status == "firing"]
    assert new == ["PdnOpsScrapeFailing"], new

    # Every firing that reached the receiver was told to the engineers exactly once.
    with stack.app.state.runtime.sessions() as session:
        messages = list(session.scalars(select(NotifyOutboxRow).where(NotifyOutboxRow.event == "health_alert")))
    fired = [m.idempotency_key for m in messages if ":firing:" in m.idempotency_key]
    assert len(fired) == len(set(fired)) == len(stack.received()), (fired, stack.received())
