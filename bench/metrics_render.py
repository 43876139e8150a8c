"""Benchmark: /metrics with 2,000 sites and 2,000 VMs must render in at most 100 ms.

Builds a database with a generated inventory (40 OPDs, 2,000 VMs, 2,000 sites, 500 SSH guests), records one round
of observations through the real services (which is timed too), then measures, cold (snapshot re-read each time):

- the snapshot query alone,
- rendering alone, by pdn_ops.health.metrics and by prometheus_client's generic formatter over the same series
  (the peer),
- a whole GET /metrics through the ASGI app, as served (snapshot in memory), and with the snapshot re-read first
  (what a job pays after writing, or the first scrape of a process).

Usage: .venv/bin/python -m bench.metrics_render [--postgres ADMIN_URL] [--rounds 20]
(--postgres creates a throwaway database on that server and drops it afterwards; default: SQLite in a temp dir)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import create_engine, text

from pdn_ops.app.factory import create_app
from pdn_ops.app.runtime import build_runtime
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.inventory import Inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.core.settings import load_settings
from pdn_ops.health import queries as health_queries
from pdn_ops.health import service as health
from pdn_ops.health.metrics import FAMILIES, render_health
from pdn_ops.health.model import Thresholds
from pdn_ops.health.observations import (
    ClusterObservation,
    GuestObservation,
    Mount,
    NodeObservation,
    SiteCheck,
    SshObservation,
)
from pdn_ops.health.queries import HealthSnapshot

N_VMS = N_SITES = 2000
N_OPDS, N_SSH = 40, 500
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDn2zQmJq6uH3e8l0lq2wD5bGmY3z0nqzv1Fh2mJc8Yp"


def inventory() -> Inventory:
    return Inventory.model_validate({
        "clusters": [{"name": "pdn1", "api_url": "https://127.0.0.1:8006", "token_id": "pdn-ops@pve!collector",
                      "token_secret": "env:PVE_TOKEN", "tls": {"fingerprint": ":".join(["AA"] * 32)}}],
        "opds": [{"code": f"opd{i:02d}", "name": f"OPD number {i}"} for i in range(N_OPDS)],
        "vms": [{"cluster": "pdn1", "vmid": 100 + i, "name": f"vm-{i}", "opd": f"opd{i % N_OPDS:02d}",
                 "services": ["nginx.service"],
                 **({"ssh": {"host": f"127.1.{i // 250}.{i % 250 + 1}", "user": "pdnops", "key": "file:k",
                             "host_key": KEY}} if i < N_SSH else {})} for i in range(N_VMS)],
        "sites": [{"url": f"{'https' if i % 2 else 'http'}://127.2.{i // 250}.{i % 250 + 1}/", "opd":
                   f"opd{i % N_OPDS:02d}", "vm": f"pdn1/{100 + i}"} for i in range(N_SITES)],
    })


def observations(now: datetime) -> tuple[ClusterObservation, list[SiteCheck], list[SshObservation]]:
    guests = tuple(GuestObservation(cluster="pdn1", vmid=100 + i, node=f"pve{i % 4}", name=f"vm-{i}", type="qemu",
                                    status="stopped" if i % 97 == 0 else "running", cpu=0.031 * (i % 30),
                                    maxcpu=2, mem=(i % 16) * 2**27, maxmem=2**31, disk=0, maxdisk=32 * 2**30,
                                    uptime=86400) for i in range(N_VMS))
    cluster = ClusterObservation(cluster="pdn1", at=now, ok=True, quorate=True, guests=guests, api_calls=2,
                                 nodes=tuple(NodeObservation("pdn1", f"pve{n}", True) for n in range(4)))
    expiry = now + timedelta(days=60)
    checks = [SiteCheck(url=f"{'https' if i % 2 else 'http'}://127.2.{i // 250}.{i % 250 + 1}/", at=now,
                        ok=i % 53 != 0, status_code=200, total_s=0.004 + (i % 50) / 1000,
                        tls_expires_at=expiry if i % 2 else None, tls_days_left=60.0 if i % 2 else None)
              for i in range(N_SITES)]
    ssh = [SshObservation(cluster="pdn1", vmid=100 + i, at=now, ok=True,
                          mounts=(Mount("/", 10 * 2**30, (i % 10) * 2**30, (10 - i % 10) * 2**30),
                                  Mount("/var", 20 * 2**30, 2**30, 19 * 2**30)),
                          mem_total_bytes=2**31, mem_available_bytes=2**30, load1=0.5,
                          services={"nginx.service": "active"}) for i in range(N_SSH)]
    return cluster, checks, ssh


class GenericCollector(Collector):
    """The peer: the same series through prometheus_client's metric families and generic formatter."""

    def __init__(self, snapshot: Callable[[], HealthSnapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        # Parse our own exposition back into families: the same series, labels and values.
        families = {f.name: GaugeMetricFamily(f.name, f.help, labels=list(f.labels)) for f in FAMILIES}
        for line in render_health(self._snapshot()).splitlines():
            if line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            name, _, labels = head.partition("{")
            pairs = [p.split("=", 1) for p in labels.rstrip("}").split('",') if p]
            families[name].add_metric([v.strip('"') for _, v in pairs], float(value))
        yield from families.values()


def timed(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default="", help="admin URL, e.g. postgresql+psycopg://postgres@127.0.0.1/test")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    url = f"sqlite:///{Path(tmp.name) / 'bench.sqlite3'}"
    admin = None
    if args.postgres:
        admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        name = f"pdnops_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
    try:
        run(url, args.rounds)
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        tmp.cleanup()


def run(url: str, rounds: int) -> None:
    migrate.upgrade(url)
    app = create_app(build_runtime(load_settings(demo=True, database_url=url, run_scheduler=False)))
    sessions = app.state.runtime.sessions
    now = datetime.now(UTC)
    cluster, checks, ssh = observations(now)
    th = Thresholds()
    with transaction(sessions) as session:
        sync_inventory(session, inventory(), now=now)
    record = {}
    later = [SiteCheck(url=c.url, at=c.at + timedelta(minutes=1), ok=c.ok, status_code=c.status_code,
                       total_s=c.total_s, tls_expires_at=c.tls_expires_at, tls_days_left=c.tls_days_left)
             for c in checks]
    for name, call in (("proxmox (2,000 guests), first", lambda s: health.record_cluster(s, cluster, thresholds=th)),
                       ("sites (2,000 checks), first", lambda s: health.record_site_checks(s, checks, thresholds=th)),
                       ("sites (2,000 checks), next cycle",
                        lambda s: health.record_site_checks(s, later, thresholds=th)),
                       ("ssh (500 guests), first", lambda s: health.record_ssh(s, ssh, thresholds=th))):
        t0 = time.perf_counter()
        with transaction(sessions) as session:
            call(session)
        record[name] = time.perf_counter() - t0

    def load() -> HealthSnapshot:
        return health_queries.load_snapshot(sessions)

    snap = load()
    body = render_health(snap)
    peer_registry = CollectorRegistry(auto_describe=False)
    peer_registry.register(GenericCollector(lambda: snap))
    peer_body = generate_latest(peer_registry).decode()
    series = sum(1 for line in body.splitlines() if not line.startswith("#"))
    assert series == sum(1 for line in peer_body.splitlines() if not line.startswith("#"))

    q_med, q_p95 = timed(load, rounds)
    r_med, r_p95 = timed(lambda: render_health(snap), rounds)
    p_med, p_p95 = timed(lambda: generate_latest(peer_registry), max(3, rounds // 4))
    # /metrics serves loopback clients when no metrics token is set: the client is a local Prometheus.
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        assert client.get("/metrics").status_code == 200
        cache = app.state.runtime.health.snapshot

        def scrape() -> None:
            response = client.get("/metrics")
            assert response.status_code == 200

        def cold_scrape() -> None:
            cache.refresh()  # snapshot query + render: what a job pays after writing, or a process's first scrape
            scrape()

        cycle = [1]

        def site_job() -> list[health.Target]:
            # a sites job's transaction: 2,000 checks recorded, the targets it wrote handed to the cache
            cycle[0] += 1
            at = timedelta(minutes=cycle[0])
            with transaction(sessions) as session:
                health.record_site_checks(session, [SiteCheck(
                    url=c.url, at=c.at + at, ok=c.ok, status_code=c.status_code, total_s=c.total_s,
                    tls_expires_at=c.tls_expires_at, tls_days_left=c.tls_days_left) for c in checks], thresholds=th)
                return health.written_targets(session)

        def after_site_job() -> float:
            written = site_job()
            t0 = time.perf_counter()
            cache.written(written)
            cache.after_job()
            return (time.perf_counter() - t0) * 1000

        e_med, e_p95 = timed(scrape, rounds)
        c_med, c_p95 = timed(cold_scrape, rounds)
        site_updates = sorted(after_site_job() for _ in range(max(3, rounds // 4)))
        i_med, i_p95 = statistics.median(site_updates), site_updates[-1]
        n_med, n_p95 = timed(cache.after_job, rounds)  # a job that wrote no health data
        size = len(client.get("/metrics").content)
    engine = url.split(":", 1)[0]
    print(f"database: {engine}; targets: {len(snap.targets)}; series: {series}; body: {size / 1024:.0f} KiB")
    for name, seconds in record.items():
        print(f"record + evaluate {name}: {seconds * 1000:.0f} ms")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"snapshot query:                       median {q_med:6.1f} ms  p95 {q_p95:6.1f} ms")
    print(f"render (pdn_ops.health.metrics):              median {r_med:6.1f} ms  p95 {r_p95:6.1f} ms")
    print(f"render (prometheus_client generic):    median {p_med:6.1f} ms  p95 {p_p95:6.1f} ms  (peer)")
    print(f"ratio generic / ours:                  {p_med / r_med:.1f}x")
    print(f"GET /metrics (ASGI, snapshot in memory): median {e_med:6.1f} ms  p95 {e_p95:6.1f} ms  (budget 100 ms)")
    print(f"refresh (query+render) + GET /metrics:   median {c_med:6.1f} ms  p95 {c_p95:6.1f} ms")
    print(f"after a 2,000-site job (incremental):    median {i_med:6.1f} ms  max {i_p95:6.1f} ms")
    print(f"after a job with no health data:         median {n_med:6.1f} ms  p95 {n_p95:6.1f} ms")
    print("PASS" if e_med <= 100 else "FAIL: over the 100 ms budget")
    app.state.runtime.engine.dispose()


if __name__ == "__main__":
    main()
