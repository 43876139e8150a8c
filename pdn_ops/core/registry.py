"""The one table of plug-ins: kind -> "package.module:Class", imported only when first asked for.

Adding a collector (or, later, a playbook) is one line here plus its folder; nothing is imported at start-up,
so a web worker that never collects never loads paramiko, proxmoxer or aiohttp.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from pdn_ops.core.errors import ConfigError

COLLECTORS: dict[str, str] = {
    "proxmox": "collectors.proxmox.collector:ProxmoxCollector",
    "http": "collectors.http.collector:SiteCollector",
    "ssh": "collectors.ssh.collector:SshCollector",
}

PLAYBOOKS: dict[str, str] = {
    "restart_vm": "remediation.playbooks.restart_vm:RestartVm",
    "resize_vm": "remediation.playbooks.resize_vm:ResizeVm",
    "restore_snapshot": "remediation.playbooks.restore_snapshot:RestoreSnapshot",
    "restart_service": "remediation.playbooks.restart_service:RestartService",
    "free_disk": "remediation.playbooks.free_disk:FreeDisk",
    "restore_backup": "remediation.playbooks.restore_backup:RestoreBackup",
    "migrate_vm": "remediation.playbooks.migrate_vm:MigrateVm",
    "clear_lock": "remediation.playbooks.clear_lock:ClearLock",
}


def _load(table: dict[str, str], section: str, kind: str) -> type[Any]:
    try:
        target = table[kind]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise ConfigError(f"no {section} of kind {kind!r} (known: {known})") from None
    module_name, _, attribute = target.partition(":")
    cls = getattr(import_module(module_name), attribute)
    if not isinstance(cls, type):
        raise ConfigError(f"{section} {kind!r}: {target} is not a class")
    return cls


def collector_class(kind: str) -> type[Any]:
    """The collector class registered for ``kind`` (imported on first use)."""
    return _load(COLLECTORS, "collector", kind)


def playbook_class(kind: str) -> type[Any]:
    return _load(PLAYBOOKS, "playbook", kind)
