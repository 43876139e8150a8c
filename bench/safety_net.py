"""Backup, storage and node collection vs prometheus-pve-exporter on the same lab, at 500 and 2,000 guests.

    .venv/bin/python -m bench.safety_net [--guests 500 2000] [--rounds 5]

Each size gets its own lab (2 nodes, no guest sshd), set up as in bench/backups.py: a vzdump job over every guest
but the last, run twice (the second time three guests' backups fail), so the node-local storages hold ~2 backups
per guest. Then, against that one lab:

- ours: the Proxmox collector with backups and node status watched (`backups: true`, `node_status: true`),
  warm session, no guest-agent calls;
- the peer: prometheus-pve-exporter with its default collectors (`/pve?cluster=1&node=1`), as a subprocess.

API requests are counted by the lab itself (its request log), so both tools are counted the same way. Wall time is
per cycle or scrape. CPU: ours is this thread's CPU (the lab serves from its own thread in this process, so its
work is not counted against us); the exporter's is its process tree from /proc.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from bench.procstat import free_port, stop, tree_cpu_seconds, wait_port
from collectors.proxmox.collector import ProxmoxCollector
from pdn_ops.core.inventory import load_inventory
from pdn_ops.lab.lab import Lab


def _shape(path: str) -> str:
    """An API path with its node and VMID replaced, to show which calls grow with the guests."""
    parts = path.split("/")
    return "/".join("{vmid}" if p.isdigit() else "{node}" if p.startswith("pve") and p[3:].isdigit() else
                    "{volume}" if ":" in p else p for p in parts)


def _count(lab: Lab) -> int:
    return len(lab.pve.requests)


def ours(lab: Lab, rounds: int) -> dict[str, Any]:
    inventory = load_inventory(lab.inventory_path)
    cluster = inventory.clusters[0].model_copy(update={"backups": True, "node_status": True})
    collector = ProxmoxCollector.from_inventory(cluster, inventory.vms, base_dir=lab.inventory_path.parent)
    collector.max_agent = 0
    try:
        first_before = _count(lab)
        first = collector.collect()
        first_calls = _count(lab) - first_before
        walls, cpus, calls = [], [], []
        shapes: Counter[str] = Counter()
        for _ in range(rounds):
            before = _count(lab)
            cpu0, t0 = time.thread_time(), time.perf_counter()
            obs = collector.collect()
            walls.append(time.perf_counter() - t0)
            cpus.append(time.thread_time() - cpu0)
            calls.append(_count(lab) - before)
            assert obs.ok, obs.detail
            assert obs.api_calls == calls[-1], (obs.api_calls, calls[-1])
            shapes = Counter(_shape(p) for _, p, _ in lab.pve.requests[before:])
    finally:
        collector.close()
    found = obs.backups or ()
    return {"first_calls": first_calls, "first_ok": first.ok, "calls": max(calls), "wall": statistics.median(walls),
            "cpu": statistics.median(cpus), "guests": len(obs.guests), "storages": len(obs.storages or ()),
            "with_backup": sum(1 for b in found if b.last_ok_at), "shapes": shapes}


def exporter(lab: Lab, tmp: Path, rounds: int) -> dict[str, Any]:
    local = Path(sys.executable).with_name("pve_exporter")
    binary = str(local) if local.exists() else shutil.which("pve_exporter")
    if not binary:
        raise SystemExit("pve_exporter not found (pip install prometheus-pve-exporter, in the test extra)")
    user, token = lab.token_id.split("!")
    config = tmp / "pve.yml"
    config.write_text(f"default:\n  user: {user}\n  token_name: {token}\n  token_value: {lab.token_secret}\n"
                      f"  verify_ssl: {lab.ca_file}\n", encoding="utf-8")
    config.chmod(0o600)
    port = free_port()
    log = tmp / "exporter.log"
    proc = subprocess.Popen([binary, "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        wait_port("127.0.0.1", port)
        target = lab.api_url.removeprefix("https://")
        url = f"http://127.0.0.1:{port}/pve?target={target}&module=default&cluster=1&node=1"
        try:
            urllib.request.urlopen(url, timeout=300).read()  # warm-up: imports, first connection
        except OSError:
            print(log.read_text()[-3000:], file=sys.stderr)
            raise
        walls, cpus, calls = [], [], []
        shapes: Counter[str] = Counter()
        guests = storages = 0
        for _ in range(rounds):
            before = _count(lab)
            cpu0, t0 = tree_cpu_seconds(proc.pid), time.perf_counter()
            with urllib.request.urlopen(url, timeout=300) as answer:
                body = answer.read().decode()
                status = answer.status
            walls.append(time.perf_counter() - t0)
            cpus.append(tree_cpu_seconds(proc.pid) - cpu0)
            calls.append(_count(lab) - before)
            shapes = Counter(_shape(p) for _, p, _ in lab.pve.requests[before:])
            assert status == 200
            lines = body.splitlines()
            guests = sum(1 for line in lines if line.startswith(("pve_up{id=\"qemu/", "pve_up{id=\"lxc/")))
            storages = sum(1 for line in lines if line.startswith("pve_up{id=\"storage/"))
        return {"calls": max(calls), "wall": statistics.median(walls), "cpu": statistics.median(cpus),
                "guests": guests, "storages": storages, "shapes": shapes}
    finally:
        stop(proc)


def measure(guests: int, rounds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="pdn-bench-safety-") as tmpdir:
        tmp = Path(tmpdir)
        with Lab.start(tmp / "lab", nodes=2, vms=guests, sites=0, guests=0) as lab:
            lab.pve.backup_secs = 0  # the bench measures the collection, not the backups
            lab.pve.max_requests = 10_000_000  # the request log is the call counter
            lab.faults.backup_job("daily", vmids="all", storage="local", exclude=str(100 + guests))
            lab.faults.run_backup_job("daily")
            for vmid in (101, 102, 103):
                lab.faults.backup_fails(vmid)
            lab.faults.run_backup_job("daily")
            mine = ours(lab, rounds)
            peer = exporter(lab, tmp, max(3, rounds // 2))
    return mine, peer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--guests", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = {guests: measure(guests, args.rounds) for guests in args.guests}
    print("| guests | tool | API requests / cycle | wall s / cycle | CPU s / cycle | guests seen | storages seen |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for guests, (mine, peer) in results.items():
        print(f"| {guests} | pdn-ops collector (backups + storage + nodes), warm | {mine['calls']} | "
              f"{mine['wall']:.3f} | {mine['cpu']:.3f} | {mine['guests']} | {mine['storages']} |")
        print(f"| {guests} | prometheus-pve-exporter scrape (default collectors) | {peer['calls']} | "
              f"{peer['wall']:.3f} | {peer['cpu']:.3f} | {peer['guests']} | {peer['storages']} |")
    for guests, (mine, peer) in results.items():
        print(f"\n{guests} guests: exporter/ours: API requests {peer['calls']}/{mine['calls']} = "
              f"{peer['calls'] / mine['calls']:.1f}x, wall {peer['wall'] / mine['wall']:.1f}x, "
              f"CPU {peer['cpu'] / max(mine['cpu'], 1e-6):.1f}x; ours first cycle {mine['first_calls']} calls, "
              f"{mine['with_backup']} guests with a backup")
        print(f"  ours: {dict(sorted(mine['shapes'].items()))}")
        print(f"  exporter: {dict(sorted(peer['shapes'].items()))}")
    sizes = sorted(results)
    if len(sizes) >= 2:
        small, big = sizes[0], sizes[-1]
        (m_s, p_s), (m_b, p_b) = results[small], results[big]
        print(f"\ncalls at {big} / at {small} guests: ours {m_b['calls']}/{m_s['calls']} = "
              f"{m_b['calls'] / m_s['calls']:.2f}, exporter {p_b['calls']}/{p_s['calls']} = "
              f"{p_b['calls'] / p_s['calls']:.2f}")


if __name__ == "__main__":
    main()
