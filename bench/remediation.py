"""Remediation benchmarks: fault to health-confirmed closure in the lab, and 100 runs on two PostgreSQL workers.

    .venv/bin/python -m bench.remediation [--interval 2] [--runs 100] [--skip-lab] [--skip-scale]
                                          [--lanes fast,regular]

1. Lab scenarios with automatic remediation (rule: its symptom in 3 checks in a row, then the playbook): crashed
   service, stopped VM, full disk, bad update rolled back (the rule rolls back to the snapshot taken before the
   deploy, the one the snapshot chooser suggests), memory pressure fixed by a resize with the reboot it needs. The
   product's regular collector jobs (HTTPS sites, SSH guests, the Proxmox API) run every ``--interval`` seconds,
   the product's ``remediation:auto-rules`` job every half interval, and (lane ``fast``) the fast lane
   (``health:fast-lane``: targets of runs awaiting closure, of rules part-way to firing, of fresh alerts and
   complaints) every sixth of an interval, all through the scheduler's job wrapper; one in-process worker executes
   and closes (3 passing checks) at every slot. The fault is made just after a regular round (worst phase). Rollback and
   resize runs wait for an engineer's approval (the issue's rule), which the bench gives at once as "bench-eng".
   Reported: first failed check after the fault, rule fired, run finished, closure confirmed (seconds and check
   intervals).
2. Scale-out: ``--runs`` restart_vm runs on as many fakepve VMs, two ``pdn-ops remediation worker`` processes on
   PostgreSQL. Reported: total time, runs per worker, each run executed once, and per run the playbook's own time
   (its steps) beside the worker overhead (claim, journal writes, outcome).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.core.inventory import load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.core.jobs import JobWrapper
from pdn_ops.health.collection import InventoryCollectorFactory
from pdn_ops.health.jobs import HealthConfig, build_jobs
from pdn_ops.runs import auto as remediation_auto
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.closure import ClosurePolicy
from pdn_ops.runs.jobs import remediation_jobs
from pdn_ops.runs.tables import RemediationRunRow
from pdn_ops.runs.worker import Clients, Worker, WorkerConfig, proxmox_executor_for

PG_ADMIN = os.environ.get("PDN_OPS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def lab_scenarios(interval: float, *, fast: bool = True) -> list[dict[str, Any]]:
    from pdn_ops.health.jobs import FAST_DIVISOR, fast_lane_job
    from pdn_ops.lab.lab import Lab
    from pdn_ops.runs.jobs import fast_confirmation

    results = []
    slot = interval / FAST_DIVISOR
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab.start(Path(tmp) / "lab", vms=5, sites=5, time_scale=0.02)
        try:
            url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
            migrate.upgrade(url)
            engine = make_engine(url)
            sessions = make_sessionmaker(engine)
            inventory = load_inventory(lab.inventory_path)
            base = lab.inventory_path.parent
            with transaction(sessions) as session:
                sync_inventory(session, inventory)
            worker = Worker(engine, sessions, inventory,
                            Clients(proxmox=lambda name: proxmox_executor_for(inventory, name, base)),
                            WorkerConfig(worker_id="bench", base_dir=base, closure=ClosurePolicy(needed=3)))
            # The product's jobs: the regular collectors, the policy engine and (unless --no-fast-lane) the fast
            # lane, all through the scheduler's job wrapper.
            factory = InventoryCollectorFactory(inventory, base_dir=base, site_ca_file=str(lab.ca_file))
            regular = [j for j in build_jobs(inventory, factory, HealthConfig()) if j.kind != "maintenance"]
            rules_job = remediation_jobs(inventory, base_dir=base)[0]
            watched, after_record = fast_confirmation(inventory, base_dir=base, closure=ClosurePolicy(needed=3))
            fast_job = fast_lane_job(inventory, factory, HealthConfig(), sessions=sessions, watched=watched,
                                     after_record=after_record, interval_s=slot)
            wrapper = JobWrapper(sessions)
            scenarios: list[tuple[str, int, str, dict[str, object], str | None, Any]] = [
                ("crashed service", 102, "restart_service", {"unit": "nginx.service"}, "running",
                 lambda: lab.faults.crash_service(102, "nginx.service")),
                ("stopped VM", 101, "restart_vm", {}, "stopped", lambda: _stop(inventory, base, 101)),
                ("full disk", 103, "free_disk", {"cleanup": "journal"}, None, lambda: lab.faults.fill_disk(103, 97)),
                ("bad update", 104, "restore_snapshot", {"snapshot": "before_update"}, "running",
                 lambda: lab.faults.ship_bad_update(104, version="1.5.0")),
                ("memory pressure", 105, "resize_vm", {"memory_mib": 4096, "reboot": True}, "running",
                 lambda: lab.faults.memory_pressure(105, need_mib=3072)),
            ]
            # The deploy procedure's snapshot, taken before the clock starts (not part of the fault).
            lab.faults.take_snapshot(104, "before_update", description="before opd-portal 1.5.0")
            for name, vmid, playbook, params, vm_status, fault in scenarios:
                target = f"lab/{vmid}"
                with transaction(sessions) as session:
                    remediation_auto.create_rule(session, inventory, target=target, playbook=playbook,
                                                 min_failed_checks=3, vm_status=vm_status, params=params,
                                                 created_by="bench", policy=rem.Policy())
                marks_suggested = None
                # The fault comes just after a regular round: the worst phase, detection waits a whole interval.
                for job in regular:
                    wrapper.run(job)
                t0 = time.monotonic()
                fault()
                marks: dict[str, Any] = {}
                run_id = None
                index = 0
                while time.monotonic() - t0 < 300:
                    index += 1
                    time.sleep(max(0.0, t0 + index * slot - time.monotonic()))
                    if index % FAST_DIVISOR == 0:
                        for job in regular:
                            wrapper.run(job)
                    if index % (FAST_DIVISOR // 2) == 0:  # the rules' 15 s of a 30 s interval
                        wrapper.run(rules_job)
                    if fast:
                        wrapper.run(fast_job)
                    if "detected" not in marks and _failing(sessions, target):
                        marks["detected"] = time.monotonic() - t0
                    if run_id is None:
                        with transaction(sessions) as session:
                            run = session.scalar(select(RemediationRunRow).where(RemediationRunRow.target == target)
                                                 .order_by(RemediationRunRow.id.desc()))
                            if run is not None:
                                run_id = run.id
                                marks["rule fired"] = time.monotonic() - t0
                                if run.state == rem.State.AWAITING_APPROVAL:
                                    svc.approve(session, run.id, engineer="bench-eng")
                                    marks["approved"] = True
                        if run_id is not None and playbook == "restore_snapshot":
                            spent = time.monotonic()
                            marks_suggested = _suggested(sessions, inventory, base, target)
                            t0 += time.monotonic() - spent
                    if run_id is not None and "run finished" not in marks and worker.run_pending():
                        marks["run finished"] = time.monotonic() - t0
                    if run_id is not None and worker.close_runs():
                        marks["closed"] = time.monotonic() - t0
                        marks["slots"] = index
                        break
                with sessions() as session:
                    row = session.get(RemediationRunRow, run_id) if run_id else None
                    closure = (row.outcome, row.closure) if row else ("no run", None)
                    if row is not None and row.started_at and row.finished_at:
                        marks["playbook"] = (row.finished_at - row.started_at).total_seconds()
                    if row is None:
                        marks["why"] = remediation_auto.evaluate_all(
                            session, inventory, policy=rem.Policy(), now=datetime.now(UTC))
                if playbook == "restore_snapshot":
                    marks["suggested"] = marks_suggested
                results.append({"scenario": name, "interval": interval, "closure": closure, **marks})
            factory.close()
            worker.close()
            engine.dispose()
        finally:
            lab.stop()
    return results


def _failing(sessions: Any, target: str) -> bool:
    """Does the health model already see something wrong with the VM ``target`` (a failed check, or a guest
    finding such as a full disk)?"""
    with sessions() as session:
        signals = remediation_auto.signals_for(session, target)
    return bool(signals.consecutive_failed_checks or signals.guest_problems or signals.vm_status == "stopped")


def _suggested(sessions: Any, inventory: Any, base: Path, target: str) -> str | None:
    from pdn_ops.runs.snapshots import SnapshotCache, inventory_fetch, suggest

    cache = SnapshotCache(fetch=inventory_fetch(lambda: inventory, base))
    cache.get(target)
    cache.wait(target, 30)
    with sessions() as session:
        return suggest(session, cache, inventory, target=target, base_dir=base).suggested


def _stop(inventory: Any, base: Path, vmid: int) -> None:
    from remediation.executors.proxmox import ApiCall

    proxmox = proxmox_executor_for(inventory, "lab", base)
    try:
        proxmox.start(ApiCall("POST", f"/nodes/pve1/qemu/{vmid}/status/stop"), lambda _u: None)
    finally:
        proxmox.close()


def scale(runs: int) -> dict[str, Any]:
    from fakepve.certs import make_cert
    from fakepve.pytest_plugin import _Serving
    from fakepve.server import FakePve

    from tests.remediation.world import add_vms, write_inventory

    name = f"pdnops_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cert, key, _ = make_cert(tmp, hosts=("127.0.0.1",))
            pve = FakePve(user="root@pam", password="secret", host="127.0.0.1", port=0)
            pve.time_scale = 0
            serving = _Serving(pve, cert, key)
            try:
                vmids = range(1001, 1001 + runs)
                add_vms(pve, vmids, status="stopped")
                path = write_inventory(Path(tmp), pve, cert, vmids=vmids)
                inventory = load_inventory(path)
                migrate.upgrade(url)
                engine = make_engine(url)
                sessions = make_sessionmaker(engine)
                with transaction(sessions) as session:
                    for vmid in vmids:
                        svc.request_run(session, inventory, playbook="restart_vm", target=f"pve/{vmid}", params={},
                                        requester=svc.Requester("bench"), idempotency_key=f"s{vmid}",
                                        policy=rem.Policy(), trigger="rule:bench")
                t0 = time.monotonic()
                procs = [subprocess.Popen([sys.executable, "-c", "from pdn_ops.app.cli import main; main()",
                                           "remediation", "worker", "--once", "--database-url", url, "--inventory",
                                           str(path), "--worker-id", w], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True) for w in ("alpha", "beta")]
                for proc in procs:
                    _, err = proc.communicate(timeout=1200)
                    assert proc.returncode == 0, err[-2000:]
                total = time.monotonic() - t0
                with sessions() as session:
                    rows = list(session.scalars(select(RemediationRunRow)))
                    own, overhead = [], []
                    for row in rows:
                        steps = sum(((s.finished_at or s.intent_at) - s.intent_at).total_seconds() for s in row.steps)
                        began = row.started_at or row.created_at
                        wall = ((row.finished_at or began) - began).total_seconds()
                        own.append(steps)
                        overhead.append(max(wall - steps, 0.0))
                engine.dispose()
                starts = Counter(t["id"] for t in pve.tasklog if t["type"] == "qmstart")
            finally:
                serving.stop()
        return {
            "runs": len(rows), "total_s": total, "per_worker": dict(Counter(r.claimed_by for r in rows)),
            "all_succeeded_once": all(r.state == "succeeded" and r.attempt == 1 for r in rows)
            and all(n == 1 for n in starts.values()) and len(starts) == runs,
            "own_median_s": statistics.median(own), "overhead_median_s": statistics.median(overhead),
            "overhead_p95_s": sorted(overhead)[int(0.95 * (len(overhead) - 1))],
        }
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    from pdn_ops.health.jobs import FAST_DIVISOR

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between check rounds in the lab")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--skip-lab", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--lanes", default="fast,regular",
                        help="fast: with the fast lane (the product's default); regular: without it (before)")
    args = parser.parse_args()
    if not args.skip_lab:
        for lane in args.lanes.split(","):
            print(f"lab scenarios, {lane} lane, check interval {args.interval:g} s, fault right after a regular "
                  "round (worst phase), rule: its symptom in 3 checks in a row, closure: 3 passing checks")
            for r in lab_scenarios(args.interval, fast=lane == "fast"):
                marks = " | ".join(f"{k} {r[k]:.1f} s ({r[k] / r['interval']:.1f} intervals)"
                                   for k in ("detected", "rule fired", "run finished", "closed") if k in r)
                if "slots" in r:
                    marks += f" | closed in slot {r['slots']} ({r['slots'] / FAST_DIVISOR:.2f} scheduled intervals)"
                if "closed" in r and "playbook" in r:
                    marks += (f" | playbook {r['playbook']:.2f} s; closed minus playbook "
                              f"{(r['closed'] - r['playbook']) / r['interval']:.2f} intervals")
                extra = f" | suggested snapshot {r['suggested']}" if "suggested" in r else ""
                approved = " | approved by an engineer at once" if r.get("approved") else ""
                print(f"  {r['scenario']:<16} {r['closure']} | {marks}"
                      + ("" if "closed" in r else f" | {r.get('why')}") + approved + extra)
    if not args.skip_scale:
        s = scale(args.runs)
        print(f"scale-out: {s['runs']} runs, two workers on PostgreSQL: {s['total_s']:.1f} s total, "
              f"{s['runs'] / s['total_s']:.1f} runs/s, per worker {s['per_worker']}, "
              f"each executed exactly once: {s['all_succeeded_once']}")
        print(f"  per run: playbook's own time (steps) median {s['own_median_s'] * 1000:.0f} ms; worker overhead "
              f"(claim, journal, outcome) median {s['overhead_median_s'] * 1000:.0f} ms, "
              f"p95 {s['overhead_p95_s'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
