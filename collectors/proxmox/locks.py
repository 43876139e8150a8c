"""Which guest locks a running task holds, from ``/cluster/tasks``. Pure: no I/O.

A guest's ``lock`` (``/cluster/resources``) is taken by the task that works on it and dropped when that task
ends; a worker killed by a signal or a node that crashed leaves it behind, and then every backup, snapshot or
migration of the guest is refused ("VM is locked (backup)"). A lock is held while a running task (no ``status``
and no ``endtime`` in the list) names the guest (``id`` = VMID), or, for ``backup``, while a vzdump task of many
guests (``id`` empty) runs on its node. ``create`` is also taken on the new guest of a clone or restore whose
task names the source: any running task of those kinds holds it. ``suspended`` and ``mounted`` are states a
guest keeps on purpose, not task locks.

Sample task entries::

    {"upid": "UPID:pve1:...:vzdump::root@pam:", "node": "pve1", "type": "vzdump", "id": "", "starttime": 1765000000}
    {"upid": "UPID:pve1:...:qmsnapshot:101:root@pam:", "node": "pve1", "type": "qmsnapshot", "id": "101",
     "starttime": 1765000000, "endtime": 1765000042, "status": "OK"}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NOT_TASK_LOCKS = frozenset({"suspended", "mounted"})
CREATING = frozenset({"qmclone", "vzclone", "qmcreate", "vzcreate", "qmrestore", "vzrestore", "qmigrate",
                      "vzmigrate"})


@dataclass(frozen=True, slots=True)
class Running:
    """The running tasks of a cluster, as much as lock holding needs of them."""

    vmids: frozenset[int]  # guests a running task names
    node_wide_backups: frozenset[str]  # nodes running a vzdump task without a single guest
    creating: bool  # a clone, create, restore or migration runs somewhere


def running(tasks: Iterable[Mapping[str, Any]]) -> Running:
    vmids: set[int] = set()
    nodes: set[str] = set()
    creating = False
    for task in tasks:
        if task.get("endtime") or task.get("status") not in (None, "", "running"):
            continue
        kind, ref = str(task.get("type") or ""), str(task.get("id") or "")
        if ref.isdigit():
            vmids.add(int(ref))
        elif kind == "vzdump":
            nodes.add(str(task.get("node") or ""))
        creating = creating or kind in CREATING
    return Running(vmids=frozenset(vmids), node_wide_backups=frozenset(nodes), creating=creating)


def held(lock: str, vmid: int, node: str, tasks: Running) -> bool:
    """Whether a running task may hold this guest's lock (when in doubt: held, never a false alarm)."""
    if lock in NOT_TASK_LOCKS or vmid in tasks.vmids:
        return True
    if lock == "backup" and node in tasks.node_wide_backups:
        return True
    return lock == "create" and tasks.creating
