"""The SSH collector at size: 500+ real OpenSSH sshd guests, pdn-ops' collector against OpenSSH's own client.

    .venv/bin/python -m bench.ssh_scale [--guests 500] [--rounds 3] [--concurrency 16]
                                        [--modes paramiko,asyncssh,openssh]

Each guest is its own ``/usr/sbin/sshd -D`` (started by Popen, stopped by PID) on its own loopback address
(127.88.x.y:2222) with its own ed25519 host key, pinned by the clients; one client key. The command is the
collector's own batch (``collectors.ssh.collector.build_batch``: df, free, /proc/loadavg, /proc/uptime,
systemctl), run by the host's real commands. In the same run, over the same guests, each mode checks every guest
``--rounds`` times at the product's concurrency (16):

- ``paramiko, new connection``: the collector as it was (a connection per check: TCP, key exchange, public-key
  authentication, one exec);
- ``paramiko, kept open (4 uses)``: the collector as the product now runs it (``KeptConnections``: connections kept
  between checks, keepalive, bounded, re-made every 4 checks), measured over 4 rounds, the first connecting: the
  average cost of a check, reconnections included;
- ``paramiko, kept open, warm``: checks on open connections only, and the idle cost of holding them open;
- ``asyncssh``: if installed (it is not a pdn-ops dependency), the same checks on asyncssh's event loop, a new
  connection per check and kept open;
- ``ssh + ControlMaster``: OpenSSH's ``ssh`` with a master connection per guest (``-M``, in the foreground), each
  check a ``ssh -S socket host BATCH`` client process multiplexed over it;
- ``ssh, new connection``: OpenSSH's ``ssh`` with no multiplexing, for reference.

Reported per mode: wall time per round, the client's CPU per guest check (pdn-ops: this process's CPU; OpenSSH:
the ``ssh`` processes' CPU, masters included, plus this process's CPU spawning them), guests per second per core
(1 / CPU per check), the guests' sshd CPU per check, and for kept-open modes the idle CPU per second of holding the
connections open. Host keys stay pinned in every mode (RejectPolicy; ``StrictHostKeyChecking=yes`` with a
known_hosts file of the pins).
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from collectors.ssh.client import KeptConnections, SshClient
from collectors.ssh.collector import SshCollector, build_batch
from pdn_ops.health.collection import SSH_KEPT_MAX_AGE_S, SSH_KEPT_USES

SSHD = "/usr/sbin/sshd"
PORT = 2222
SERVICES = ("cron.service",)
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Guest:
    host: str
    host_key: str  # "ssh-ed25519 AAAA..."
    proc: subprocess.Popen[bytes]


def _address(i: int) -> str:
    return f"127.88.{i // 250}.{i % 250 + 1}"


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def start_guests(directory: Path, count: int) -> tuple[list[Guest], Path]:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    client_key = directory / "client_ed25519"
    client_pub = _keygen(client_key)
    (directory / "authorized_keys").write_text(client_pub + "\n")
    # No systemd here: the host's systemctl fails after ~0.2 s of trying to reach it. The guests get a stand-in
    # that answers like a healthy guest, so the guests' own cost (which a real guest pays on its own CPU) does not
    # starve the clients measured on the same two cores.
    fakebin = directory / "bin"
    fakebin.mkdir()
    (directory / "home").mkdir()
    (fakebin / "systemctl").write_text('#!/bin/sh\n[ "$1" = is-active ] && echo active\nexit 0\n')
    (fakebin / "systemctl").chmod(0o755)
    guests: list[Guest] = []
    try:
        for i in range(count):
            host = _address(i)
            key_path = directory / f"host_{i}"
            pin = _keygen(key_path)
            config = directory / f"sshd_{i}.conf"
            config.write_text(
                f"ListenAddress {host}:{PORT}\nHostKey {key_path}\nPidFile {directory}/sshd_{i}.pid\n"
                f"AuthorizedKeysFile {directory}/authorized_keys\nStrictModes no\nUsePAM no\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
                "MaxStartups 100:30:200\nMaxSessions 20\nLogLevel ERROR\nPrintMotd no\n"
                # bash sources $HOME/.bashrc for SSH commands: this box's root runs `pyenv init` there (~0.2 s of
                # CPU per check). A guest's login shell setup is the guest's business: an empty home here.
                f"SetEnv PATH={fakebin}:/usr/bin:/bin HOME={directory}/home\n")
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            guests.append(Guest(host, pin, proc))
        deadline = time.monotonic() + 120
        for guest in guests:
            while not _listening(guest.host, PORT):
                if guest.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sshd on {guest.host} did not start")
                time.sleep(0.02)
    except BaseException:
        stop_guests(guests)
        raise
    return guests, client_key


def stop_guests(guests: list[Guest]) -> None:
    for guest in guests:
        if guest.proc.poll() is None:
            guest.proc.terminate()
    for guest in guests:
        try:
            guest.proc.wait(10)
        except subprocess.TimeoutExpired:
            guest.proc.kill()
            guest.proc.wait()


def trees_cpu(pids: list[int]) -> float:
    """CPU of these processes and all their descendants, live and reaped, in one pass over /proc."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        stats[int(entry.name)] = (int(fields[1]), sum(int(v) for v in fields[11:15]) / TICK)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total = 0.0
    stack = list(pids)
    while stack:
        pid = stack.pop()
        if pid in stats:
            total += stats[pid][1]
            stack.extend(children.get(pid, ()))
    return total


