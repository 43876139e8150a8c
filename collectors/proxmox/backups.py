"""Backups and storages from Proxmox answers. Pure: no I/O.

The calls behind them do not grow with the number of guests: ``/cluster/resources`` (already read) gives the
storages, ``/cluster/tasks`` the recent vzdump tasks, one ``content?content=backup`` listing per backup storage
gives every backup volume, ``/cluster/backup`` the jobs; a failed vzdump task's log is read once (finished
tasks never change).

A vzdump task backs up one guest (``id`` its VMID) or many (``id`` empty; a scheduled job makes one per node).
Its log names each guest's part: ``INFO: Starting Backup of VM 101 (qemu)`` and, when that part failed,
``ERROR: Backup of VM 101 failed - reason``; the task then ends ``TASK ERROR: job errors``. The schema does not
fix that text (shared/reference/PVE-API-NOTES.md), so only those two lines and the exit status are relied upon.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pdn_ops.health.observations import BackupObservation, StorageObservation

FAILED_PART = re.compile(r"^ERROR: Backup of VM (\d+) failed - (.*)$")
STARTED_PART = re.compile(r"^INFO: Starting Backup of VM (\d+) ")
STORAGE_ARG = re.compile(r"--storage[ =](\S+)")
VOLUME_OWNER = re.compile(r":backup/vzdump-(?:qemu|lxc|openvz)-(\d+)-")
LOG_TAIL = 6
LOG_CHARS = 600


def _split(value: Any) -> list[str]:
    return [item for item in re.split(r"[,;\s]+", str(value or "")) if item]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def storages(resources: Iterable[Mapping[str, Any]]) -> tuple[StorageObservation, ...]:
    """The storage entries of ``/cluster/resources``, one per storage and node."""
    out = []
    for entry in resources:
        if entry.get("type") != "storage" or not entry.get("storage") or not entry.get("node"):
            continue
        out.append(StorageObservation(
            node=str(entry["node"]), storage=str(entry["storage"]), plugintype=str(entry.get("plugintype") or ""),
            content=tuple(sorted(_split(entry.get("content")))), shared=bool(_int(entry.get("shared")) or 0),
            available=entry.get("status") == "available", used=max(_int(entry.get("disk")) or 0, 0),
            total=max(_int(entry.get("maxdisk")) or 0, 0)))
    return tuple(sorted(out, key=lambda s: (s.storage, s.node)))


def backup_listings(found: Sequence[StorageObservation]) -> list[StorageObservation]:
    """Which storages to list for backups: each backup storage once (a shared one from its first node that has it
    available), a node-local one on every node where it is available."""
    chosen: dict[tuple[str, str], StorageObservation] = {}
    for store in found:
        if "backup" not in store.content or not store.available:
            continue
        key = (store.storage, "" if store.shared else store.node)
        chosen.setdefault(key, store)
    return sorted(chosen.values(), key=lambda s: (s.storage, s.node))


def finished_vzdump(tasks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The finished vzdump tasks of ``/cluster/tasks``, newest first."""
    rows = [dict(t) for t in tasks if t.get("type") == "vzdump" and t.get("status") not in (None, "", "running")
            and t.get("upid")]
    return sorted(rows, key=lambda t: -(_int(t.get("endtime")) or _int(t.get("starttime")) or 0))


def failed_parts(task: Mapping[str, Any], log: Sequence[str]) -> dict[int, str]:
    """The guests whose part of a failed vzdump task failed, each with its error and the log's last lines.

    A task for one guest (``id`` = VMID) that failed without an ERROR line (it never started) counts for it."""
    tail = [line for line in log[-LOG_TAIL:] if line.strip()]
    out: dict[int, str] = {}
    for line in log:
        found = FAILED_PART.match(line.strip())
        if found:
            text = "\n".join([line.strip(), *[t for t in tail if t.strip() != line.strip()]])
            out[int(found.group(1))] = text[-LOG_CHARS:]
    vmid = _int(task.get("id"))
    if not out and vmid is not None:
        out[vmid] = "\n".join(tail)[-LOG_CHARS:] or str(task.get("status"))
    return out


def task_storage(log: Sequence[str]) -> str | None:
    for line in log[:3]:
        found = STORAGE_ARG.search(line)
        if found:
            return found.group(1)
    return None


def coverage(jobs: Iterable[Mapping[str, Any]], vmids: Iterable[int]) -> dict[int, tuple[str, ...]]:
    """VMID -> the enabled jobs that include it (``all`` minus ``exclude``, or the ``vmid`` list)."""
    every = set(vmids)
    out: dict[int, list[str]] = {vmid: [] for vmid in every}
    for job in jobs:
        enabled = job.get("enabled", 1)
        if str(enabled).lower() in ("0", "false", "no"):
            continue
        job_id = str(job.get("id") or "?")
        if str(job.get("all", 0)).lower() in ("1", "true", "yes"):
            included = every - {_int(v) for v in _split(job.get("exclude"))}
        else:
            included = {v for v in (_int(x) for x in _split(job.get("vmid"))) if v is not None}
        for vmid in included & every:
            out[vmid].append(job_id)
    return {vmid: tuple(sorted(ids)) for vmid, ids in out.items()}


def per_guest(vmids: Iterable[int], volumes: Iterable[tuple[str, Mapping[str, Any]]],
              failures: Iterable[tuple[datetime, str | None, dict[int, str]]],
              jobs: Mapping[int, tuple[str, ...]]) -> tuple[BackupObservation, ...]:
    """One BackupObservation per guest from the backup volumes (storage, content entry), the failed tasks
    (end time, storage, failed parts; any order) and the job coverage."""
    newest: dict[int, tuple[int, int, str]] = {}
    for storage, entry in volumes:
        vmid = _int(entry.get("vmid"))
        if vmid is None:
            found = VOLUME_OWNER.search(str(entry.get("volid") or ""))
            vmid = int(found.group(1)) if found else None
        ctime = _int(entry.get("ctime"))
        if vmid is None or ctime is None:
            continue
        if vmid not in newest or ctime > newest[vmid][0]:
            newest[vmid] = (ctime, max(_int(entry.get("size")) or 0, 0), storage)
    failed: dict[int, tuple[datetime, str | None, str]] = {}
    for at, target, parts in failures:
        for vmid, text in parts.items():
            if vmid not in failed or at > failed[vmid][0]:
                failed[vmid] = (at, target, text)
    out = []
    for vmid in sorted(set(vmids)):
        ok = newest.get(vmid)
        bad = failed.get(vmid)
        out.append(BackupObservation(
            vmid=vmid, jobs=jobs.get(vmid, ()),
            last_ok_at=datetime.fromtimestamp(ok[0], UTC) if ok else None,
            last_ok_size=ok[1] if ok else None, last_ok_storage=ok[2] if ok else None,
            last_failed_at=bad[0] if bad else None, failed_storage=bad[1] if bad else None,
            failure_log=bad[2] if bad else ""))
    return tuple(out)
