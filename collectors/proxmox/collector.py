"""One Proxmox cluster per collector: two fleet-wide calls per cycle, a few targeted ones only for changes.

The cost of a cycle does not grow with the number of guests: ``/cluster/resources`` and ``/cluster/status``
cover the whole cluster; ``status/current`` is asked only for guests whose status changed since the previous
good cycle, and at most ``max_targeted`` of them.

The collector remembers the guests of its last good cycle, so an empty answer after guests were seen stays an
EMPTY anomaly (ok=False) on every cycle until guests reappear or the collector is rebuilt from an inventory that
no longer declares VMs on the cluster (decommissioning a whole cluster is a deliberate inventory change).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from collectors.proxmox import parse
from collectors.proxmox.client import ProxmoxClient
from pdn_ops.core.errors import CollectorError
from pdn_ops.core.inventory import Cluster, Vm
from pdn_ops.health.observations import ClusterObservation, FailureClass, GuestObservation


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ProxmoxCollector:
    kind = "proxmox"

    def __init__(
        self,
        client: ProxmoxClient,
        *,
        expected_vmids: Iterable[int] = (),
        max_targeted: int = 10,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.client = client
        self.cluster = client.name
        self.expected_vmids = frozenset(expected_vmids)
        self.max_targeted = max_targeted
        self._clock = clock
        self._previous: dict[int, str] = {}  # vmid -> status of the last good cycle

    @classmethod
    def from_inventory(cls, cluster: Cluster, vms: Iterable[Vm], *, base_dir: Path | None = None) -> ProxmoxCollector:
        client = ProxmoxClient.for_cluster(cluster, base_dir=base_dir)
        return cls(client, expected_vmids=[vm.vmid for vm in vms if vm.cluster == cluster.name])

    def collect(self) -> ClusterObservation:
        """One cycle; never raises for a failure of the cluster: it becomes ``ok=False`` with its class."""
        now = self._clock()
        started = time.monotonic()
        calls_before = self.client.calls
        try:
            resources = self.client.get("cluster", "resources")
            status = self.client.get("cluster", "status")
            observation = parse.observe(
                self.cluster, now, resources, status,
                guests_seen_before=len(self._previous), guests_expected=len(self.expected_vmids),
            )
            if observation.ok:
                observation = self._refine_changed(observation)
        except CollectorError as exc:
            observation = ClusterObservation(
                cluster=self.cluster, at=now, ok=False, failure=FailureClass(exc.failure), detail=str(exc),
            )
        if observation.ok:
            self._previous = {g.vmid: g.status for g in observation.guests}
        return replace(observation, api_calls=self.client.calls - calls_before, duration_s=time.monotonic() - started)

    def _refine_changed(self, observation: ClusterObservation) -> ClusterObservation:
        online = {n.node for n in observation.nodes if n.online}
        changed = [g for g in parse.changed_guests(observation.guests, self._previous) if g.node in online]
        if not changed:
            return observation
        refined: dict[int, GuestObservation] = {}
        for guest in changed[: self.max_targeted]:
            try:
                data = self.client.get("nodes", guest.node, guest.type, guest.vmid, "status", "current")
                refined[guest.vmid] = parse.with_current_status(guest, data)
            except CollectorError:
                # The fleet-wide answer already holds this guest; a failed refinement loses only detail.
                continue
        return replace(observation, guests=tuple(refined.get(g.vmid, g) for g in observation.guests))

    def close(self) -> None:
        self.client.close()

