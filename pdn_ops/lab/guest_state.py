"""A lab guest's state: one JSON file per guest, shared by the lab process and the guest shell.

The lab writes power state and faults; the guest shell (run by sshd for every SSH command) reads it to answer
``systemctl``, ``df``, ``free``... and writes back what commands change (a restarted unit, a vacuumed journal).
Every change is a read-modify-write under an ``fcntl`` lock on a sidecar file, then an atomic rename, so the two
processes never see half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GiB = 1024**3
MiB = 1024**2
# Units every lab guest has, besides the ones the inventory lists for it.
BASE_UNITS = ("ssh.service", "cron.service", "systemd-journald.service")
# The unit whose state decides whether the guest's site accepts connections, and the one behind it.
WEB_UNIT = "nginx.service"
APP_UNIT_PREFIX = "php"
MAX_HISTORY = 100
# The OPD's web application as a package on the guest's disk: what `ship_bad_update` replaces and a snapshot
# rollback brings back (`cat /srv/opd-portal/VERSION` shows it).
APP_NAME = "opd-portal"
APP_VERSION_FILE = "/srv/opd-portal/VERSION"
FIRST_RELEASE = "1.4.2"
# Memory in use when the application needs more than the VM has (`memory_pressure`): the kernel's OOM killer
# takes the application's units down again and again.
OOM_USED_RATIO = 0.97


def initial_state(hostname: str, services: list[str], disk_bytes: int, memory_bytes: int) -> dict[str, Any]:
    units = {name: {"state": "active", "since": 0.0, "broken": False}
             for name in (*BASE_UNITS, *services)}
    return {
        "hostname": hostname,
        "power": "stopped",
        "booted_at": 0.0,
        "units": units,
        "disk": {"device": "/dev/sda1", "mount": "/", "size": disk_bytes, "base_used": int(disk_bytes * 0.31),
                 "fill": 0},
        "journal_bytes": 180 * MiB,
        "memory": {"total": memory_bytes, "used_ratio": 0.42, "need": 0, "oom_units": []},
        "release": {"version": FIRST_RELEASE, "healthy": True},
        "load": [0.08, 0.05, 0.01],
        "ssh_hang": False,
        "history": [],
    }


def app_units(state: dict[str, Any]) -> list[str]:
    """The units of the OPD's application: its PHP units; on a guest without a site, its own services."""
    units = [name for name in state["units"] if name.startswith(APP_UNIT_PREFIX)]
    return units or [name for name in state["units"] if name not in BASE_UNITS and name != WEB_UNIT]


def memory_short(state: dict[str, Any]) -> bool:
    """The application needs more memory than the VM has (the `memory_pressure` fault)."""
    memory = state["memory"]
    return int(memory.get("need") or 0) > int(memory["total"])


def memory_used_ratio(state: dict[str, Any]) -> float:
    return OOM_USED_RATIO if memory_short(state) else float(state["memory"]["used_ratio"])


def unit_blocked(state: dict[str, Any], unit: str) -> str | None:
    """Why a unit cannot start ("broken": its files are; "oom": killed for lack of memory), or None."""
    info = state["units"].get(unit) or {}
    if info.get("broken"):
        return "broken"
    if unit in state["memory"].get("oom_units", []) and memory_short(state):
        return "oom"
    return None


def release_healthy(state: dict[str, Any]) -> bool:
    return bool(state.get("release", {}).get("healthy", True))


def disk_used(state: dict[str, Any]) -> int:
    disk = state["disk"]
    used = int(disk["base_used"]) + int(state["journal_bytes"]) + int(disk["fill"])
    return min(used, int(disk["size"]))


class StateFile:
    """The state file of one guest, with locked updates."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def read(self) -> dict[str, Any]:
        with self.path.open(encoding="utf-8") as fh:
            data: dict[str, Any] = json.load(fh)
        return data

    def _write(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(self.path)

    def create(self, state: dict[str, Any]) -> None:
        with self._locked():
            self._write(state)

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        """Read, let the caller change the dict, write it back; all under the lock."""
        with self._locked():
            state = self.read()
            yield state
            self._write(state)

    def record(self, state: dict[str, Any], argv: list[str], status: int) -> None:
        """Remember a command the guest ran (tests and the demo read it back)."""
        history = state.setdefault("history", [])
        history.append({"t": round(time.time(), 3), "argv": argv, "status": status})
        del history[:-MAX_HISTORY]

    def mtime(self) -> float:
        try:
            return self.path.stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            return 0.0
