"""Start hooks of the composition root: the inventory synced at start, the scheduler with the features' jobs, and
the notification and remediation workers inside the service. Each takes the runtime and returns how to stop what
it started (or None)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session

from pdn_ops.accounts.jobs import account_jobs
from pdn_ops.app.runtime import Runtime
from pdn_ops.complaints import service as complaint_service
from pdn_ops.complaints.jobs import complaint_jobs, photo_jobs
from pdn_ops.core.db.engine import after_commit, transaction
from pdn_ops.core.inventory import Inventory, load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.core.jobs import retention_jobs
from pdn_ops.core.locks import leader_lock_for
from pdn_ops.core.scheduler import start_scheduler
from pdn_ops.health import service as health_service
from pdn_ops.health.collection import inventory_collectors
from pdn_ops.health.jobs import FAST_JOB, CollectorFactory, HealthConfig, build_jobs, fast_lane_job
from pdn_ops.health.metrics import SnapshotCache
from pdn_ops.notify.worker import start_notify_worker
from pdn_ops.public.intake import MessageFeedback
from pdn_ops.runs import alerts as remediation_alerts
from pdn_ops.runs.closure import ClosurePolicy, complaint_link
from pdn_ops.runs.jobs import fast_confirmation, remediation_jobs
from pdn_ops.runs.worker import Worker, WorkerConfig, inventory_clients, run_in_thread

log = logging.getLogger(__name__)
Stop = Callable[[], None]
StartHook = Callable[[Runtime], Stop | None]


def sweep_photos_at_start(runtime: Runtime) -> None:
    """What a crash left between a filing's commit and its photos' move (or before the commit) is settled first."""
    with transaction(runtime.sessions) as session:
        swept = complaint_service.sweep_photos(session, runtime.settings.data_dir,
                                               min_age_s=runtime.settings.photo_janitor_min_age_s)
    if swept.published or swept.removed_staged or swept.removed_orphans:
        log.warning("photo janitor at start: %s", swept)


def sync_inventory_at_start(runtime: Runtime) -> None:
    """Load the inventory file named in the settings and upsert it (also run by `pdn-ops inventory sync`)."""
    inventory = load_inventory(runtime.settings.inventory)
    with transaction(runtime.sessions) as session:
        report = sync_inventory(session, inventory)
    runtime.inventory = inventory
    log.info("inventory %s: %s (%s)", runtime.settings.inventory, inventory.summary(), report.summary())


def real_collectors(runtime: Runtime) -> CollectorFactory | None:
    """The collectors of ``collectors/`` for the runtime's inventory (None before the inventory is loaded)."""
    return inventory_collectors(runtime.inventory, runtime.settings, site_ca_file=runtime.health.site_ca_file)


def scheduler_hook(factory: CollectorFactory | None = None, *,
                   build_factory: Callable[[Runtime], CollectorFactory | None] | None = None) -> StartHook:
    """Runs the scheduler (when ``settings.run_scheduler``) with these collectors: ``factory``, or
    ``build_factory(runtime)`` called at start (after ``sync_inventory_at_start``, so it sees the inventory).
    Without either, only the maintenance jobs run."""

    def hook(runtime: Runtime) -> Stop | None:
        if not runtime.settings.run_scheduler:
            log.info("scheduler disabled (PDN_OPS_RUN_SCHEDULER=0)")
            return None
        chosen = factory or (build_factory(runtime) if build_factory else None)
        if chosen is None:
            log.warning("no collector factory configured: only maintenance jobs will run")
        inventory = runtime.inventory or Inventory()
        health_config = HealthConfig.from_settings(runtime.settings)
        specs = retention_jobs() + account_jobs()
        specs += build_jobs(inventory, chosen, health_config)
        specs += complaint_jobs(runtime.complaints.config, runtime.settings.public_url)
        specs += photo_jobs(runtime.settings.data_dir, min_age_s=runtime.settings.photo_janitor_min_age_s)
        if runtime.inventory is not None:
            specs += remediation_jobs(runtime.inventory, policy=runtime.runs.policy, base_dir=runtime.inventory_dir,
                                      public_url=runtime.settings.public_url)
            if chosen is not None:
                # Fast confirmation: runs awaiting closure, rules part-way to firing, alerts and complaints just
                # received have their targets checked at a sixth of the interval.
                watched, after_record = fast_confirmation(runtime.inventory, policy=runtime.runs.policy,
                                                          base_dir=runtime.inventory_dir, closure=ClosurePolicy())
                specs.append(fast_lane_job(runtime.inventory, chosen, health_config, sessions=runtime.sessions,
                                           watched=watched, after_record=after_record))
        snapshot = runtime.health.snapshot
        specs = [replace(spec, record=feed_snapshot(snapshot, spec.record)) for spec in specs]
        # Here, in the job's thread: the snapshot takes what the job wrote, and scrapes never wait for it.
        service = start_scheduler(runtime.sessions, leader_lock_for(runtime.engine), specs,
                                  after_run=snapshot.after_job)
        runtime.scheduler = service
        return service.stop

    return hook


Record = Callable[[Session, Any], object]


def feed_snapshot(snapshot: SnapshotCache, record: Record) -> Record:
    """A job's record step that, once its transaction commits, hands the health targets it wrote to the /metrics
    snapshot (which then updates those only)."""

    def run(session: Session, result: Any) -> object:
        recorded = record(session, result)
        written = health_service.written_targets(session)
        if written:
            after_commit(session, lambda: snapshot.written(written))
        return recorded

    return run


def notify_worker(runtime: Runtime) -> Stop | None:
    """The outbox's delivery and the inbound messages, in a thread of this process (``PDN_OPS_NOTIFY_WORKER``)."""
    worker = start_notify_worker(runtime.settings, runtime.sessions, intake=runtime.complaints.intake,
                                 feedback=MessageFeedback(runtime.settings.secret_key.get_secret_value()))
    if worker is None:
        return None
    runtime.notify.delivery = worker.rt
    return worker.stop


def remediation_config(runtime: Runtime, worker_id: str) -> WorkerConfig:
    """A worker that also closes runs like ``serve``'s: the complaint link under the supervisor's stored terms
    (the OPD is told over WhatsApp/e-mail) and the engineers' alerts."""
    return WorkerConfig(worker_id=worker_id, policy=runtime.runs.policy, base_dir=runtime.inventory_dir,
                        closure=ClosurePolicy(), complaint_link=complaint_link(runtime.complaints.config),
                        alert=remediation_alerts.seam(runtime.settings.public_url))


def remediation_worker(runtime: Runtime) -> Stop | None:
    """One remediation worker thread inside the service (the demo, small sites)."""
    inventory = runtime.inventory
    if inventory is None:
        log.warning("remediation worker not started: no inventory loaded")
        return None
    config = remediation_config(runtime, f"app:{os.getpid()}")

    def wake_fast_lane(_run_id: int) -> None:
        # In this process only when it is the scheduler's leader; elsewhere the lane's cadence finds the run.
        if runtime.scheduler is not None:
            runtime.scheduler.wake(FAST_JOB)

    config.on_succeeded = wake_fast_lane
    worker = Worker(runtime.engine, runtime.sessions, inventory, inventory_clients(inventory, runtime.inventory_dir),
                    config)
    return run_in_thread(worker)
