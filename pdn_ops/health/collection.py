"""The real collectors behind the scheduler's ``CollectorFactory`` seam (``pdn_ops.health.jobs``).

Collector classes come from the one plug-in table, ``pdn_ops.core.registry``, imported on a job's first run, in the
job's own thread. Clients are built then too, so a missing secret or a bad key file becomes a recorded job
failure (``job_runs``, ``pdn_collector_last_run_success``), never a service that refuses to start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from pathlib import Path
from typing import Any

from pdn_ops.core.db.tables import utcnow
from pdn_ops.core.errors import ConfigError
from pdn_ops.core.inventory import Cluster, Inventory, Site, Vm
from pdn_ops.core.registry import collector_class
from pdn_ops.core.settings import Settings
from pdn_ops.health.observations import ClusterObservation, FailureClass, SiteCheck, SshObservation

SSH_CONCURRENCY = 16  # one thread per connection: paramiko blocks
# SSH connections kept open between checks (bench/ssh_scale.py: a check on a kept connection costs about a third of
# one that connects), at most this many per process, each re-made (host key and client key verified again) every
# SSH_KEPT_USES checks and at least every SSH_KEPT_MAX_AGE_S seconds: a revoked key is seen within 4 checks.
SSH_KEPT_LIMIT = 2000
SSH_KEPT_USES = 4
SSH_KEPT_MAX_AGE_S = 600.0


class InventoryCollectorFactory:
    def __init__(self, inventory: Inventory, *, base_dir: Path | None = None, site_ca_file: str | None = None,
                 site_concurrency: int = 100, ssh_concurrency: int = SSH_CONCURRENCY,
                 ssh_kept_limit: int = SSH_KEPT_LIMIT) -> None:
        self._inventory = inventory
        self._base_dir = base_dir
        self._site_ca_file = site_ca_file
        self._site_concurrency = site_concurrency
        self._ssh_concurrency = ssh_concurrency
        self._kept: list[Any] = []  # Proxmox collectors keep an HTTPS session between cycles
        # One SSH collector per guest, shared by the jobs that check it (regular and fast lane), and the bound on
        # the connections they keep open (built on the first SSH check, with the collector's module).
        self._ssh_collectors: dict[str, Any] = {}
        self._ssh_kept_limit = ssh_kept_limit
        self._ssh_kept: Any = None
        self._ssh_lock = threading.Lock()

    def close(self) -> None:
        """Close the kept Proxmox sessions and SSH connections (at shutdown, once the scheduler has stopped)."""
        for collector in self._kept:
            collector.close()
        self._kept.clear()
        if self._ssh_kept is not None:
            self._ssh_kept.close_all()

    def proxmox(self, cluster: Cluster) -> Callable[[], ClusterObservation]:
        built: list[Any] = []  # the collector keeps state between cycles (which guests changed)

        def collect() -> ClusterObservation:
            if not built:
                cls: Any = collector_class("proxmox")
                try:
                    built.append(cls.from_inventory(cluster, self._inventory.vms, base_dir=self._base_dir))
                    self._kept.append(built[0])
                except ConfigError as exc:  # unreadable token or CA file: the cluster shows why, others go on
                    return ClusterObservation(cluster=cluster.name, at=utcnow(), ok=False,
                                              failure=FailureClass.ERROR, detail=str(exc))
            observation: ClusterObservation = built[0].collect()
            return observation

        return collect

    def sites(self, sites: Sequence[Site]) -> Callable[[], Sequence[SiteCheck]]:
        def collect() -> Sequence[SiteCheck]:
            # The site collector is asynchronous: its module's run_cycle owns one event loop per cycle.
            module = import_module(collector_class("http").__module__)
            checks: list[SiteCheck] = module.run_cycle(sites, ca_file=self._site_ca_file,
                                                       concurrency=self._site_concurrency)
            return checks

        return collect

    def _ssh_collector(self, vm: Vm) -> Any:
        with self._ssh_lock:
            collector = self._ssh_collectors.get(vm.key)
            if collector is None:
                cls: Any = collector_class("ssh")
                if self._ssh_kept is None and self._ssh_kept_limit > 0:
                    self._ssh_kept = cls.kept_connections(limit=self._ssh_kept_limit, max_age=SSH_KEPT_MAX_AGE_S,
                                                         max_uses=SSH_KEPT_USES)
                collector = cls.from_inventory(vm, base_dir=self._base_dir, kept=self._ssh_kept)
                self._ssh_collectors[vm.key] = collector
            return collector

    def ssh(self, vms: Sequence[Vm]) -> Callable[[], Sequence[SshObservation]]:
        def one(vm: Vm) -> SshObservation:
            try:
                collector = self._ssh_collector(vm)
                observation: SshObservation = collector.collect()
                return observation
            except ConfigError as exc:  # e.g. the key file is missing: this guest fails, the others are checked
                return SshObservation(cluster=vm.cluster, vmid=vm.vmid, at=utcnow(), ok=False,
                                      failure=FailureClass.ERROR, detail=str(exc))

        def collect() -> Sequence[SshObservation]:
            if not vms:
                return []
            with ThreadPoolExecutor(max_workers=min(self._ssh_concurrency, len(vms)),
                                    thread_name_prefix="pdn-ops-ssh") as pool:
                return list(pool.map(one, vms))

        return collect


def inventory_collectors(inventory: Inventory | None, settings: Settings, *,
                         site_ca_file: str | None = None) -> InventoryCollectorFactory | None:
    """The real collectors for the app's inventory (the scheduler's collector factory).

    Secrets and key files are resolved relative to the inventory file; ``site_ca_file`` (the demo passes the lab's
    CA) adds a CA for the sites' certificates, otherwise the system's CAs verify them.
    """
    if inventory is None:
        return None
    return InventoryCollectorFactory(inventory, base_dir=Path(settings.inventory).resolve().parent,
                                     site_ca_file=site_ca_file)
