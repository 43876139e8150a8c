"""Lab at scale: 2,000 VMs (no sshd guests), timing GET /cluster/resources, and a pve_exporter scrape for comparison.

    .venv/bin/python bench/lab_scale.py [--vms 2000] [--rounds 20] [--no-exporter]

Prints figures; the numbers of a run are kept in bench/results/lab.md. The question it answers: does the lab's
/cluster/resources stay fast enough that it never dominates a collector benchmark?
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pdn_ops.lab import Lab  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_resources(lab: Lab, rounds: int) -> dict[str, float]:
    session = requests.Session()
    # Per request: REQUESTS_CA_BUNDLE in the environment would override Session.verify.
    verify = str(lab.ca_file)
    session.headers["Authorization"] = f"PVEAPIToken={lab.token_id}={lab.token_secret}"
    url = f"{lab.api_url}/api2/json/cluster/resources"
    figures: dict[str, float] = {}
    for kind in (None, "vm"):
        samples, size = [], 0
        for _ in range(rounds):
            start = time.perf_counter()
            resp = session.get(url, params={"type": kind} if kind else None, timeout=60, verify=verify)
            samples.append(time.perf_counter() - start)
            resp.raise_for_status()
            size = len(resp.content)
            entries = len(resp.json()["data"])
        label = kind or "all"
        figures[f"{label}_median_ms"] = statistics.median(samples) * 1000
        figures[f"{label}_p95_ms"] = sorted(samples)[max(int(len(samples) * 0.95) - 1, 0)] * 1000
        figures[f"{label}_entries"] = entries
        figures[f"{label}_bytes"] = size
    session.close()
    return figures


def time_exporter(lab: Lab, workdir: Path) -> dict[str, float]:
    binary = Path(sys.executable).with_name("pve_exporter")
    if not binary.exists():
        found = shutil.which("pve_exporter")
        if not found:
            raise SystemExit("pve_exporter not found (pip install prometheus-pve-exporter)")
        binary = Path(found)
    user, token = lab.token_id.split("!")
    config = workdir / "pve.yml"
    config.write_text(f"default:\n  user: {user}\n  token_name: {token}\n  token_value: {lab.token_secret}\n"
                      f"  verify_ssl: {lab.ca_file}\n", encoding="utf-8")
    port = _free_port()
    proc = subprocess.Popen([str(binary), "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("pve_exporter did not start") from None
                time.sleep(0.05)
        target = lab.api_url.removeprefix("https://")
        out: dict[str, float] = {}
        for label, query in (("default", "cluster=1&node=1"), ("cluster_only", "cluster=1&node=0")):
            start = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/pve?target={target}&{query}", timeout=600) as r:
                body = r.read()
                status = r.status
            out[f"exporter_{label}_s"] = time.perf_counter() - start
            out[f"exporter_{label}_status"] = status
            out[f"exporter_{label}_bytes"] = len(body)
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-exporter", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lab-scale-") as tmp:
        start = time.perf_counter()
        with Lab.start(Path(tmp) / "lab", nodes=args.nodes, vms=args.vms, sites=0, guests=0, time_scale=0.0) as lab:
            started = time.perf_counter() - start
            print(f"lab with {args.vms} VMs on {args.nodes} nodes started in {started:.2f} s")
            figures = time_resources(lab, args.rounds)
            for key, value in figures.items():
                print(f"  /cluster/resources {key}: {value:,.1f}")
            if not args.no_exporter:
                exp = time_exporter(lab, Path(tmp))
                for key, value in exp.items():
                    print(f"  {key}: {value:,.2f}")
                ratio = exp["exporter_default_s"] * 1000 / figures["all_median_ms"]
                print(f"  ratio: one default pve_exporter scrape = {ratio:,.0f} x one /cluster/resources call")


if __name__ == "__main__":
    main()
