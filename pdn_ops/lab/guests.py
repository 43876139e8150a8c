"""A lab guest: a real OpenSSH sshd and a real HTTP(S) site on the guest's own loopback address.

Each guest runs ``/usr/sbin/sshd -D -e`` with its own config, host key and ``ForceCommand`` (the lab guest
shell), and an aiohttp site on the lab's event loop. The lab's reconciler powers a guest on and off as its VM's
state in the fake Proxmox changes; every method here runs on that event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import html
import logging
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from pdn_ops.lab import guest_state
from pdn_ops.lab.guest_state import StateFile
from pdn_ops.lab.pki import LabCa, make_ssh_key

log = logging.getLogger(__name__)
SSHD = "/usr/sbin/sshd"
HANG_MAX_SECS = 600.0
PR_SET_PDEATHSIG = 1
# util-linux's setpriv sets the parent-death signal before it execs sshd, so no Python runs between fork and exec:
# a preexec_fn in a threaded process can deadlock its child (a lock another thread held at fork time, libfaketime's
# among them), and Popen, waiting for that exec, would block the lab's event loop for good.
SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin")
_PRCTL: Any
try:  # the fallback where setpriv is missing; resolved before any fork (dlopen in a forked child could deadlock)
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None
STOP_WAIT = 3.0


@dataclass
class SiteSpec:
    opd_code: str
    opd_name: str
    https: bool


@dataclass
class GuestSpec:
    vmid: int
    name: str
    opd_code: str
    opd_name: str
    address: str
    ssh_port: int
    http_port: int
    https_port: int
    services: list[str]
    site: SiteSpec | None
    disk_bytes: int
    memory_bytes: int


@dataclass
class SiteFaults:
    mode: str | None = None  # None, "error" (HTTP 500) or "hang"
    release: asyncio.Event = field(default_factory=asyncio.Event)


class LabGuest:
    """The runtime of one guest; public attributes are safe to read from any thread."""

    def __init__(self, spec: GuestSpec, directory: Path, ca: LabCa, client_pub: str, client_key: Path,
                 user: str, cert_days: int) -> None:
        self.spec = spec
        self.vmid = spec.vmid
        self.address = spec.address
        self.ssh_port = spec.ssh_port
        self.user = user
        self.client_key_path = client_key
        self.dir = directory
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.state_file = StateFile(self.dir / "state.json")
        self.state_file.create(guest_state.initial_state(spec.name, spec.services, spec.disk_bytes,
                                                         spec.memory_bytes))
        self._ca = ca
        self.host_key = make_ssh_key(self.dir / "ssh_host_ed25519_key", f"root@{spec.name}").public_line
        (self.dir / "authorized_keys").write_text(client_pub + "\n", encoding="utf-8")
        self.cert_not_after = dt.datetime.now(dt.UTC) + dt.timedelta(days=cert_days)
        self._certfile: Path | None
        self._keyfile: Path | None
        self._certfile, self._keyfile = ca.issue(f"{self.dir.name}-site", [spec.address], self.cert_not_after) \
            if spec.site and spec.site.https else (None, None)
        self._sshd: subprocess.Popen[bytes] | None = None
        self._runner: web.AppRunner | None = None
        self.site_faults = SiteFaults()
        self.powered = False  # VM running and booted: services may run
        self.seen_start: float | None = None  # the VM's started_at this boot belongs to
        self.boot_handle: asyncio.TimerHandle | None = None
        self.frozen = False  # the VM is paused: its processes stand still
        self._thawed = asyncio.Event()
        self._state_mtime = 0.0
        self._write_sshd_config()

    # ----------------------------------------------------------- addresses
    @property
    def site_urls(self) -> list[str]:
        if self.spec.site is None:
            return []
        urls = [_url("http", self.address, self.spec.http_port, 80)]
        if self.spec.site.https:
            urls.append(_url("https", self.address, self.spec.https_port, 443))
        return urls

    def state(self) -> dict[str, Any]:
        return self.state_file.read()

    @property
    def sshd_pid(self) -> int | None:
        return self._sshd.pid if self._sshd and self._sshd.poll() is None else None

    # ----------------------------------------------------------- sshd
    def _write_sshd_config(self) -> None:
        python = shlex.quote(sys.executable)
        root = shlex.quote(str(Path(__file__).resolve().parents[2]))
        state = shlex.quote(str(self.state_file.path))
        force = f"PYTHONPATH={root} exec {python} -S -m pdn_ops.lab.guest_shell {state}"
        lines = [
            f"ListenAddress {self.address}:{self.ssh_port}",
            f"HostKey {self.dir / 'ssh_host_ed25519_key'}",
            f"PidFile {self.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            f"AllowUsers {self.user}",
            "StrictModes no", "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "PermitTTY no",
            "X11Forwarding no", "AllowTcpForwarding no", "AllowAgentForwarding no", "PermitTunnel no",
            "PrintMotd no", "PrintLastLog no", "UseDNS no", "LogLevel ERROR", "MaxStartups 100:30:200",
            "MaxSessions 20", "ClientAliveInterval 0",
            # bash sources ~/.bashrc for commands run by sshd only when SHLVL < 2; a login shell set up for
            # interactive use (pyenv, cargo...) would add hundreds of milliseconds to every command.
            "SetEnv SHLVL=5 LC_ALL=C.UTF-8",
            f"ForceCommand {force}",
        ]
        (self.dir / "sshd_config").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start_sshd(self) -> None:
        if self.sshd_pid is not None:
            return
        err = (self.dir / "sshd.log").open("ab")
        try:
            argv = [SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")]
            self._sshd = subprocess.Popen(
                [SETPRIV, "--pdeathsig", "TERM", "--", *argv] if SETPRIV else argv,
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
                preexec_fn=None if SETPRIV else _die_with_lab,
            )
        finally:
            err.close()

    def stop_sshd(self) -> None:
        """Stop sshd by PID, and first the sessions it forked (a powered-off VM drops its connections)."""
        proc, self._sshd = self._sshd, None
        if proc is None:
            return
        for pid in descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):  # a paused VM's sshd is SIGSTOPped: SIGTERM would wait
            os.kill(proc.pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_WAIT)

    def new_host_key(self) -> str:
        """Replace the host key (a reinstalled or impersonated guest); sshd restarts if it runs."""
        running = self.sshd_pid is not None
        self.stop_sshd()
        self.host_key = make_ssh_key(self.dir / "ssh_host_ed25519_key", f"root@{self.spec.name}").public_line
        if running:
            self.start_sshd()
        return self.host_key

    # ----------------------------------------------------------- site
    def web_active(self, state: dict[str, Any]) -> bool:
        unit = state["units"].get(guest_state.WEB_UNIT)
        return unit is None or unit["state"] == "active"

    def _app_failed(self, state: dict[str, Any]) -> bool:
        return any(name.startswith(guest_state.APP_UNIT_PREFIX) and info["state"] != "active"
                   for name, info in state["units"].items())

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        faults = self.site_faults
        if self.frozen:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._thawed.wait(), HANG_MAX_SECS)
        if faults.mode == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(faults.release.wait(), HANG_MAX_SECS)
        if faults.mode == "error":
            return web.Response(status=500, text="<h1>500 Internal Server Error</h1>\n<hr><center>nginx</center>\n",
                                content_type="text/html")
        state = self.state_file.read()
        if self._app_failed(state):
            return web.Response(status=502, text="<h1>502 Bad Gateway</h1>\n<hr><center>nginx</center>\n",
                                content_type="text/html")
        if not guest_state.release_healthy(state):
            # A bad release of the application: every page fails in the application, whatever is restarted.
            version = html.escape(str(state["release"].get("version", "")))
            return web.Response(status=500, text=f"<h1>500 Internal Server Error</h1>\n<p>{guest_state.APP_NAME} "
                                f"{version}: the application could not handle the request.</p>\n",
                                content_type="text/html", headers={"Server": "nginx"})
        if request.path not in ("/", "/index.html"):
            return web.Response(status=404, text="<h1>404 Not Found</h1>\n", content_type="text/html")
        site = self.spec.site
        name = html.escape(site.opd_name if site else self.spec.name)
        body = (f"<!doctype html>\n<html lang=\"id\"><head><meta charset=\"utf-8\"><title>{name}</title></head>\n"
                f"<body><h1>{name}</h1><p>Portal layanan {name} — {html.escape(self.spec.name)}.</p></body>"
                "</html>\n")
        return web.Response(text=body, content_type="text/html", headers={"Server": "nginx"})

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self._certfile), str(self._keyfile))
        return ctx

    async def start_site(self) -> None:
        if self._runner is not None or self.spec.site is None:
            return
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.address, self.spec.http_port, reuse_address=True).start()
            if self.spec.site.https:
                await web.TCPSite(runner, self.address, self.spec.https_port, ssl_context=self._ssl_context(),
                                  reuse_address=True).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop_site(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            self.site_faults.release.set()
            abort_connections(runner)
            await runner.cleanup()
            self.site_faults.release = asyncio.Event()

    @property
    def site_running(self) -> bool:
        return self._runner is not None

    async def set_certificate(self, not_after: dt.datetime) -> None:
        """Re-issue the site certificate with this expiry (in the past: an expired certificate)."""
        self.cert_not_after = not_after
        self._certfile, self._keyfile = self._ca.issue(f"{self.dir.name}-site", [self.address], not_after)
        if self._runner is not None:
            await self.stop_site()
            await self.start_site()

    # ----------------------------------------------------------- power
    def _signal_sshd(self, sig: int) -> None:
        if self._sshd is None or self._sshd.poll() is not None:
            return
        for pid in [self._sshd.pid, *descendants(self._sshd.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def freeze(self) -> None:
        """A paused VM: sshd and its sessions are stopped (SIGSTOP) and the site holds every request; TCP
        connections are still accepted by the kernel, then nothing answers, as with a paused guest."""
        if self.frozen:
            return
        self.frozen = True
        self._thawed.clear()
        self._signal_sshd(signal.SIGSTOP)

    def thaw(self) -> None:
        if not self.frozen:
            return
        self.frozen = False
        self._signal_sshd(signal.SIGCONT)
        self._thawed.set()

    def boot_state(self, memory_bytes: int | None = None) -> None:
        """The guest boots: enabled units start (those that cannot, fail), or, after a rollback to a snapshot
        with RAM, the processes resume as the snapshot held them."""
        now = time.time()
        with self.state_file.update() as state:
            if memory_bytes:
                state["memory"]["total"] = memory_bytes
            resume = state.pop("resume", None)
            state["power"] = "running"
            state["ssh_hang"] = False
            if resume is not None:
                state["booted_at"] = now - float(resume["uptime"])
                for name, info in state["units"].items():
                    held = resume["units"].get(name, "active")
                    info.update(state="failed" if guest_state.unit_blocked(state, name) else held, since=now)
                return
            state["booted_at"] = now
            for name, info in state["units"].items():
                info.update(state="failed" if guest_state.unit_blocked(state, name) else "active", since=now)

    async def power_on(self, memory_bytes: int | None = None) -> None:
        self.boot_state(memory_bytes)
        self.powered = True
        self.start_sshd()
        await self.sync_services(force=True)

    async def power_off(self) -> None:
        self.frozen = False
        self._thawed.set()
        if self.boot_handle is not None:
            self.boot_handle.cancel()
            self.boot_handle = None
        self.powered = False
        with self.state_file.update() as state:
            state["power"] = "stopped"
        self.stop_sshd()
        await self.stop_site()

    async def sync_services(self, force: bool = False) -> None:
        """Follow the state file: the site listens only while the web unit is active."""
        mtime = self.state_file.mtime()
        if not force and mtime == self._state_mtime:
            return
        self._state_mtime = mtime
        state = self.state_file.read()
        if self.powered and self.web_active(state):
            await self.start_site()
        else:
            await self.stop_site()
        if self.powered and self._sshd is not None and self._sshd.poll() is not None:
            log.warning("lab guest %s: sshd exited with %s; see %s", self.vmid, self._sshd.returncode,
                        self.dir / "sshd.log")
            self._sshd = None

    def set_hardware(self, disk_size: int | None, memory: int) -> None:
        """Follow the running VM's disk size and memory (a resize, a hot-plugged change). Less memory than the
        application needs: the OOM killer strikes; enough again: systemd restarts what it killed
        (Restart=on-failure). One read per call: the reconciler calls it every tick for every guest."""
        state = self.state_file.read()
        if (disk_size and int(state["disk"]["size"]) != disk_size) or int(state["memory"]["total"]) != memory:
            with self.state_file.update() as fresh:
                if disk_size:
                    fresh["disk"]["size"] = disk_size
                if int(fresh["memory"]["total"]) != memory:
                    fresh["memory"]["total"] = memory
                    self._follow_memory(fresh)

    @staticmethod
    def _follow_memory(state: dict[str, Any]) -> None:
        now = time.time()
        short = guest_state.memory_short(state)
        for name in state["memory"].get("oom_units", []):
            info = state["units"].get(name)
            if info is None or info.get("broken"):
                continue
            if short and info["state"] == "active":
                info.update(state="failed", since=now)
            elif not short and info["state"] == "failed":
                info.update(state="active", since=now)

    def memory_pressure(self, need: int, units: list[str]) -> None:
        """The application needs ``need`` bytes (0: the fault is over)."""
        with self.state_file.update() as state:
            state["memory"]["need"] = need
            if need:
                state["memory"]["oom_units"] = sorted(set(units))
            if self.powered:
                self._follow_memory(state)
            if not need:
                state["memory"]["oom_units"] = []

    # ----------------------------------------------------------- snapshots
    def capture(self) -> dict[str, Any]:
        """What a Proxmox snapshot holds of this guest: its disk (units' files, the installed release, used
        space) and, for a snapshot with RAM, its running processes."""
        state = self.state_file.read()
        running = state["power"] == "running"
        return {
            "disk": {"units_broken": {n: bool(i.get("broken")) for n, i in state["units"].items()},
                     "release": dict(state.get("release", {})), "journal_bytes": state["journal_bytes"],
                     "fill": state["disk"]["fill"], "base_used": state["disk"]["base_used"],
                     "memory_need": state["memory"].get("need", 0),
                     "oom_units": list(state["memory"].get("oom_units", [])),
                     "site_mode": self.site_faults.mode},
            "ram": {"units": {n: i["state"] for n, i in state["units"].items()},
                    "uptime": max(time.time() - float(state["booted_at"]), 0.0)} if running else None,
        }

    def restore(self, captured: dict[str, Any], with_ram: bool) -> None:
        """A rollback: the disk as the snapshot held it; with RAM, the processes resume at the next (re)start."""
        disk = captured["disk"]
        with self.state_file.update() as state:
            for name, info in state["units"].items():
                info["broken"] = bool(disk["units_broken"].get(name, False))
            state["release"] = dict(disk["release"])
            state["journal_bytes"] = disk["journal_bytes"]
            state["disk"].update(fill=disk["fill"], base_used=disk["base_used"])
            state["memory"].update(need=disk["memory_need"], oom_units=list(disk["oom_units"]))
            if with_ram and captured.get("ram") is not None:
                state["resume"] = captured["ram"]
            else:
                state.pop("resume", None)
        self.site_faults.mode = disk["site_mode"]
        if disk["site_mode"] != "hang":
            self.site_faults.release.set()


def _url(scheme: str, host: str, port: int, default: int) -> str:
    return f"{scheme}://{host}/" if port == default else f"{scheme}://{host}:{port}/"


def _die_with_lab() -> None:
    """In the sshd child before exec: SIGTERM when the lab's thread dies, so a killed lab (SIGKILL, a crashed
    test run) leaves no sshd listening. Linux only; elsewhere the lab stops sshd itself as usual."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def descendants(root: int) -> list[int]:
    """PIDs of every process below ``root`` (sshd's session processes call setsid(), so a process group kill
    would miss them), deepest first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found[::-1]


def abort_connections(runner: web.BaseRunner | None) -> None:
    """Drop every open connection at once. A powered-off guest (or a stopping lab) does not say goodbye, and a TLS
    close would otherwise wait up to 30 s for the peer's close_notify, outliving the event loop."""
    server = runner.server if runner is not None else None
    for handler in server.connections if server is not None else []:
        transport = handler.transport
        if transport is not None:
            transport.abort()


def ensure_privsep_dir() -> None:
    """sshd refuses to start as root without its privilege-separation directory."""
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
