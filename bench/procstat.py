"""CPU seconds of a process tree from /proc, to measure peer tools run as subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may contain spaces; fields after the closing parenthesis are fixed
    return text[text.rindex(")") + 2:].split()


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


def tree_cpu_seconds(pid: int) -> float:
    """user+system CPU of pid, its reaped children, and its live descendants."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # fields[11..14] = utime, stime, cutime, cstime (stat fields 14-17)
    total = sum(int(v) for v in fields[11:15]) / TICK
    return total + sum(tree_cpu_seconds(child) for child in _children(pid))


def wait_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
