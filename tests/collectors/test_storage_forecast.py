"""Storage pools: the least-squares days-until-full forecast (pure), then the lab's filling storage through the
Proxmox collector into the hourly storage rollups and the forecast series (both engines)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from collectors.proxmox.collector import ProxmoxCollector
from pdn_ops.core.inventory import load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.health import queries as health_queries
from pdn_ops.health import service as health
from pdn_ops.health.metrics import render_health
from pdn_ops.health.model import Thresholds, days_until_full
from pdn_ops.health.tables import StorageRollupRow

HOUR = 3600.0
DAY = 86400.0


def test_days_until_full_is_the_least_squares_slope_never_two_points() -> None:
    # 1 GB per hour, 100 GB total, 50 GB used at the newest of 5 hours: 50 hours left.
    steady = [(i * HOUR, 46e9 + i * 1e9) for i in range(5)]
    assert days_until_full(steady, 100e9) == pytest.approx(50 / 24)
    # Noise around the same line: the fit, not the last two points (which alone would say "not growing").
    noisy = [(0.0, 46e9), (HOUR, 47.5e9), (2 * HOUR, 47.5e9), (3 * HOUR, 49.5e9), (4 * HOUR, 49.5e9)]
    assert days_until_full(noisy, 100e9) == pytest.approx(50.1e9 / 0.9e9 / 24, rel=0.01)
    assert days_until_full(steady[:2], 100e9) is None, "two points are no forecast"
    assert days_until_full([(i * HOUR, 50e9 - i) for i in range(5)], 100e9) is None, "shrinking: never full"
    assert days_until_full([(i * HOUR, 100e9 + i) for i in range(5)], 100e9) == 0.0


def test_a_filling_lab_storage_gets_a_forecast(make_lab, session: Session) -> None:
    lab = make_lab(vms=2, sites=0, guests=0)
    # About one percentage point per real second at the lab's time scale (0.02): it grows between cycles.
    lab.faults.fill_storage("local-lvm", percent=50, per_hour=72 * 0.02 / lab.time_scale)
    inventory = load_inventory(lab.inventory_path)
    start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    clock = iter(start + timedelta(hours=h) for h in range(10))
    collector = ProxmoxCollector.from_inventory(inventory.clusters[0], inventory.vms,
                                                base_dir=lab.inventory_path.parent)
    collector._clock = lambda: next(clock)  # one cycle per hour of the rollups
    sync_inventory(session, inventory, now=start)
    try:
        for _ in range(4):
            observation = collector.collect()
            health.record_cluster(session, observation, thresholds=Thresholds())
            session.commit()
            time.sleep(0.3)
    finally:
        collector.close()
    rows = session.scalars(select(StorageRollupRow).where(StorageRollupRow.storage == "local-lvm")
                           .order_by(StorageRollupRow.hour)).all()
    assert len(rows) == 4 and [r.used for r in rows] == sorted(r.used for r in rows) and rows[0].used < rows[-1].used
    text = render_health(health_queries.health_snapshot(session))
    line = next(x for x in text.splitlines()
                if x.startswith('pdn_storage_full_in_seconds{cluster="lab",node="pve1",storage="local-lvm"}'))
    assert 0 < float(line.rsplit(" ", 1)[1]) < 1000 * 86400
    # The lab's other storage does not grow: no forecast for it.
    assert 'pdn_storage_full_in_seconds{cluster="lab",node="pve1",storage="local"}' not in text
