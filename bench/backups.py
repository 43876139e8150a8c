"""Backup, storage and node-pressure collection: API calls and time per cycle at a few and at 2,000 guests.

    .venv/bin/python -m bench.backups [--guests 20 2000] [--rounds 5]

Each size gets its own lab (2 nodes, no guest sshd): a vzdump job over every guest, run once, then again with
three guests' backups failing. The Proxmox collector watches backups and node status; reported per size: API
calls on the first cycle (which reads the failed task's log once) and on warm cycles, the median warm cycle time,
and what the cycle found (guests with a backup, failed, unprotected).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from collectors.proxmox.collector import ProxmoxCollector
from pdn_ops.core.inventory import load_inventory
from pdn_ops.lab.lab import Lab


def measure(guests: int, rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, Lab.start(Path(tmp) / "lab", nodes=2, vms=guests, sites=0,
                                                         guests=0) as lab:
        lab.pve.backup_secs = 0  # the bench measures the collection, not the backups
        lab.faults.backup_job("daily", vmids="all", storage="local", exclude=str(100 + guests))
        lab.faults.run_backup_job("daily")
        for vmid in (101, 102, 103):
            lab.faults.backup_fails(vmid)
        lab.faults.run_backup_job("daily")
        inventory = load_inventory(lab.inventory_path)
        cluster = inventory.clusters[0].model_copy(update={"backups": True, "node_status": True})
        collector = ProxmoxCollector.from_inventory(cluster, inventory.vms, base_dir=lab.inventory_path.parent)
        collector.max_agent = 0
        try:
            first = collector.collect()
            times, calls = [], []
            for _ in range(rounds):
                started = time.perf_counter()
                obs = collector.collect()
                times.append(time.perf_counter() - started)
                calls.append(obs.api_calls)
        finally:
            collector.close()
        found = obs.backups or ()
        return {"guests": guests, "first_calls": first.api_calls, "warm_calls": sorted(set(calls)),
                "warm_ms": round(statistics.median(times) * 1000, 1),
                "with_backup": sum(1 for b in found if b.last_ok_at), "failed": sum(
                    1 for b in found if b.last_failed_at and (not b.last_ok_at or b.last_failed_at >= b.last_ok_at)),
                "unprotected": sum(1 for b in found if not b.jobs)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--guests", type=int, nargs="+", default=[20, 2000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("| guests | calls, first cycle | calls, warm cycles | warm cycle (median) | with a backup | failed | "
          "unprotected |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for guests in args.guests:
        r = measure(guests, args.rounds)
        print(f"| {r['guests']} | {r['first_calls']} | {r['warm_calls']} | {r['warm_ms']} ms | {r['with_backup']} | "
              f"{r['failed']} | {r['unprotected']} |")


if __name__ == "__main__":
    main()
