"""The lab beside the demo service (`make run`): a few live VMs a visitor can break and watch come back."""

from __future__ import annotations

import os
from pathlib import Path

import click

from pdn_ops.lab.lab import Lab

SSHD = "/usr/sbin/sshd"


def start_demo_lab(directory: Path) -> Lab:
    """Start a small lab in ``directory``; guests need OpenSSH's sshd, without it the VMs have no guests."""
    from pdn_ops.lab.cli import quiet_access_log

    quiet_access_log()
    has_sshd = Path(SSHD).exists() and os.access(SSHD, os.X_OK)
    if not has_sshd:
        click.echo(f"lab: {SSHD} not found (Debian package openssh-server): VMs run without guests", err=True)
    lab = Lab.start(directory, nodes=2, vms=4, sites=3, time_scale=0.2, guests=4 if has_sshd else 0)
    click.echo(f"lab: Proxmox API {lab.api_url} (token {lab.token_id}), inventory {lab.inventory_path}")
    for guest in lab.guests.values():
        click.echo(f"lab:   VM {guest.vmid} at {guest.address}  {' '.join(guest.site_urls)}")
    click.echo(f"lab: break something with: pdn-ops lab fault --dir {directory} crash_service vmid=101")
    return lab
