"""The in-memory snapshot behind /metrics: a scrape renders, it never waits for the database after the first."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from pdn_ops.health.metrics import SnapshotCache, render_health
from pdn_ops.health.queries import HealthSnapshot, TargetSnapshot


def snapshot(n: int) -> HealthSnapshot:
    return HealthSnapshot(taken_at=datetime(2026, 1, 1, tzinfo=UTC), targets=(
        TargetSnapshot("cluster", f"c{n}", "up", "ok", None, None, None, None, {}),))


def test_a_stale_snapshot_is_served_while_one_background_refresh_runs() -> None:
    loads: list[int] = []
    release = threading.Event()
    loaded_again = threading.Event()

    def load() -> HealthSnapshot:
        loads.append(len(loads))
        if len(loads) > 1:
            release.wait(10)
            loaded_again.set()
        return snapshot(len(loads))

    cache = SnapshotCache(load, ttl=0.0)
    first = cache.get()
    assert loads == [0], "the first scrape reads synchronously"
    assert cache.get() is first and cache.get() is first, "stale: served at once while one refresh runs"
    release.set()
    assert loaded_again.wait(10)
    assert len(loads) == 2, "one refresh, not one per scrape"
    fresh = cache.refresh()
    assert fresh.targets[0].ref == "c3" and len(loads) == 3


def test_invalidate_keeps_serving_the_copy_it_has() -> None:
    cache = SnapshotCache(lambda: snapshot(1), ttl=3600)
    value = cache.get()
    cache.invalidate()
    assert cache.get() is value


def test_label_values_are_escaped_and_special_floats_written_as_prometheus_expects() -> None:
    snap = HealthSnapshot(taken_at=datetime(2026, 1, 1, tzinfo=UTC), targets=(
        TargetSnapshot("site", "http://a/", "up", "ok", 'we"ird\\opd\n', None, 7, None,
                       {"response_s": float("nan"), "status_code": 200}),))
    text = render_health(snap)
    assert 'pdn_site_up{site_id="7",opd="we\\"ird\\\\opd\\n"} 1' in text
    assert 'pdn_site_response_seconds{site_id="7",opd="we\\"ird\\\\opd\\n"} NaN' in text
    assert render_health(HealthSnapshot(taken_at=snap.taken_at)) == ""
