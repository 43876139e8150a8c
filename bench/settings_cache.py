"""Benchmark: what the live procedure settings (supervisor screen) cost the hot complaint list.

    .venv/bin/python bench/settings_cache.py --complaints 20000 --requests 400

In one process, on SQLite: the real app and the JSON list (``/api/v1/complaints``, an OPD admin's first page of
50, token auth) driven through Starlette's TestClient, alternating rounds with the app's live settings (5-second
cache over the ``procedure_settings`` row, a supervisor's row saved) and with fixed terms (what the app did before:
``ComplaintConfig`` built once from the environment). Prints the CPU time per request of each, and the cost of
one ``config.policy`` read both ways. The uvicorn/HTTP part is the same in both and is measured in
bench/complaints.py; this isolates the difference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from bench.complaints import seed  # noqa: E402
from pdn_ops.accounts.model import Principal, Role  # noqa: E402
from pdn_ops.app.factory import create_app  # noqa: E402
from pdn_ops.app.runtime import build_runtime  # noqa: E402
from pdn_ops.complaints import procedure_store as procedure_settings  # noqa: E402
from pdn_ops.complaints.procedure import ProcedureSettings  # noqa: E402
from pdn_ops.complaints.service import ComplaintConfig  # noqa: E402
from pdn_ops.core.db import migrate  # noqa: E402
from pdn_ops.core.db.engine import transaction  # noqa: E402
from pdn_ops.core.settings import load_settings  # noqa: E402


def per_call_ns(fn, n: int = 200_000) -> float:
    t0 = time.process_time_ns()
    for _ in range(n):
        fn()
    return (time.process_time_ns() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--complaints", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=400, help="per configuration, in rounds of 50")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.sqlite3"
        migrate.upgrade(url)
        tokens = seed(url, args.complaints)
        app = create_app(build_runtime(load_settings(demo=True, database_url=url, data_dir=Path(folder))))
        ctx = app.state.runtime
        live_config: ComplaintConfig = ctx.complaints.config
        live = ctx.complaints.terms
        with transaction(ctx.sessions) as session:
            boss = Principal(user_id=0, username="bench-supervisor", role=Role.SUPERVISOR, opd_id=None)
            procedure_settings.save(session, boss, ProcedureSettings(sla_days=7), defaults=live.defaults,
                                    timezone=live.timezone)
        live.invalidate()
        fixed_config = ComplaintConfig(data_dir=Path(folder), listeners=live_config.listeners)
        print(f"config.policy, fixed terms: {per_call_ns(lambda: fixed_config.policy):.0f} ns a read")
        print(f"config.policy, live (cache hit): {per_call_ns(lambda: live_config.policy):.0f} ns a read")
        client = TestClient(app)
        headers = {"Authorization": f"Bearer {tokens['admin']}"}
        cpu: dict[str, list[float]] = {"live": [], "fixed": []}
        for _ in range(2):  # warm-up of both
            for config in (live_config, fixed_config):
                ctx.complaints.config = config
                assert client.get("/api/v1/complaints", headers=headers).status_code == 200
        rounds = max(1, args.requests // 50)
        for _ in range(rounds):
            for name, config in (("live", live_config), ("fixed", fixed_config)):
                ctx.complaints.config = config
                t0 = time.process_time()
                for _ in range(50):
                    response = client.get("/api/v1/complaints", headers=headers)
                    assert response.status_code == 200 and len(response.json()["items"]) == 50
                cpu[name].append((time.process_time() - t0) / 50 * 1000)
        ctx.complaints.config = live_config
        for name, values in cpu.items():
            print(f"JSON list, {name} settings: {statistics.median(values):.2f} ms CPU a request "
                  f"(median of {len(values)} rounds of 50; min {min(values):.2f}, max {max(values):.2f})")
        ctx.engine.dispose()


if __name__ == "__main__":
    main()
