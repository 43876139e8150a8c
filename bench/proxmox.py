"""Proxmox collector vs prometheus-pve-exporter on the same 2,000-guest fakepve, in the same run.

    .venv/bin/python -m bench.proxmox [--guests 2000] [--rounds 5]

Both read the same fake (its own process, TLS, API token). Reported per tool: API requests per cycle (counted
by the fake), wall time per cycle, CPU seconds per cycle (ours: this process; the exporter: its process tree).
Ours is measured warm (the collector keeps its HTTPS session between cycles, as in service) and cold (a new
client, so a new TLS handshake, per cycle, as the exporter does per scrape).
"""

from __future__ import annotations

import argparse
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from fakepve.certs import make_cert

from bench.procstat import free_port, stop, tree_cpu_seconds, wait_port
from collectors.proxmox.client import ProxmoxClient
from collectors.proxmox.collector import ProxmoxCollector
from pdn_ops.core.inventory import Cluster, Tls

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.40.1"


class Fake:
    def __init__(self, tmp: Path, guests: int) -> None:
        self.cert, self.key, _ = make_cert(str(tmp), hosts=(HOST,))
        self.token = secrets.token_hex(16)
        self.token_file = tmp / "token"
        self.token_file.write_text(self.token)
        self.count_file = tmp / "count"
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "pve_server.py"), "--guests", str(guests), "--host", HOST,
             "--cert", self.cert, "--key", self.key, "--token-file", str(self.token_file),
             "--count-file", str(self.count_file)],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError("fakepve did not start")
        self.url = line[1]
        self.port = int(self.url.rsplit(":", 1)[1])

    def requests(self) -> int:
        self.count_file.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.count_file.exists() and self.count_file.read_text().endswith("\n"):
                return int(self.count_file.read_text())
            time.sleep(0.01)
        raise RuntimeError("no request count from the fake")


def ours(fake: Fake, rounds: int, warm: bool) -> dict[str, float]:
    cluster = Cluster(name="bench", api_url=fake.url, token_id="bench@pve!collector",
                      token_secret=f"file:{fake.token_file}", tls=Tls(ca_file=fake.cert), timeout=30)
    collector = ProxmoxCollector(ProxmoxClient.for_cluster(cluster))
    collector.collect()  # the first cycle has nothing to compare with; measure steady cycles
    walls, cpus, calls, guests = [], [], [], 0
    for _ in range(rounds):
        if not warm:
            collector.client.close()
            collector.client = ProxmoxClient.for_cluster(cluster)
        before = fake.requests()
        cpu0, t0 = time.process_time(), time.perf_counter()
        obs = collector.collect()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - cpu0)
        calls.append(fake.requests() - before)
        assert obs.ok, obs.detail
        assert obs.api_calls == calls[-1]
        guests = len(obs.guests)
    collector.close()
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "calls": max(calls), "guests": guests}


def exporter(fake: Fake, tmp: Path, rounds: int) -> dict[str, float]:
    config = tmp / "pve.yml"
    # verify_ssl false is the peer tool's own setting for this benchmark only; our collector verifies.
    config.write_text(f"default:\n  user: bench@pve\n  token_name: collector\n  token_value: {fake.token}\n"
                      "  verify_ssl: false\n")
    port = free_port()
    binary = str(Path(sys.executable).with_name("pve_exporter"))
    # --no-collector.replication: plain fakepve answers replication jobs without "type", which the exporter needs
    proc = subprocess.Popen([binary, "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}",
                             "--no-collector.replication"],
                            stdout=subprocess.DEVNULL, stderr=(tmp / "exporter.log").open("wb"))
    try:
        wait_port("127.0.0.1", port)
        url = f"http://127.0.0.1:{port}/pve?target={HOST}:{fake.port}&module=default&cluster=1&node=1"
        try:
            urllib.request.urlopen(url, timeout=120).read()  # warm-up: imports, first connection
        except OSError:
            print((tmp / "exporter.log").read_text()[-3000:], file=sys.stderr)
            raise
        walls, cpus, calls, series = [], [], [], 0
        for _ in range(rounds):
            before = fake.requests()
            cpu0, t0 = tree_cpu_seconds(proc.pid), time.perf_counter()
            with urllib.request.urlopen(url, timeout=120) as answer:
                body = answer.read().decode()
                status = answer.status
            walls.append(time.perf_counter() - t0)
            cpus.append(tree_cpu_seconds(proc.pid) - cpu0)
            calls.append(fake.requests() - before)
            assert status == 200
            series = sum(1 for line in body.splitlines() if line.startswith(("pve_up{id=\"qemu/", "pve_up{id=\"lxc/")))
        return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "calls": max(calls),
                "guests": series}
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--guests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pdn-bench-pve-") as tmpdir:
        tmp = Path(tmpdir)
        fake = Fake(tmp, args.guests)
        try:
            warm = ours(fake, args.rounds, warm=True)
            cold = ours(fake, args.rounds, warm=False)
            peer = exporter(fake, tmp, max(3, args.rounds // 2))
        finally:
            stop(fake.proc)
    print(f"Proxmox: {args.guests} guests on one fakepve (own process), median of {args.rounds} cycles")
    print("| tool | API requests / cycle | wall s / cycle | CPU s / cycle | guests seen |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in (("pdn-ops collector, warm session", warm), ("pdn-ops collector, new session per cycle", cold),
                    ("prometheus-pve-exporter 3.10 scrape", peer)):
        print(f"| {name} | {r['calls']:.0f} | {r['wall']:.3f} | {r['cpu']:.3f} | {r['guests']:.0f} |")
    print(f"speed-up (exporter wall / ours): warm {peer['wall'] / warm['wall']:.1f}x, "
          f"cold {peer['wall'] / cold['wall']:.1f}x; API requests {peer['calls']:.0f} vs {warm['calls']:.0f}")


if __name__ == "__main__":
    main()