def sshd_cpu(guests: list[Guest]) -> float:
    """CPU of every guest's sshd and its children (connections, sessions, commands), reaped ones included."""
    return trees_cpu([g.proc.pid for g in guests])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Figures:
    mode: str
    checks: int
    ok: int
    wall_s: list[float]
    client_cpu_s: float
    server_cpu_s: float
    idle_cpu_per_s: float | None = None

    def line(self, guests: int) -> str:
        per_check_ms = 1000 * self.client_cpu_s / self.checks
        per_core = self.checks / self.client_cpu_s if self.client_cpu_s else float("inf")
        walls = ", ".join(f"{w:.2f}" for w in self.wall_s)
        idle = (f" | idle {1000 * self.idle_cpu_per_s:.1f} CPU-ms/s for {guests} open connections"
                if self.idle_cpu_per_s is not None else "")
        return (f"  {self.mode:<32} {self.ok}/{self.checks} ok | round wall s: {walls} | client "
                f"{per_check_ms:.2f} CPU-ms/check = {per_core:,.0f} guests/s per core | guests' sshd "
                f"{1000 * self.server_cpu_s / self.checks:.2f} CPU-ms/check{idle}")


def _measure(mode: str, guests: list[Guest], rounds: int, check: Callable[[int], bool], concurrency: int, *,
             skip_first: bool, external: Callable[[], float] = lambda: 0.0) -> Figures:
    """``rounds`` rounds over every guest; with ``skip_first`` the first round (connecting) is not counted."""
    walls: list[float] = []
    ok = checks = 0
    client = server = 0.0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for index in range(rounds + (1 if skip_first else 0)):
            # Reading /proc is the bench's own work: done outside the client's CPU window.
            srv0, ext0 = sshd_cpu(guests), external()
            cpu0, t0 = time.process_time(), time.monotonic()
            results = list(pool.map(check, range(len(guests))))
            wall = time.monotonic() - t0
            cpu1 = time.process_time()
            ext1, srv1 = external(), sshd_cpu(guests)
            if skip_first and index == 0:
                continue
            walls.append(wall)
            checks += len(results)
            ok += sum(results)
            client += (cpu1 - cpu0) + (ext1 - ext0)
            server += srv1 - srv0
    return Figures(mode, checks, ok, walls, client, server)


def _idle(seconds: float, external: Callable[[], float] = lambda: 0.0) -> float:
    ext0 = external()
    cpu0 = time.process_time()
    time.sleep(seconds)
    cpu1 = time.process_time()
    return ((cpu1 - cpu0) + (external() - ext0)) / seconds


