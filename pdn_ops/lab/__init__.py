"""The lab: a Proxmox VE cluster on loopback (fakepve) whose VMs have real guests (sshd, HTTP sites).

See pdn_ops/lab/README.md. ``from pdn_ops.lab import Lab`` needs the ``lab`` extra (fakepve). The import is lazy
because every SSH command run in a lab guest starts ``python -m pdn_ops.lab.guest_shell``, which must stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pdn_ops.lab.errors import LabError
    from pdn_ops.lab.lab import Lab

__all__ = ["Lab", "LabError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pdn_ops.lab import lab

        return getattr(lab, name)
    raise AttributeError(f"module 'pdn_ops.lab' has no attribute {name!r}")
