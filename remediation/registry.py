"""Playbooks by name, imported lazily. Adding a playbook is copying a sibling module and adding one line here."""

from __future__ import annotations

from importlib import import_module
from typing import cast

from pdn_ops.errors import PolicyRefused
from remediation.playbooks.base import Playbook

PLAYBOOKS: dict[str, str] = {
    "restart_vm": "remediation.playbooks.restart_vm:PLAYBOOK",
    "resize_vm": "remediation.playbooks.resize_vm:PLAYBOOK",
    "restore_snapshot": "remediation.playbooks.restore_snapshot:PLAYBOOK",
    "restart_service": "remediation.playbooks.restart_service:PLAYBOOK",
    "free_disk": "remediation.playbooks.free_disk:PLAYBOOK",
}


def playbook(name: str) -> Playbook:
    ref = PLAYBOOKS.get(name)
    if ref is None:
        raise PolicyRefused(f"no playbook named {name!r}")
    module, _, attr = ref.partition(":")
    return cast(Playbook, getattr(import_module(module), attr))
