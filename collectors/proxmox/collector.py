"""One Proxmox cluster per collector: two fleet-wide calls per cycle, a few targeted ones only for changes.

The cost of a cycle does not grow with the number of guests: ``/cluster/resources`` and ``/cluster/status``
cover the whole cluster; ``status/current`` is asked only for guests whose status changed since the previous
good cycle, and at most ``max_targeted`` of them.

Disk usage of QEMU guests (Proxmox reports 0 without the guest agent) comes from ``agent/get-fsinfo``, for running
guests of the inventory only, at most ``max_agent`` calls per cycle (the least recently asked first: a small
fleet is asked every cycle, a large one in turns), an answer kept at least ``agent_ttl_s``; a guest without an
agent (PVE's 500 "No QEMU guest agent configured" / "not running") is asked again only after ``agent_retry_s``.
Guests without an agent get their disk from the SSH collector's df.

With ``watch_nodes``, one ``/nodes/{node}/status`` per online node gives its pressure (memory, swap, load, KSM, root
filesystem). With ``watch_thin_pools``, ``/storage`` and one ``disks/lvmthin`` per node with an lvmthin storage give
the pools' data and metadata use. Storages come from the same ``/cluster/resources`` answer (no call). With
``watch_backups``, a cycle adds ``/cluster/tasks``, ``/cluster/backup`` and one backup listing per backup storage
(collectors/proxmox/backups.py), plus the log of each newly finished failed vzdump task (at most ``max_task_logs``
per cycle; a finished task's log never changes, so it is read once). None of these grows with the number of guests.

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

from collectors.proxmox import backups, locks, parse
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
        max_agent: int = 20,
        agent_ttl_s: float = 0.0,
        agent_retry_s: float = 900.0,
        clock: Callable[[], datetime] = _utcnow,
        watch_backups: bool = False,
        max_task_logs: int = 10,
        watch_nodes: bool = False,
        watch_thin_pools: bool = False,
        max_io_checks: int = 10,
        io_check_ratio: float = 0.95,
    ) -> None:
        self.client = client
        self.cluster = client.name
        self.expected_vmids = frozenset(expected_vmids)
        self.max_targeted = max_targeted
        self._clock = clock
        self._previous: dict[int, str] = {}  # vmid -> status of the last good cycle
        self.max_agent = max_agent
        self.agent_ttl_s = agent_ttl_s
        self.agent_retry_s = agent_retry_s
        # vmid -> (monotonic time asked, (used, total) or None when the guest has no answering agent)
        self._agent: dict[int, tuple[float, tuple[int, int] | None]] = {}
        self.watch_backups = watch_backups
        self.watch_nodes = watch_nodes
        self.max_task_logs = max_task_logs
        # UPID of a finished, failed vzdump task -> (its end, its storage, the guests whose part failed)
        self._failed_tasks: dict[str, tuple[datetime, str | None, dict[int, str]]] = {}
        # (storage, node) -> its last backup listing: a storage that cannot be listed (offline) has its own alert;
        # its backups are not forgotten for that (they would all look too old).
        self._listings: dict[tuple[str, str], list[dict[str, object]]] = {}
        self.watch_thin_pools = watch_thin_pools
        self.max_io_checks = max_io_checks
        self.io_check_ratio = io_check_ratio
        # vmid -> monotonic time its status/current was last asked because a storage of its node is (almost) full
        self._io_asked: dict[int, float] = {}
        # vmid -> the storages of its disks, for guests last seen in io-error (kept until they leave it)
        self._io_error: dict[int, tuple[str, ...]] = {}
        # vmid -> (its lock, when the collector first saw no running task holding it)
        self._lock_free: dict[int, tuple[str, datetime]] = {}

    @classmethod
    def from_inventory(cls, cluster: Cluster, vms: Iterable[Vm], *, base_dir: Path | None = None) -> ProxmoxCollector:
        client = ProxmoxClient.for_cluster(cluster, base_dir=base_dir)
        return cls(client, expected_vmids=[vm.vmid for vm in vms if vm.cluster == cluster.name],
                   watch_backups=cluster.backups, watch_nodes=cluster.node_status,
                   watch_thin_pools=cluster.thin_pools)

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
                observation = replace(observation, storages=backups.storages(resources))
                observation = self._refine_changed(observation)
                observation = self._with_agent_disks(observation)
                if self.watch_thin_pools:  # first: a pool whose metadata is full freezes its VMs too
                    observation = self._with_thin_pools(observation)
                observation = self._with_io_errors(observation)
                tasks = self._tasks() if self.watch_backups or any(g.lock for g in observation.guests) else None
                observation = self._with_locks(observation, tasks)
                if self.watch_backups:
                    observation = self._with_backups(observation, tasks)
                if self.watch_nodes:
                    observation = self._with_node_pressure(observation)
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

    def _with_agent_disks(self, observation: ClusterObservation) -> ClusterObservation:
        online = {n.node for n in observation.nodes if n.online}
        running = [g for g in observation.guests if g.type == "qemu" and g.status == "running" and g.node in online
                   and (not self.expected_vmids or g.vmid in self.expected_vmids)]
        now = time.monotonic()

        def due(guest: GuestObservation) -> bool:
            asked = self._agent.get(guest.vmid)
            if asked is None:
                return True
            return now - asked[0] >= (self.agent_ttl_s if asked[1] is not None else self.agent_retry_s)

        for guest in sorted((g for g in running if due(g)), key=lambda g: self._agent.get(g.vmid, (0.0, None))[0])[
                : self.max_agent]:
            try:
                data = self.client.get("nodes", guest.node, "qemu", guest.vmid, "agent", "get-fsinfo")
                self._agent[guest.vmid] = (now, parse.filesystems(data))
            except CollectorError as exc:
                if exc.failure in (FailureClass.AUTH.value, FailureClass.SERVER_ERROR.value,
                                   FailureClass.PROTOCOL.value):
                    self._agent[guest.vmid] = (now, None)  # no agent, not allowed, or nonsense: ask again later
                # a timeout or a dropped connection says nothing about the agent: asked again next cycle
        running_ids = {g.vmid for g in running}
        guests = []
        for guest in observation.guests:
            known = self._agent.get(guest.vmid)
            disks = known[1] if known is not None and guest.vmid in running_ids else None
            guests.append(replace(guest, fs_used=disks[0], fs_total=disks[1]) if disks is not None else guest)
        return replace(observation, guests=tuple(guests))

    def _with_node_pressure(self, observation: ClusterObservation) -> ClusterObservation:
        """One ``/nodes/{node}/status`` per online node (a failed one loses only that node's pressure)."""
        nodes = []
        for node in observation.nodes:
            if node.online:
                try:
                    node = replace(node, pressure=parse.node_pressure(
                        self.client.get("nodes", node.node, "status"), node.node))
                except CollectorError:
                    nodes.append(node)  # only this node's pressure is lost this cycle
                    continue
            nodes.append(node)
        return replace(observation, nodes=tuple(nodes))

    def _with_thin_pools(self, observation: ClusterObservation) -> ClusterObservation:
        """Data and metadata use of the available lvmthin storages: ``/storage`` names each one's pool, one
        ``disks/lvmthin`` per node that has one gives the use (a failed call loses only those figures)."""
        thin = [s for s in observation.storages if s.plugintype == "lvmthin" and s.available]
        if not thin:
            return observation
        try:
            names = parse.thin_pool_names(self.client.get("storage"))
        except CollectorError:
            return observation
        found: dict[str, dict[tuple[str, str], tuple[float, float]]] = {}
        for node in sorted({s.node for s in thin if s.storage in names}):
            try:
                found[node] = parse.thin_pools(self.client.get("nodes", node, "disks", "lvmthin"), node)
            except CollectorError:
                continue
        storages = []
        for store in observation.storages:
            use = found.get(store.node, {}).get(names.get(store.storage, ("", "")))
            storages.append(replace(store, thin_data=use[0], thin_metadata=use[1]) if use is not None else store)
        return replace(observation, storages=tuple(storages))

    def _tasks(self) -> list[dict[str, object]] | None:
        """``/cluster/tasks`` (one call for backups and locks alike); None when it cannot be read."""
        try:
            tasks = self.client.get("cluster", "tasks")
        except CollectorError:
            return None
        return [t for t in tasks if isinstance(t, dict)] if isinstance(tasks, list) else None

    def _with_io_errors(self, observation: ClusterObservation) -> ClusterObservation:
        """QEMU pauses a guest whose disk write fails (``qmpstatus: io-error``) while ``/cluster/resources`` still
        says running: the running QEMU guests of nodes with an image storage at ``io_check_ratio`` or more are
        asked ``status/current``, at most ``max_io_checks`` per cycle (those last seen in io-error first, then the
        least recently asked), and a guest found in io-error has its config read once for its disks' storages.
        No storage that full: no call."""
        nodes = {s.node for s in observation.storages
                 if s.available and s.fill >= self.io_check_ratio
                 and {"images", "rootdir"} & set(s.content)}
        online = {n.node for n in observation.nodes if n.online}
        suspects = [g for g in observation.guests if g.type == "qemu" and g.status == "running" and g.node in online
                    and (g.node in nodes or g.vmid in self._io_error)
                    and (not self.expected_vmids or g.vmid in self.expected_vmids)]
        live = {g.vmid for g in suspects}
        self._io_error = {k: v for k, v in self._io_error.items() if k in live}
        self._io_asked = {k: v for k, v in self._io_asked.items() if k in live}
        if not suspects:
            return observation
        now = time.monotonic()
        order = sorted(suspects, key=lambda g: (g.vmid not in self._io_error, self._io_asked.get(g.vmid, 0.0)))
        refined: dict[int, GuestObservation] = {}
        for guest in order[: self.max_io_checks]:
            try:
                current = guest if guest.qmpstatus is not None else parse.with_current_status(
                    guest, self.client.get("nodes", guest.node, "qemu", guest.vmid, "status", "current"))
                self._io_asked[guest.vmid] = now
                if current.qmpstatus != "io-error":
                    self._io_error.pop(guest.vmid, None)
                    refined[guest.vmid] = current
                    continue
                if guest.vmid not in self._io_error:
                    self._io_error[guest.vmid] = parse.disk_storages(
                        self.client.get("nodes", guest.node, "qemu", guest.vmid, "config"), guest.vmid)
                refined[guest.vmid] = replace(current, disk_storages=self._io_error[guest.vmid])
            except CollectorError:
                continue  # only this guest's refinement is lost this cycle
        # A guest in io-error not asked this cycle (over the bound) keeps what was last seen.
        for guest in suspects:
            if guest.vmid not in refined and guest.vmid in self._io_error:
                refined[guest.vmid] = replace(guest, qmpstatus="io-error", disk_storages=self._io_error[guest.vmid])
        return replace(observation, guests=tuple(refined.get(g.vmid, g) for g in observation.guests))

    def _with_locks(self, observation: ClusterObservation, tasks: list[dict[str, object]] | None) -> ClusterObservation:
        """How long each locked guest's lock has been held by no running task (``locks``); unknown tasks keep what
        was known (a lock seen free stays free, a new one is not judged)."""
        now = observation.at
        active = locks.running(tasks) if tasks is not None else None
        free: dict[int, tuple[str, datetime]] = {}
        guests = []
        for guest in observation.guests:
            known = self._lock_free.get(guest.vmid)
            if guest.lock and active is not None:
                if locks.held(guest.lock, guest.vmid, guest.node, active):
                    known = None
                elif known is None or known[0] != guest.lock:
                    known = (guest.lock, now)
            elif not guest.lock or (known is not None and known[0] != guest.lock):
                known = None
            if known is not None:
                free[guest.vmid] = known
                guest = replace(guest, lock_free_s=max((now - known[1]).total_seconds(), 0.0))
            guests.append(guest)
        self._lock_free = free
        return replace(observation, guests=tuple(guests))

    def _with_backups(self, observation: ClusterObservation, tasks: list[dict[str, object]] | None) -> (
            ClusterObservation):
        """Per guest: newest backup, newest failure, covering jobs. A storage whose listing fails is marked
        unavailable; when the task list or the jobs cannot be read, backups stay unknown (None) this cycle."""
        if tasks is None:
            return observation
        try:
            jobs = self.client.get("cluster", "backup")
        except CollectorError:
            return observation
        if not isinstance(jobs, list):
            return observation
        volumes: list[tuple[str, dict[str, object]]] = []
        unreachable: set[tuple[str, str]] = set()
        listed = backups.backup_listings(observation.storages)
        for store in listed:
            key = (store.storage, store.node)
            try:
                entries = self.client.get("nodes", store.node, "storage", store.storage, "content", content="backup")
                self._listings[key] = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
            except CollectorError:
                unreachable.add(key)
        offline = {(s.storage, s.node) for s in observation.storages if "backup" in s.content and not s.available}
        self._listings = {k: v for k, v in self._listings.items()
                          if k in unreachable or k in offline or k in {(s.storage, s.node) for s in listed}}
        for (storage, _node), entries in sorted(self._listings.items()):
            volumes.extend((storage, e) for e in entries)
        storages = tuple(replace(s, available=False) if (s.storage, s.node) in unreachable else s
                         for s in observation.storages)
        finished = backups.finished_vzdump(t for t in tasks if isinstance(t, dict))
        fetched = 0
        for task in finished:
            upid = str(task["upid"])
            if task.get("status") == "OK" or upid in self._failed_tasks:
                continue
            if fetched >= self.max_task_logs:
                break
            fetched += 1
            try:
                log = self.client.get("nodes", str(task.get("node")), "tasks", upid, "log", limit=5000)
            except CollectorError:
                continue
            lines = [str(line.get("t", "")) for line in log if isinstance(line, dict)] if isinstance(log, list) else []
            end = task.get("endtime") or task.get("starttime") or 0
            at = datetime.fromtimestamp(int(end) if isinstance(end, int | float | str) and str(end).isdigit()
                                        else 0, UTC)
            self._failed_tasks[upid] = (at, backups.task_storage(lines), backups.failed_parts(task, lines))
        upids = {str(t["upid"]) for t in finished}
        self._failed_tasks = {u: v for u, v in self._failed_tasks.items() if u in upids}
        vmids = [g.vmid for g in observation.guests if not g.template]
        found = backups.per_guest(vmids, volumes, self._failed_tasks.values(), backups.coverage(jobs, vmids))
        return replace(observation, storages=storages, backups=found)

    def close(self) -> None:
        self.client.close()

