"""The scheduler's collector factory (``pdn_ops.scheduler.jobs.CollectorFactory``) over collectors/<kind>.

    factory = InventoryCollectors(inventory, base_dir=inventory_path.parent, site_ca_file=...)
    create_app(settings, start_hooks=[..., scheduler_hook(factory)])

Each method returns a plain callable the scheduler runs in its job thread. Classes come from the plug-in
registry (imported on first use). A cluster's collector is built once and kept, so it remembers the guests of
its last good cycle (the empty-answer anomaly) and keeps its HTTPS session. A configuration problem found only
at run time (a secret file that cannot be read) becomes a failed observation, never an exception that would
stop the job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pdn_ops import registry
from pdn_ops.domain.observations import ClusterObservation, FailureClass, SiteCheck, SshObservation
from pdn_ops.errors import ConfigError
from pdn_ops.inventory import Cluster, Inventory, Site, Vm


class InventoryCollectors:
    def __init__(
        self,
        inventory: Inventory,
        *,
        base_dir: Path | None = None,
        site_ca_file: str | None = None,
        site_concurrency: int = 100,
        ssh_workers: int = 8,
    ) -> None:
        self.inventory = inventory
        self.base_dir = base_dir
        self.site_ca_file = site_ca_file
        self.site_concurrency = site_concurrency
        self.ssh_workers = ssh_workers
        self._built: list[Any] = []  # Proxmox collectors, closed by close()

    def close(self) -> None:
        """Close the kept Proxmox sessions (at shutdown, after the scheduler stopped)."""
        for collector in self._built:
            collector.close()
        self._built.clear()

    def proxmox(self, cluster: Cluster) -> Callable[[], ClusterObservation]:
        lock = threading.Lock()
        built: list[Any] = []
        vms = [vm for vm in self.inventory.vms if vm.cluster == cluster.name]

        def collect() -> ClusterObservation:
            with lock:  # max_instances=1 already; the lock keeps the lazily built collector single too
                if not built:
                    try:
                        cls = registry.collector_class("proxmox")
                        built.append(cls.from_inventory(cluster, vms, base_dir=self.base_dir))
                        self._built.append(built[0])
                    except ConfigError as exc:
                        return ClusterObservation(cluster=cluster.name, at=datetime.now(UTC), ok=False,
                                                  failure=FailureClass.ERROR, detail=str(exc))
                observation: ClusterObservation = built[0].collect()
                return observation

        return collect

    def sites(self, sites: Sequence[Site]) -> Callable[[], Sequence[SiteCheck]]:
        chosen = list(sites)

        def collect() -> Sequence[SiteCheck]:
            from collectors.http.collector import run_cycle

            return run_cycle(chosen, ca_file=self.site_ca_file, concurrency=self.site_concurrency)

        return collect

    def ssh(self, vms: Sequence[Vm]) -> Callable[[], Sequence[SshObservation]]:
        chosen = [vm for vm in vms if vm.ssh is not None]

        def one(vm: Vm) -> SshObservation:
            try:
                collector = registry.collector_class("ssh").from_inventory(vm, base_dir=self.base_dir)
            except ConfigError as exc:
                return SshObservation(cluster=vm.cluster, vmid=vm.vmid, at=datetime.now(UTC), ok=False,
                                      failure=FailureClass.ERROR, detail=str(exc))
            observation: SshObservation = collector.collect()
            return observation

        def collect() -> Sequence[SshObservation]:
            if not chosen:
                return []
            # Each check is bounded by its own timeouts; the pool bounds how many guests are asked at once.
            with ThreadPoolExecutor(max_workers=min(self.ssh_workers, len(chosen)),
                                    thread_name_prefix="pdn-ssh") as pool:
                return list(pool.map(one, chosen))

        return collect
