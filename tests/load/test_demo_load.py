"""The SQLite load run drives `pdn-ops demo` as `make run` starts it (bench/load_mixed.py): here the lean version,
the demo without its lab (the scheduler and the workers still run in the same process) under a few users, and
every acknowledged complaint stored once with its photo."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench import load_mixed, serverproc
from tests.load.conftest import no_traceback


def test_the_demo_takes_the_mixed_load_and_stores_every_filing_once(tmp_path: Path) -> None:
    url, data_dir = f"sqlite:///{tmp_path / 'demo.sqlite3'}", tmp_path / "data"
    server = serverproc.start(url, data_dir, command=("demo", "--no-lab"), start_timeout=120,
                              extra_env={"PDN_OPS_RUN_SCHEDULER": "1", "PDN_OPS_NOTIFY_WORKER": "1"})
    try:
        # The demo migrated its database and synced its inventory before it answered; the accounts come now.
        world = serverproc.prepare(url, data_dir, admins_per_opd=2, engineers=1, sync=False)
        assert world.admins and world.engineers
        stats = asyncio.run(load_mixed.drive(server.url, world, users=6, seconds=3, limit=15, ramp=0.3))
    finally:
        stopped_in = server.stop()
    assert stats.failures == [], stats.failures[:5]
    assert stats.healthz_failures == 0
    assert stats.acknowledged, "some filings were acknowledged"
    found = load_mixed.audit(url, data_dir, stats.acknowledged)
    assert found.clean, found
    assert stopped_in < 10
    assert "pdn-ops demo" in server.log()
    no_traceback(server.log())
