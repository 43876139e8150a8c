"""Drift between the inventory and what a Proxmox cluster reports, both ways. Pure, standard library only."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pdn_ops.health.observations import ClusterObservation, GuestObservation


@dataclass(frozen=True, slots=True)
class GuestDrift:
    """``unlisted``: guests Proxmox runs that no inventory record names (nobody is watching them);
    ``missing``: inventory VMs (by vmid) that Proxmox does not report (deleted, moved, or a typo)."""

    cluster: str
    unlisted: tuple[GuestObservation, ...] = ()
    missing: tuple[int, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.unlisted and not self.missing


def guest_drift(observation: ClusterObservation, inventory_vmids: Iterable[int]) -> GuestDrift | None:
    """Compare one cycle with the inventory's VMs of that cluster (matched by cluster + vmid).

    Returns None when the cycle failed: a failed or suspiciously empty answer says nothing about drift, and
    reading it as drift would report every VM as missing. Templates are not guests to watch, so they never
    count as unlisted.
    """
    if not observation.ok:
        return None
    wanted = set(inventory_vmids)
    seen = {g.vmid for g in observation.guests}
    unlisted = tuple(g for g in observation.guests if g.vmid not in wanted and not g.template)
    missing = tuple(sorted(wanted - seen))
    return GuestDrift(cluster=observation.cluster, unlisted=unlisted, missing=missing)
