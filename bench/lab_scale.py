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
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pdn_ops.lab import Lab  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plain_fakepve(lab: Lab) -> tuple[str, Any]:
    """The same 2,000 VMs in an unmodified fakepve FakePve on the lab's loop: the lab layer's overhead, measured
    in the same run (so the machine's load cancels out). Returns its URL and the server (stop it on the loop)."""
    from fakepve import FakePve

    host = str(lab.base + 2)
    certfile, keyfile = lab.ca.issue("plain-fakepve", [host])
    plain = FakePve(user="root@pam", password=lab.password, host=host, port=0)
    plain.apitokens[lab.token_id] = lab.token_secret
    plain.nodes = {name: {"online": True} for name in lab.nodes}
    for vm in lab.pve.vms:
        plain.add_vm(vm.vmid, vm.name, node=vm.node, status=vm.status, config=dict(vm.config))
    lab.call(plain.start(str(certfile), str(keyfile)))
    return f"https://{host}:{plain.port}", plain


def time_resources(lab: Lab, rounds: int, api_url: str | None = None) -> dict[str, float]:
    session = requests.Session()
    # Per request: REQUESTS_CA_BUNDLE in the environment would override Session.verify.
    verify = str(lab.ca_file)
    session.headers["Authorization"] = f"PVEAPIToken={lab.token_id}={lab.token_secret}"
    url = f"{api_url or lab.api_url}/api2/json/cluster/resources"
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


def time_small_start(workdir: Path, rounds: int = 5) -> tuple[float, float]:
    """Median time of Lab.start and Lab.stop for the test fixture's shape (3 VMs with sshd guests, 2 sites)."""
    starts, stops = [], []
    for n in range(rounds):
        t0 = time.perf_counter()
        lab = Lab.start(workdir / f"small{n}", vms=3, sites=2, time_scale=0.02)
        t1 = time.perf_counter()
        lab.stop()
        starts.append(t1 - t0)
        stops.append(time.perf_counter() - t1)
    return statistics.median(starts), statistics.median(stops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-exporter", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lab-scale-") as tmp:
        if shutil.which("sshd") or Path("/usr/sbin/sshd").exists():
            small_start, small_stop = time_small_start(Path(tmp))
            print(f"Lab.start, 3 VMs with sshd guests: median {small_start * 1000:.0f} ms "
                  f"(stop {small_stop * 1000:.0f} ms)")
        start = time.perf_counter()
        with Lab.start(Path(tmp) / "lab", nodes=args.nodes, vms=args.vms, sites=0, guests=0, time_scale=0.0) as lab:
            started = time.perf_counter() - start
            print(f"lab with {args.vms} VMs on {args.nodes} nodes started in {started:.2f} s")
            figures = time_resources(lab, args.rounds)
            plain_url, plain_server = plain_fakepve(lab)
            plain = time_resources(lab, args.rounds, plain_url)
            lab.call(plain_server.stop())
            for key, value in figures.items():
                print(f"  /cluster/resources {key}: lab {value:,.1f}   plain fakepve {plain[key]:,.1f}")
            overhead = figures["all_median_ms"] / plain["all_median_ms"]
            print(f"  lab / plain fakepve, median of the full list: {overhead:.2f}")
            if not args.no_exporter:
                exp = time_exporter(lab, Path(tmp))
                for key, value in exp.items():
                    print(f"  {key}: {value:,.2f}")
                ratio = exp["exporter_default_s"] * 1000 / figures["all_median_ms"]
                print(f"  ratio: one default pve_exporter scrape = {ratio:,.0f} x one /cluster/resources call")


if __name__ == "__main__":
    main()