def paramiko_modes(guests: list[Guest], client_key: Path, rounds: int, concurrency: int,
                   idle_s: float) -> list[Figures]:
    def collectors(kept: KeptConnections | None) -> list[SshCollector]:
        return [SshCollector(SshClient(host=g.host, port=PORT, user="root", key_file=client_key, host_key=g.host_key,
                                       timeout=10), cluster="bench", vmid=i, services=SERVICES, kept=kept)
                for i, g in enumerate(guests)]

    fresh = collectors(None)
    figures = [_measure("paramiko, new connection", guests, rounds, lambda i: fresh[i].collect().ok, concurrency,
                        skip_first=False)]
    # As the product keeps them: re-made every SSH_KEPT_USES checks; measured over that many rounds, the first of
    # which connects, so the figure is the average cost of a check, reconnections included.
    kept = KeptConnections(limit=len(guests), max_age=SSH_KEPT_MAX_AGE_S, max_uses=SSH_KEPT_USES)
    held = collectors(kept)
    try:
        figures.append(_measure(f"paramiko, kept open ({SSH_KEPT_USES} uses)", guests, SSH_KEPT_USES,
                                lambda i: held[i].collect().ok, concurrency, skip_first=False))
    finally:
        kept.close_all()
    # Warm: only checks on open connections (the first, connecting round not counted), and the cost of holding them.
    warm = KeptConnections(limit=len(guests), max_age=3600, max_uses=1_000_000)
    held = collectors(warm)
    try:
        warm_figures = _measure("paramiko, kept open, warm", guests, rounds, lambda i: held[i].collect().ok,
                                concurrency, skip_first=True)
        warm_figures.idle_cpu_per_s = _idle(idle_s)
        figures.append(warm_figures)
    finally:
        warm.close_all()
    return figures


