"""Start hooks of the composition root: the inventory synced at start, the scheduler with the features' jobs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pdn_ops.app.context import AppContext
from pdn_ops.complaints.jobs import complaint_jobs
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.inventory import Inventory, load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.core.locks import leader_lock_for
from pdn_ops.core.scheduler import start_scheduler
from pdn_ops.health.jobs import CollectorFactory, HealthConfig, build_jobs
from pdn_ops.runs.jobs import remediation_jobs

log = logging.getLogger(__name__)


def scheduler_hook(factory: CollectorFactory | None = None, *,
                   build_factory: Callable[[Any], CollectorFactory | None] | None = None,
                   ) -> Callable[[object], Callable[[], None] | None]:
    """A start hook for ``create_app``: runs the scheduler (when ``settings.run_scheduler``) with these collectors.

    The real collectors plug in here, by one of: ``factory``; ``build_factory(ctx)``, called at start with the
    app context (settings, inventory: e.g. to resolve secrets relative to the inventory file); or
    ``ctx.extras["collector_factory"]`` set by an earlier hook. Without any, only the maintenance jobs run.
    List it after ``sync_inventory_at_start`` so the jobs see the synced inventory.
    """

    def hook(ctx: object) -> Callable[[], None] | None:
        assert isinstance(ctx, AppContext)
        if not ctx.settings.run_scheduler:
            log.info("scheduler disabled (PDN_OPS_RUN_SCHEDULER=0)")
            return None
        chosen = factory or (build_factory(ctx) if build_factory else None) or ctx.extras.get("collector_factory")
        if chosen is None:
            log.warning("no collector factory configured: only maintenance jobs will run")
        inventory = ctx.inventory or Inventory()
        specs = build_jobs(inventory, chosen, HealthConfig.from_settings(ctx.settings))
        if "complaint_config" in ctx.extras:
            specs += complaint_jobs(ctx.extras["complaint_config"], ctx.settings.public_url)
        if ctx.inventory is not None:
            specs += remediation_jobs(ctx.inventory, policy=ctx.extras.get("remediation_policy"),
                                      base_dir=Path(ctx.settings.inventory).resolve().parent,
                                      public_url=ctx.settings.public_url)
        extras = ctx.extras

        def after_run() -> None:
            cache = extras.get("health_snapshot_cache")  # created by the first /metrics scrape, if any
            if cache is not None:
                cache.refresh()  # here, in the job's thread: scrapes then render without waiting

        service = start_scheduler(ctx.sessions, leader_lock_for(ctx.engine), specs, after_run=after_run)
        ctx.extras["scheduler"] = service
        return service.stop

    return hook


def sync_inventory_at_start(ctx: AppContext) -> None:
    """Load the inventory file named in the settings and upsert it (also run by `pdn-ops inventory sync`)."""
    inventory = load_inventory(ctx.settings.inventory)
    with transaction(ctx.sessions) as session:
        report = sync_inventory(session, inventory)
    ctx.inventory = inventory
    log.info("inventory %s: %s (%s)", ctx.settings.inventory, inventory.summary(), report.summary())
