"""Output of the fixed guest commands -> an SshObservation. Pure: no I/O, the time is an argument.

The collector runs one batch whose sections are introduced by a marker line (``@@pdn-ops:<nonce>@@ NAME``).
A sample, as a Debian 12 guest prints it::

    @@pdn-ops:1a2b3c4d@@ df
    Filesystem     1024-blocks      Used Available Capacity Mounted on
    /dev/sda1         20466256   6290124  13111828      33% /
    tmpfs               409600      1024    408576       1% /run
    @@pdn-ops:1a2b3c4d@@ free
                   total        used        free      shared  buff/cache   available
    Mem:      4294967296   858993459  2576980377    12582912   858993459  3435973837
    Swap:     1073741824           0  1073741824
    @@pdn-ops:1a2b3c4d@@ loadavg
    0.42 0.30 0.25 1/123 4567
    @@pdn-ops:1a2b3c4d@@ uptime
    86400.25 155520.45
    @@pdn-ops:1a2b3c4d@@ units
    active
    failed
    @@pdn-ops:1a2b3c4d@@ failed
    php8.2-fpm.service loaded failed failed The PHP 8.2 FastCGI Process Manager

A section that is missing or unreadable leaves its fields at None (a minimal guest without ``free`` still
reports its disks); only output with none of the readings at all is a protocol failure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from pdn_ops.health.observations import FailureClass, Mount, SshObservation

# Filesystems that are not disks: their "use" means nothing for "disk almost full".
PSEUDO_FS = frozenset({"tmpfs", "devtmpfs", "udev", "none", "overlay", "shm", "efivarfs", "squashfs", "ramfs"})
_BLOCKS = re.compile(r"^(\d+)([KMG]?)-blocks$|^1B-blocks$")
_SIZES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def split_sections(output: str, marker: str) -> dict[str, str]:
    """{section name: its text} for lines ``MARKER NAME`` followed by the section's lines."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(marker + " "):
            current = sections.setdefault(line[len(marker) + 1:].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def _block_size(header: str) -> int | None:
    parts = header.split()
    if len(parts) < 2:
        return None
    match = _BLOCKS.match(parts[1])
    if match is None:
        return None
    if parts[1] == "1B-blocks":
        return 1
    return int(match.group(1)) * _SIZES[match.group(2)]


def parse_df(text: str) -> tuple[Mount, ...] | None:
    """``df -P`` (POSIX format: one line per filesystem, sizes in the header's block unit)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("Filesystem"):
        return None
    block = _block_size(lines[0])
    if block is None:
        return None
    mounts = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 6 or fields[0] in PSEUDO_FS:
            continue
        try:
            size, used, avail = (int(v) * block for v in fields[1:4])
        except ValueError:
            continue
        if size <= 0:
            continue
        # POSIX df puts the mount point last; it may contain spaces.
        mounts.append(Mount(mount=" ".join(fields[5:]), size_bytes=size, used_bytes=used, avail_bytes=avail))
    return tuple(mounts)


def parse_free(text: str) -> tuple[int, int] | None:
    """``free -b``: (total, available) bytes of the Mem: line."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "Mem:" and len(fields) >= 7:
            try:
                return int(fields[1]), int(fields[6])
            except ValueError:
                return None
    return None


def parse_loadavg(text: str) -> tuple[float, float, float] | None:
    fields = text.split()
    try:
        return float(fields[0]), float(fields[1]), float(fields[2])
    except (IndexError, ValueError):
        return None


def parse_uptime(text: str) -> float | None:
    fields = text.split()
    try:
        return float(fields[0])
    except (IndexError, ValueError):
        return None


def parse_is_active(text: str, units: Sequence[str]) -> dict[str, str]:
    """``systemctl is-active U1 U2 ...`` prints one state per unit, in order; a missing line is "unknown"."""
    states = [line.strip() for line in text.splitlines() if line.strip()]
    return {unit: (states[i] if i < len(states) else "unknown") for i, unit in enumerate(units)}


def parse_failed_units(text: str) -> tuple[str, ...]:
    """``systemctl --failed --no-legend --plain``: the unit is the first word of each line."""
    units = []
    for line in text.splitlines():
        fields = line.replace("●", " ").replace("×", " ").split()
        if fields and "." in fields[0]:
            units.append(fields[0])
    return tuple(units)


def observe(
    cluster: str, vmid: int, now: datetime, output: str, marker: str, services: Sequence[str], *,
    truncated: bool = False,
) -> SshObservation:
    sections = split_sections(output, marker)
    mounts = parse_df(sections.get("df", ""))
    memory = parse_free(sections.get("free", ""))
    load = parse_loadavg(sections.get("loadavg", ""))
    uptime = parse_uptime(sections.get("uptime", ""))
    if mounts is None and memory is None and load is None and uptime is None:
        return SshObservation(cluster=cluster, vmid=vmid, at=now, ok=False, failure=FailureClass.PROTOCOL,
                              detail="the guest's answer holds none of the expected readings")
    return SshObservation(
        cluster=cluster,
        vmid=vmid,
        at=now,
        ok=True,
        detail="output was cut at the size limit" if truncated else "",
        mounts=mounts or (),
        mem_total_bytes=memory[0] if memory else None,
        mem_available_bytes=memory[1] if memory else None,
        load1=load[0] if load else None,
        load5=load[1] if load else None,
        load15=load[2] if load else None,
        uptime_s=uptime,
        services=parse_is_active(sections.get("units", ""), services) if services else {},
        failed_units=parse_failed_units(sections.get("failed", "")),
    )
