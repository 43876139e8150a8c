"""The lab: a Proxmox VE cluster on loopback (fakepve) whose VMs have real guests (sshd, HTTP sites).

See pdn_ops/lab/README.md. Import :class:`Lab` from here; it needs the ``lab`` extra (fakepve).
"""

from pdn_ops.lab.lab import Lab, LabError

__all__ = ["Lab", "LabError"]