def asyncssh_modes(guests: list[Guest], client_key: Path, rounds: int, concurrency: int,
                   idle_s: float) -> list[Figures]:
    """asyncssh (if installed; not a pdn-ops dependency): one event loop in a thread of this process, the same
    batch, the same pins and concurrency; a new connection per check, and connections kept open."""
    import asyncio

    try:
        import asyncssh
    except ImportError:
        print("  (asyncssh not installed: pip install asyncssh to measure it)")
        return []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    key = asyncssh.read_private_key(str(client_key))
    pins = [asyncssh.import_public_key(g.host_key) for g in guests]
    marker = f"@@pdn-ops:{secrets.token_hex(4)}@@"
    batch = build_batch(SERVICES, marker)
    gate = asyncio.Semaphore(concurrency)
    conns: dict[int, asyncssh.SSHClientConnection] = {}

    async def connect(i: int) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(guests[i].host, PORT, username="root", client_keys=[key],
                                      known_hosts=([pins[i]], [], []), keepalive_interval=15, connect_timeout=10,
                                      agent_path=None, config=[])

    async def check(i: int, keep: bool) -> bool:
        async with gate:
            conn = conns.get(i) if keep else None
            if conn is None:
                conn = await connect(i)
                if keep:
                    conns[i] = conn
            try:
                result = await asyncio.wait_for(conn.run(batch, check=False), 10)
            finally:
                if not keep:
                    conn.close()
            return marker + " failed" in str(result.stdout)

    def sync(i: int, keep: bool) -> bool:
        return asyncio.run_coroutine_threadsafe(check(i, keep), loop).result(30)

    try:
        # The pool's threads only wait on the loop: the loop does the work, all of it in this process.
        figures = [_measure("asyncssh, new connection", guests, rounds, lambda i: sync(i, False), concurrency,
                            skip_first=False)]
        warm = _measure("asyncssh, kept open, warm", guests, rounds, lambda i: sync(i, True), concurrency,
                        skip_first=True)
        warm.idle_cpu_per_s = _idle(idle_s)
        figures.append(warm)
        return figures
    finally:
        async def close_all() -> None:
            for conn in conns.values():
                conn.close()
            await asyncio.gather(*(c.wait_closed() for c in conns.values()), return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close_all(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _ssh_argv(directory: Path, client_key: Path, known_hosts: Path) -> list[str]:
    return ["ssh", "-F", "/dev/null", "-p", str(PORT), "-i", str(client_key), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
            "-o", "ServerAliveInterval=15",
            # paramiko negotiates curve25519-sha256; OpenSSH 9's default (sntrup761x25519, post-quantum) costs the
            # client far more CPU per connection, which would flatter paramiko.
            "-o", "KexAlgorithms=curve25519-sha256"]


def openssh_modes(guests: list[Guest], directory: Path, client_key: Path, rounds: int, concurrency: int,
                  idle_s: float) -> list[Figures]:
    known_hosts = directory / "known_hosts"
    known_hosts.write_text("".join(f"[{g.host}]:{PORT} {g.host_key}\n" for g in guests))
    base = _ssh_argv(directory, client_key, known_hosts)
    marker = f"@@pdn-ops:{secrets.token_hex(4)}@@"
    batch = build_batch(SERVICES, marker)

    def fresh(i: int) -> bool:
        done = subprocess.run([*base, "-o", "ControlMaster=no", "-o", "ControlPath=none",
                               f"root@{guests[i].host}", batch], capture_output=True, timeout=30)
        return done.returncode == 0 and marker.encode() + b" failed" in done.stdout

    figures = [_measure("ssh, new connection", guests, rounds, fresh, concurrency, skip_first=False,
                        external=_children_cpu)]
    sockets = [directory / f"cm_{i}" for i in range(len(guests))]
    masters: list[subprocess.Popen[bytes]] = []
    lock = threading.Lock()

    def masters_cpu() -> float:
        with lock:
            return trees_cpu([m.pid for m in masters]) + _children_cpu()

    try:
        t0 = time.monotonic()
        for i, guest in enumerate(guests):
            # A master in the foreground (no ControlPersist, which forks it away from its Popen): its PID is the
            # one measured and stopped.
            masters.append(subprocess.Popen([*base, "-M", "-N", "-o", f"ControlPath={sockets[i]}",
                                             f"root@{guest.host}"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 120
        for path in sockets:
            while not path.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ControlMaster {path} did not come up")
                time.sleep(0.02)
        print(f"  ({len(masters)} ControlMaster connections up in {time.monotonic() - t0:.1f} s)")

        def muxed(i: int) -> bool:
            done = subprocess.run([*base, "-o", "ControlMaster=no", "-o", f"ControlPath={sockets[i]}",
                                   f"root@{guests[i].host}", batch], capture_output=True, timeout=30)
            return done.returncode == 0 and marker.encode() + b" failed" in done.stdout

        mux = _measure("ssh + ControlMaster", guests, rounds, muxed, concurrency, skip_first=False,
                       external=masters_cpu)
        mux.idle_cpu_per_s = _idle(idle_s, masters_cpu)
        figures.append(mux)
    finally:
        for master in masters:
            master.terminate()
        for master in masters:
            try:
                master.wait(10)
            except subprocess.TimeoutExpired:
                master.kill()
                master.wait()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--guests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16, help="the product's SSH_CONCURRENCY")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds to measure holding connections open")
    parser.add_argument("--modes", default="paramiko,asyncssh,openssh")
    args = parser.parse_args()
    if not Path(SSHD).exists() or shutil.which("ssh") is None:
        raise SystemExit("needs OpenSSH's sshd and ssh (Debian packages openssh-server, openssh-client)")
    with tempfile.TemporaryDirectory(prefix="pdn-ssh-scale-") as tmp:
        directory = Path(tmp)
        directory.chmod(0o700)
        t0 = time.monotonic()
        guests, client_key = start_guests(directory, args.guests)
        try:
            print(f"{len(guests)} sshd guests up in {time.monotonic() - t0:.1f} s; {args.rounds} rounds per mode, "
                  f"concurrency {args.concurrency}, {os.cpu_count()} cores")
            figures: list[Figures] = []
            if "paramiko" in args.modes:
                figures += paramiko_modes(guests, client_key, args.rounds, args.concurrency, args.idle)
            if "asyncssh" in args.modes:
                figures += asyncssh_modes(guests, client_key, args.rounds, args.concurrency, args.idle)
            if "openssh" in args.modes:
                figures += openssh_modes(guests, directory, client_key, args.rounds, args.concurrency, args.idle)
            for f in figures:
                print(f.line(len(guests)))
        finally:
            stop_guests(guests)


if __name__ == "__main__":
    main()
