"""The lab's Proxmox VE API: fakepve's FakePve with the gaps our clients hit filled in.

fakepve is the engine; this subclass only adds or corrects behaviour, through fakepve's own extension points
(a ``_routes_lab`` table of schema-checked handlers, and overrides of its hook methods). Every gap is listed in
pdn_ops/lab/README.md with the Proxmox behaviour it follows (shared/reference/PVE-API-NOTES.md).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from fakepve import FakePve, PveError, TaskError
from fakepve import agent as guest_agent
from fakepve.lxc import SIZE_UNITS, format_size
from fakepve.model import DRIVE_PREFIXES, FakeVm
from fakepve.qemu import is_cdrom, join_drive, split_drive, volume_ref, with_mac
from fakepve.routing import die, param_error
from fakepve.schema import load as schema_load
from fakepve.schema import validate as schema_validate
from fakepve.server import API, USER, error, ok, params

GiB = 1024**3

SIZE = re.compile(r"^(\+)?(\d+(?:\.\d+)?)([KMGT])?\Z")
# Keys that change a running VM at once whatever `hotplug` says (qemu-server vmconfig_hotplug_pending).
ALWAYS_LIVE = ("balloon", "cpulimit", "cpuunits", "shares")
DISK_KEY = re.compile(r"^(ide|sata|scsi|virtio)\d+\Z")
IGNORED_PARAMS = ("_dc",)
CLUSTER_TASKS = 50
SIZE_VALUE = re.compile(r"(\d+(?:\.\d+)?)([KMGT])?")
DRIVE_SIZE = re.compile(r"(?:^|,)size=(\d+(?:\.\d+)?[KMGT]?)(?:,|$)")
# What the request that is starting a task is about (a snapshot's name): set by a lab route around fakepve's
# handler, read when the handler creates its task (same coroutine, so concurrent requests never mix them up).
_TASK_SUBJECT: ContextVar[dict[str, str] | None] = ContextVar("lab_task_subject", default=None)
# What PVE's HTTP server sends with every JSON answer (PVE::APIServer::Formatter::Standard); aiohttp's own is
# "application/json; charset=utf-8".
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
CONFIG_PATH = "/nodes/{node}/qemu/{vmid}/config"


def hotplug_set(config: dict[str, Any]) -> set[str]:
    """The VM's `hotplug` option as a set; PVE's default is network,disk,usb; 0 turns it off, 1 is the default."""
    raw = str(config.get("hotplug", "network,disk,usb")).strip()
    if raw in ("0", ""):
        return set()
    if raw == "1":
        return {"network", "disk", "usb"}
    return {item for item in re.split(r"[,;\s]+", raw) if item}


def live_keys(config: dict[str, Any], keys: list[str]) -> list[str]:
    """Which pending keys PVE applies to a running VM at once (PVE-API-NOTES section 5)."""
    plug = hotplug_set(config)
    numa = str(config.get("numa", "0")) == "1"
    rules = (
        lambda key: key in ALWAYS_LIVE,
        lambda key: key == "vcpus" and "cpu" in plug,
        lambda key: key == "memory" and "memory" in plug and numa,
        lambda key: re.fullmatch(r"net\d+", key) is not None and "network" in plug,
        lambda key: DISK_KEY.match(key) is not None and "disk" in plug,
        lambda key: re.fullmatch(r"usb\d+", key) is not None and "usb" in plug,
    )
    return [key for key in keys if any(rule(key) for rule in rules)]


class LabPve(FakePve):
    """FakePve plus: disk resize, 400 on unknown parameters everywhere, live hotplug, an empty replication list."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Called (vmid) after every change of a VM's power or disk; the lab uses it to wake its reconciler.
        self.on_change: list[Any] = []
        # What /nodes shows as ssl_fingerprint: the certificate the API really serves (set by the lab).
        self.ssl_fingerprint = ""
        # Called (vmid, snapshot name) when a snapshot task succeeded, and (vmid, name, with RAM) when a
        # rollback did: the lab keeps each guest's state with the snapshot and puts it back on rollback.
        self.on_snapshot: list[Callable[[int, str], None]] = []
        self.on_rollback: list[Callable[[int, str, bool], None]] = []
        # The guest agent's answer to get-fsinfo for a VM (QEMU GA GuestFilesystemInfo list), or None while the
        # agent does not answer (the guest is not booted): set by the lab, which owns the guests' disks.
        self.agent_fsinfo: Callable[[int], list[dict[str, Any]] | None] = lambda vmid: None
        # vzdump jobs as /cluster/backup lists them (storage.cfg's jobs.cfg): id -> job.
        self.backup_jobs: dict[str, dict[str, Any]] = {}
        # vmid -> why its backups fail (fault backup_fails): the VM's part of a vzdump task ends in ERROR.
        self.backup_errors: dict[int, str] = {}
        # storage -> (fill in bytes at `since`, growth in bytes per PVE second, since): space used outside the
        # listed volumes (fault fill_storage), so the usage grows with time as a filling pool does.
        self.storage_fill: dict[str, tuple[int, float, float]] = {}
        # node -> its pressure (fault node_pressure): memory and swap used ratios, load per CPU, KSM bytes.
        self.node_pressure: dict[str, dict[str, float]] = {}
        # storage -> the nodes where it is offline (fault storage_offline with a node): a mount lost on one node.
        self.storage_offline: dict[str, set[str]] = {}
        # PVE seconds a vzdump takes per VM, a migration, a restore.
        self.backup_secs = 2.0
        self.migrate_secs = 4.0
        self.restore_secs = 4.0
        # volid -> the VM's config when the backup was taken (what a vzdump archive carries as qemu-server.conf).
        self.backup_configs: dict[str, dict[str, Any]] = {}
        # Called (vmid, volid) when a VM's backup succeeded, and when a VM was restored from one: the lab keeps
        # the guest's disk with the backup and puts it back on restore, as for snapshots.
        self.on_backup: list[Callable[[int, str], None]] = []
        self.on_restore: list[Callable[[int, str], None]] = []

    # ------------------------------------------------------------ answers
    def _build_app(self) -> Any:
        app = super()._build_app()
        app.on_response_prepare.append(_pve_content_type)
        return app

    # ------------------------------------------------------------ routes
    def _routes_lab(self) -> list[tuple[str, str, Any]]:
        return [
            ("PUT", "/nodes/{node}/qemu/{vmid}/resize", self._lab_resize),
            ("GET", "/nodes/{node}/replication", self._lab_replication_list),
            ("GET", "/cluster/backup-info/not-backed-up", self._lab_not_backed_up),
            ("GET", "/nodes/{node}/status", self._lab_node_status),
            ("GET", "/cluster/tasks", self._lab_cluster_tasks),
            ("GET", "/cluster/backup", self._lab_backup_jobs),
            ("POST", "/nodes/{node}/vzdump", self._lab_vzdump),
            ("POST", "/nodes/{node}/qemu/{vmid}/snapshot", self._lab_snapshot),
            ("POST", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback", self._lab_rollback),
            ("GET", "/nodes/{node}/qemu/{vmid}/migrate", self._lab_migrate_check),
            ("POST", "/nodes/{node}/qemu/{vmid}/migrate", self._lab_migrate),
            ("POST", "/nodes/{node}/qemu", self._lab_create),
        ]

    async def _agent_call(self, match: Any, values: dict[str, Any]) -> Any:
        """fakepve's guest agent, with get-fsinfo answered from the guest's real disk state (the lab's
        ``agent_fsinfo``) and PVE's messages for a VM that is not running or has no agent in its config."""
        command = match.template.rsplit("/", 1)[1]
        if command != "get-fsinfo":
            return await super()._agent_call(match, values)
        vm = self.find(values["node"], values["vmid"])
        if vm.status != "running":
            raise PveError(500, f"VM {vm.vmid} is not running")
        if not _truthy(str(vm.config.get("agent", "0")).split(",")[0].removeprefix("enabled=")):
            raise PveError(500, "No QEMU guest agent configured")
        filesystems = self.agent_fsinfo(int(vm.vmid))
        if filesystems is None or vm.agent is None:
            raise PveError(500, "QEMU guest agent is not running")
        guest_agent.record(vm, command, values)
        return {"result": filesystems}

    async def _lab_snapshot(self, values: dict[str, Any], user: str) -> Any:
        """fakepve's snapshot, and the guest's state (disk, and RAM with vmstate) kept with it by the lab."""
        token = _TASK_SUBJECT.set({"snapshot": str(values["snapname"])})
        try:
            return await self._qm_snapshot(values, user)
        finally:
            _TASK_SUBJECT.reset(token)

    async def _lab_rollback(self, values: dict[str, Any], user: str) -> Any:
        """fakepve's rollback, plus PVE's start from the snapshot's RAM state and the guest's state put back."""
        token = _TASK_SUBJECT.set({"rollback": str(values["snapname"])})
        try:
            return await self._qm_rollback(values, user)
        finally:
            _TASK_SUBJECT.reset(token)

    async def _lab_cluster_tasks(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
        """The cluster's recent tasks, newest first, as the node lists show them (fakepve invents a sample)."""
        # Newest first; within one second the later task first (the log is in start order).
        rows = [self._task_view(task, True) for task in reversed(self.tasklog)
                if self._task_owner(user, task) or self.allowed(user, "/nodes/" + task["node"], "Sys.Audit")]
        rows.sort(key=lambda t: -t["starttime"])
        return rows[:CLUSTER_TASKS]

    async def _lab_not_backed_up(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
        # Guests no enabled job covers (fakepve invents one sample entry).
        covered = self.covered_vmids()
        return [{"type": "qemu", "vmid": vm.vmid, "name": vm.name} for vm in sorted(self.vms, key=lambda v: v.vmid)
                if vm.vmid not in covered and self.allowed(user, f"/vms/{vm.vmid}", "VM.Audit")]

    def covered_vmids(self) -> set[int]:
        """VMIDs an enabled backup job includes (``all`` minus ``exclude``, or its ``vmid`` list)."""
        covered: set[int] = set()
        every = {int(vm.vmid) for vm in self.vms}
        for job in self.backup_jobs.values():
            if not _truthy(job.get("enabled", 1)):
                continue
            if _truthy(job.get("all", 0)):
                covered |= every - {int(v) for v in _split(job.get("exclude"))}
            else:
                covered |= {int(v) for v in _split(job.get("vmid"))}
        return covered

    async def _lab_backup_jobs(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
        """GET /cluster/backup: the configured vzdump jobs (``type: vzdump``, as PVE >= 7.2 lists them)."""
        if not self.allowed(user, "/", "Sys.Audit"):
            raise PveError(403, "Permission check failed (/, Sys.Audit)")
        return [dict(job, id=job_id, type="vzdump") for job_id, job in sorted(self.backup_jobs.items())]

    async def _lab_vzdump(self, values: dict[str, Any], user: str) -> str:
        """POST /nodes/{node}/vzdump: one task for the listed guests of this node (``id`` the VMID when there is
        one, empty otherwise, as PVE names it), a backup volume per guest on ``storage``. A guest whose backup
        fails (fault backup_fails, a full or offline storage) gets vzdump's ERROR line and the task ends with
        "job errors"; the others are still backed up."""
        node = str(values["node"])
        storage = str(values.get("storage") or "local")
        if storage not in self.storages:
            raise die(f"storage '{storage}' does not exist")
        if "backup" not in _split(self.storages[storage].get("content")):
            raise die(f"storage '{storage}' does not support backups")
        if _truthy(values.get("all")):
            excluded = {int(v) for v in _split(values.get("exclude"))}
            vms = [vm for vm in self.vms if vm.node == node and int(vm.vmid) not in excluded]
        else:
            wanted = [int(v) for v in _split(values.get("vmid"))]
            if not wanted:
                raise param_error(vmid="property is missing and it is not optional")
            vms = [self.find(node, vmid) for vmid in wanted]
        vms.sort(key=lambda vm: int(vm.vmid))
        job = values.get("job-id")
        head = f"INFO: starting new backup job: vzdump {' '.join(str(vm.vmid) for vm in vms)} --storage {storage}" \
               f" --mode {values.get('mode') or 'snapshot'} --compress {values.get('compress') or 'zstd'}" \
               f" --node {node}" + (f" --job-id {job}" if job else "")
        task_id = str(vms[0].vmid) if len(vms) == 1 else ""
        # The task's log: fakepve copies the first lines into its record; once the UPID is known the guests'
        # lines go straight there (so a running task's log grows as PVE's does), before that into `early`.
        holder: list[str] = []
        early: list[str] = []

        def write(line: str) -> None:
            (self.tasks[holder[0]]["log"] if holder else early).append(line)

        async def body() -> str:
            failed = [vm.vmid for vm in vms if not await self._lab_backup_one(vm, storage, job, write)]
            if failed:
                write("INFO: Backup job finished with errors")
                raise TaskError("job errors")
            return "INFO: Backup job finished successfully"

        upid: str = await self.task(node, "vzdump", task_id, user, body, lock=False, log=[head])
        holder.append(upid)
        self.tasks[upid]["log"][1:1] = early
        return upid

    async def _lab_backup_one(self, vm: Any, storage: str, job: Any, write: Callable[[str], None]) -> bool:
        """One guest's part of a vzdump task; False when it failed (its ERROR line written)."""
        store = self.storages[storage]
        started = time.time()
        stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.localtime(started))
        volname = f"backup/vzdump-qemu-{vm.vmid}-{stamp}.vma.zst"
        write(f"INFO: Starting Backup of VM {vm.vmid} (qemu)")
        write(f"INFO: Backup started at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}")
        write(f"INFO: status = {vm.status}")
        write(f"INFO: VM Name: {vm.name}")
        size = max(_first_disk_bytes(vm) // 5, 1024**2)
        error = self.backup_errors.get(int(vm.vmid))
        if error is None and vm.lock:
            error = f"VM is locked ({vm.lock})"
        if error is None and (not store.get("active", 1) or vm.node in self.storage_offline.get(storage, ())):
            error = f"storage '{storage}' is not online"
        if error is None:
            write("INFO: backup mode: snapshot")
            write(f"INFO: creating vzdump archive '{self._volume_path(storage, volname, 'backup')}'")
            vm.lock = "backup"
            vm.config["lock"] = "backup"
            try:
                await self.pause(self.backup_secs)
            finally:
                vm.lock = None
                vm.config.pop("lock", None)
            if size > self._space(store)[2]:
                error = "vma_queue_write: write error - No space left on device"
        if error is not None:
            write(f"ERROR: Backup of VM {vm.vmid} failed - {error}")
            write(f"INFO: Failed at {time.strftime('%Y-%m-%d %H:%M:%S')}")
            return False
        store.setdefault("volumes", {})[volname] = {
            "content": "backup", "format": "vma.zst", "size": size, "vmid": int(vm.vmid), "ctime": int(started),
            "notes": f"{vm.name}" + (f" (job {job})" if job else ""),
        }
        volid = f"{storage}:{volname}"
        self.backup_configs[volid] = {k: v for k, v in vm.config.items() if k != "lock"}
        for callback in self.on_backup:
            callback(int(vm.vmid), volid)
        took = max(int(time.time() - started), 0)
        write(f"INFO: Finished Backup of VM {vm.vmid} ({took // 3600:02d}:{took // 60 % 60:02d}:{took % 60:02d})")
        write(f"INFO: Backup finished at {time.strftime('%Y-%m-%d %H:%M:%S')}")
        return True

    def _active_store(self, name: str, node: str) -> Any:
        """fakepve's check, and the storage offline on this one node (fault storage_offline node=)."""
        store = super()._active_store(name, node)
        if node in self.storage_offline.get(name, ()):
            raise die(f"storage '{name}' is not online")
        return store

    def _space(self, store: dict[str, Any]) -> tuple[int, int, int]:
        """fakepve's (total, used, avail), plus what fill_storage put there (growing with PVE time)."""
        total, used, avail = super()._space(store)
        name = next((n for n, s in self.storages.items() if s is store), None)
        if name is None or name not in self.storage_fill:
            return int(total), int(used), int(avail)
        fill, rate, since = self.storage_fill[name]
        elapsed = (time.time() - since) / self.time_scale if self.time_scale else 0.0
        extra = min(int(fill + rate * elapsed), max(int(total) - int(used), 0))
        return int(total), int(used) + extra, max(int(avail) - extra, 0)

    async def _lab_node_status(self, values: dict[str, Any], user: str) -> dict[str, Any]:
        """A node's status with plausible numbers (fakepve's sample has zeros and 'fake' strings)."""
        node = values["node"]
        if not self.nodes.get(node, {}).get("online", True):
            raise PveError(595, "No route to host")
        guests = sum(1 for vm in self.vms if vm.node == node and vm.status == "running")
        stats = self._node_stats(True)
        total, used = stats["maxmem"], stats["mem"]
        load = round(0.2 + 0.05 * guests, 2)
        swap_used, ksm = 0, 0
        pressure = self.node_pressure.get(node)
        if pressure:
            used = int(total * pressure["memory"])
            swap_used = int(8 * GiB * pressure["swap"])
            load = round(16 * pressure["load"], 2)
            ksm = int(pressure["ksm"])
            stats = dict(stats, cpu=min(pressure["load"], 1.0), mem=used)
        return {
            "cpu": stats["cpu"], "wait": 0.001, "uptime": stats["uptime"],
            "loadavg": [f"{load:.2f}", f"{load * 0.9:.2f}", f"{load * 0.8:.2f}"],
            "cpuinfo": {"cores": 8, "cpus": 16, "sockets": 1, "model": "Intel(R) Xeon(R) Silver 4314 CPU @ 2.40GHz",
                        "mhz": "2400.000", "hvm": "1", "user_hz": 100, "flags": "fpu vme de pse tsc msr pae"},
            "memory": {"total": total, "used": used, "free": total - used, "available": total - used},
            "swap": {"total": 8 * GiB, "used": swap_used, "free": 8 * GiB - swap_used},
            "rootfs": {"total": 100 * GiB, "used": 12 * GiB, "free": 88 * GiB, "avail": 83 * GiB},
            "ksm": {"shared": ksm},
            "kversion": "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z) x86_64",
            "current-kernel": {"sysname": "Linux", "release": "6.14.8-2-pve", "machine": "x86_64",
                               "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z)"},
            "boot-info": {"mode": "efi", "secureboot": 0},
            "pveversion": f"pve-manager/{self.version}/{'0' * 16}",
            "idle": 0,
        }

    def _node_stats(self, online: bool) -> dict[str, Any]:
        """A node as /nodes, /cluster/resources and the node status show it: a 16-CPU, 64 GiB host (fakepve's
        4 CPUs and 8 GiB leave no room for the lab's VMs to grow). Same numbers in every listing."""
        if not online:
            return {}
        return {"cpu": 0.06, "maxcpu": 16, "mem": 24 * GiB, "maxmem": 64 * GiB, "disk": 12 * GiB,
                "maxdisk": 100 * GiB, "uptime": 864000}

    def _storage_resource(self, node: str, name: str) -> dict[str, Any] | None:
        """fakepve reports every storage as an empty 100 GiB here, whatever its storage status says; the lab
        reports the same size and use as ``/nodes/{node}/storage`` (fakepve's own accounting of volumes)."""
        item: dict[str, Any] | None = super()._storage_resource(node, name)
        if item is not None and node in self.storage_offline.get(name, ()):
            item["status"] = "unknown"
        elif item is not None:
            total, used, _avail = self._space(self.storages[name])
            item.update(maxdisk=int(total), disk=int(used))
        return item

    async def _nodes(self, request: Any) -> Any:
        response = await super()._nodes(request)
        if not self.ssl_fingerprint:
            return response
        body = json.loads(response.text)
        for item in body["data"]:
            item["ssl_fingerprint"] = self.ssl_fingerprint
        return ok(body["data"])

    def check_password(self, user: str, password: Any) -> bool:
        """PVE also takes a valid, unexpired ticket of the same user as the password: that is how proxmoxer renews
        its ticket after an hour. fakepve knows only real passwords."""
        if super().check_password(user, password):
            return True
        session = self.tickets.get(str(password))
        return session is not None and session["user"] == user and session["expires"] > time.time()

    async def _config_get(self, request: Any) -> Any:
        """PVE returns the pending values by default, ``current=1`` the running ones, ``snapshot=`` a snapshot's."""
        response = await super()._config_get(request)
        p = await params(request)
        vm = self._vm(request)
        if p.get("snapshot"):
            snap = vm.snapshots.get(str(p["snapshot"]))
            if snap is None:
                return error(500, f"snapshot '{p['snapshot']}' does not exist")
            return ok(dict(snap, digest=vm.digest()))
        if _truthy(p.get("current")) or not vm.pending:
            return response
        config = json.loads(response.text)["data"]
        for key, value in vm.pending.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = str(value) if key == "memory" else value
        return ok(config)

    async def _task_list(self, request: Any) -> Any:
        """The node's tasks with PVE's filters (fakepve honours only vmid, start and limit).

        ``source=active``: running tasks only; ``all``: both; ``archive``, Proxmox's default: finished tasks only
        (fakepve lists both by default, which hid clients that look for a running task without ``source=all``)."""
        node = request.match_info["node"]
        user = request[USER]
        p = self._verify(request, await params(request))
        audit = self.allowed(user, "/nodes/" + node, "Sys.Audit")
        types = set(_split(p.get("typefilter")))
        statuses = {s.lower() for s in _split(p.get("statusfilter"))}
        source = p.get("source") or "archive"
        rows = []
        for task in self.tasklog:
            if task["node"] != node or not (audit or self._task_owner(user, task)):
                continue
            running = task["status"] == "running"
            kind = "running" if running else _status_type(str(task.get("exitstatus", "")))
            if (source == "active" and not running) or (source == "archive" and running):
                continue
            if p.get("vmid") is not None and task["id"] != str(p["vmid"]):
                continue
            if (types and task["type"] not in types) or (statuses and kind not in statuses):
                continue
            if _truthy(p.get("errors")) and kind in ("ok", "running"):
                continue
            if p.get("userfilter") and str(p["userfilter"]) not in task["user"]:
                continue
            if (p.get("since") is not None and task["starttime"] < int(p["since"])) or \
                    (p.get("until") is not None and task["starttime"] > int(p["until"])):
                continue
            rows.append(self._task_view(task, True))
        rows.sort(key=lambda t: -t["starttime"])
        start = int(p.get("start") or 0)
        return ok(rows[start:start + int(p.get("limit") or 50)])

    def _vm_usage(self, vm: Any) -> dict[str, Any]:
        """The usage fields of /cluster/resources, the VM list and status/current.

        fakepve reports the same constants for every VM; here CPU and memory differ per VM and the byte counters
        grow with uptime. Computed without sorting the config (fakepve's version costs 3x as much, which shows
        with 2,000 VMs), and a bare ``size=`` number is bytes, as in PVE."""
        running = vm.status == "running"
        config = vm.config
        maxmem = int(str(config.get("memory", 512)).split("=")[-1]) * 1048576
        data: dict[str, Any] = {
            "cpu": 0, "mem": 0, "memhost": 0, "disk": 0, "diskread": 0, "diskwrite": 0, "netin": 0, "netout": 0,
            "maxdisk": _first_disk_bytes(vm), "maxmem": maxmem,
            "maxcpu": int(config.get("cores", 1)) * int(config.get("sockets", 1)), "uptime": 0,
        }
        if running:
            seed = int(vm.vmid)
            uptime = int(time.time() - vm.started_at) if vm.started_at else 0
            span = uptime + 60
            mem = int(maxmem * (0.30 + (seed * 13 % 40) / 100))
            data.update(cpu=round(0.01 + (seed * 37 % 23) / 100, 4), mem=mem, memhost=mem, uptime=uptime,
                        netin=(seed % 50 + 10) * 1024 * span, netout=(seed % 70 + 20) * 1024 * span,
                        diskread=(seed % 30 + 5) * 4096 * span, diskwrite=(seed % 20 + 5) * 4096 * span)
        if vm.stats:
            data.update((k, v) for k, v in vm.stats.items() if k in data)
        return data

    async def _lab_replication_list(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
        # The lab configures no storage replication: PVE answers an empty list (fakepve invents a job
        # without `type`, which makes prometheus-pve-exporter's default scrape fail with HTTP 500).
        return []

    async def _lab_resize(self, v: dict[str, Any], user: str) -> str | None:
        """qemu-server resize_vm: grow a disk by +N or to N; refuse to shrink; a `resize` task (PVE >= 8), or,
        when the lab plays PVE 7 (``version`` 7.x), done within the request, answering null with no task."""
        vm = self.find(v["node"], v["vmid"])
        if v.get("skiplock") and user != "root@pam":
            raise param_error(skiplock="Only root may use this option.")
        if v.get("digest") and v["digest"] != vm.digest():
            raise die("checksum mismatch (file change by other user?)")
        disk = str(v["disk"])
        value = vm.config.get(disk)
        if value is None:
            raise die(f"disk '{disk}' does not exist")
        volume, props = split_drive(value)
        if is_cdrom(volume, props):
            raise die("you can't resize a cdrom")
        if not volume or volume_ref(volume)[0] is None:
            raise die(f"disk '{disk}' has no associated volume")
        current = size_bytes(props.get("size", ""))
        if current is None:
            raise die(f"Could not determine current size of volume '{volume}'")
        found = SIZE.match(str(v["size"]))
        if found is None:  # the schema's pattern already refuses this; kept for a clear message
            raise param_error(size="value does not match the regex pattern")
        amount = int(float(found.group(2)) * SIZE_UNITS.get(found.group(3) or "", 1))
        new = current + amount if found.group(1) else amount
        if new < current:
            raise die("shrinking disks is not supported")
        if vm.lock and not v.get("skiplock"):
            raise die(f"VM is locked ({vm.lock})")

        async def body() -> str | None:
            if new == current:
                return None
            fresh_volume, fresh_props = split_drive(vm.config.get(disk, value))
            sid, name = volume_ref(fresh_volume)
            store = self.storages.get(sid, {})
            vol = store.get("volumes", {}).get(name)
            grown = new - int((vol or {}).get("size") or current)
            if store and grown > self._space(store)[2]:
                raise TaskError(f"unable to write to storage '{sid}': No space left on device")
            if "avail" in store:
                store["avail"] -= grown
            if vol is not None:
                vol["size"] = new
            vm.config[disk] = join_drive(fresh_volume, dict(fresh_props, size=format_size(new)))
            self._lab_changed(vm.vmid)
            return f"Image resized from {current} to {new} bytes"

        if _major(self.version) < 8:
            try:
                await body()
            except TaskError as exc:
                raise die(str(exc)) from exc
            return None
        upid: str = await self.task(vm.node, "resize", vm.vmid, user, body, vm=vm)
        return upid

    # ------------------------------------------------------------ hooks on fakepve
    async def _answer(self, request: Any, handler: Any, generic: Any, path_node: Any) -> Any:
        # fakepve's own routes (status actions, config, tasks, lists) skip its schema check; Proxmox checks
        # every method (additionalProperties: 0), so an unknown or malformed parameter is a 400 here too.
        if generic is None:
            try:
                await self._lab_check_params(request)
            except PveError as exc:
                return error(exc.status, exc.message, exc.errors)
        return await super()._answer(request, handler, generic, path_node)

    async def _lab_check_params(self, request: Any) -> None:
        match = self.resolve(request, API)
        if match is None or request.method not in match.methods:
            return
        info = match.methods[request.method]
        values = {k: v for k, v in (await params(request)).items() if k not in IGNORED_PARAMS}
        for key, val in match.params.items():
            if key in values and str(values[key]) != str(val):
                raise PveError(400, "Parameter verification failed.",
                               {key: "conflicting value in URI and request parameters"})
            values[key] = val
        declared = (info.get("parameters") or {}).get("properties", {})
        for key in [k for k in match.params if k not in declared]:
            values.pop(key, None)
        _checked, errors = schema_validate(info.get("parameters"), values)
        if errors:
            raise PveError(400, "Parameter verification failed.", errors)

    async def _apply_config(self, vm: Any, user: str, p: dict[str, Any]) -> None:
        p = _typed_config(p)
        skiplock = _truthy(p.get("skiplock"))
        if skiplock and user != "root@pam":
            raise param_error(skiplock="Only root may use this option.")
        deletes = _split(p.get("delete"))
        if "lock" in deletes and vm.lock:
            if p.get("digest") and p["digest"] != vm.digest():
                raise PveError(500, "checksum mismatch (file change by other user?)")
            # An unlock (``qm unlock`` is this change): PVE checks the lock first unless skiplock; the lab lets
            # the lock's own removal through (README: "Unlock"), so a client that is not root can clear it.
            self._lab_unlock(vm)
            p = dict(p, delete=",".join(d for d in deletes if d != "lock"))
            if not p["delete"]:
                p.pop("delete")
            if not [k for k in p if k not in ("node", "vmid", "digest", "skiplock")]:
                return
        if skiplock and vm.lock:
            held = vm.lock
            self._lab_unlock(vm)
            try:
                await super()._apply_config(vm, user, p)
            finally:
                self._qm_lock(vm, held)
        else:
            await super()._apply_config(vm, user, p)
        if vm.status != "running" or not vm.pending:
            return
        # fakepve leaves every change to a running VM pending; PVE hot-applies what `hotplug` allows.
        for key in live_keys({**vm.config, **{k: x for k, x in vm.pending.items() if x is not None}},
                             list(vm.pending)):
            new = vm.pending.pop(key)
            if new is None:
                vm.config.pop(key, None)
            else:
                vm.config[key] = new
        self._lab_changed(vm.vmid)

    def _lab_unlock(self, vm: Any) -> None:
        vm.lock = None
        vm.config.pop("lock", None)
        self._lab_changed(vm.vmid)

    # ------------------------------------------------------------ migrate
    def _lab_local_disks(self, vm: Any) -> list[tuple[str, int]]:
        """The VM's disks on storages that are not shared (they move with the VM), as (volid, bytes)."""
        disks = []
        for key, value in sorted(vm.config.items()):
            if not (key.startswith(DRIVE_PREFIXES) and key[-1].isdigit()):
                continue
            volume, props = split_drive(value)
            sid = volume_ref(volume)[0] if volume else None
            if sid is None or is_cdrom(volume, props) or _truthy(self.storages.get(sid, {}).get("shared")):
                continue
            disks.append((volume, size_bytes(props.get("size", "")) or 0))
        return disks

    async def _lab_migrate_check(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        """GET migrate: qemu-server migrate_vm_precondition (the nodes it may go to, its local disks)."""
        vm = self.find(v["node"], v["vmid"])
        others = sorted(n for n, state in self.nodes.items() if n != vm.node and state.get("online", True))
        return {
            "running": 1 if vm.status == "running" else 0, "allowed_nodes": others, "not_allowed_nodes": {},
            "local_disks": [{"volid": volid, "size": size, "cdrom": 0, "is_unused": 0, "referenced_in_config": 1}
                            for volid, size in self._lab_local_disks(vm)],
            "local_resources": [], "mapped-resources": [], "mapped-resource-info": {}, "has-dbus-vmstate": 0,
        }

    async def _lab_migrate(self, v: dict[str, Any], user: str) -> str:
        """POST migrate (qemu-server migrate_vm and QemuMigrate): a ``qmigrate`` task on the source node that
        holds the ``migrate`` lock while it runs; a running VM needs ``online`` (it keeps running, on the target,
        without a reboot) and, with disks on local storage, ``with-local-disks``."""
        node, target = str(v["node"]), str(v["target"])
        if target == node:
            raise param_error(target="target is local node.")
        self.need_quorum()
        if target not in self.nodes:
            raise die(f"no such cluster node '{target}'")
        vm = self.find(node, v["vmid"])
        if vm.lock:
            raise die(f"VM is locked ({vm.lock})")
        running = vm.status == "running"
        if running and not _truthy(v.get("online")):
            raise die("can't migrate running VM without --online")
        local = self._lab_local_disks(vm)
        holder: list[str] = []
        early: list[str] = []

        def write(line: str) -> None:
            (self.tasks[holder[0]]["log"] if holder else early).append(f"{_stamp()} {line}")

        async def body() -> str:
            started = time.time()
            self._qm_lock(vm, "migrate")
            try:
                write(f"starting migration of VM {vm.vmid} to node '{target}'")
                for volid, _size in local:
                    write(f"found local disk '{volid}' (attached)")
                if running and local and not _truthy(v.get("with-local-disks")):
                    write("ERROR: migration aborted (duration 00:00:00): can't live migrate attached local disks "
                          "without with-local-disks option")
                    raise TaskError("migration aborted")
                if not self.nodes[target].get("online", True):
                    write(f"ERROR: migration aborted (duration 00:00:00): target node '{target}' is not online")
                    raise TaskError("migration aborted")
                if running:
                    write(f"starting VM {vm.vmid} on remote node '{target}'")
                    write("starting online/live migration")
                await self.pause(self.migrate_secs)
                vm.node = target
            finally:
                self._qm_lock(vm, None)
            took = max(int(time.time() - started), 0)
            return f"{_stamp()} migration finished successfully (duration {_hms(took)})"

        upid: str = await self.task(node, "qmigrate", vm.vmid, user, body, vm=vm)
        holder.append(upid)
        self.tasks[upid]["log"][0:0] = early
        return upid

    # ------------------------------------------------------------ restore
    async def _lab_create(self, v: dict[str, Any], user: str) -> Any:
        """POST /nodes/{node}/qemu: fakepve's create, and a restore when ``archive`` names a backup volume."""
        if not v.get("archive"):
            return await self._qm_create(v, user)
        return await self._lab_restore(v, user)

    async def _lab_restore(self, v: dict[str, Any], user: str) -> str:
        """qemu-server create_vm with ``archive`` (restore_vma_archive): a ``qmrestore`` task that writes the
        archive's disks as new volumes (on ``storage``, or where they were) and its config, the VM locked
        ``create`` meanwhile. An existing VMID needs ``force`` and a stopped VM on this node, whose disks the
        archive's replace. ``unique`` gives new MAC addresses; ``start`` starts the VM once restored."""
        node, vmid, archive = str(v["node"]), int(v["vmid"]), str(v["archive"])
        emsg = f"unable to restore VM {vmid} -"
        self.need_quorum()
        sid, volname = volume_ref(archive)
        source = self.backup_configs.get(archive)
        vol = self.storages.get(sid or "", {}).get("volumes", {}).get(volname) if sid else None
        if vol is None or vol.get("content") != "backup" or source is None:
            raise die(f"{emsg} volume '{archive}' does not exist")
        existing = self.vm(vmid)
        if existing is not None:
            if not _truthy(v.get("force")) or existing.node != node:
                raise die(f"{emsg} VM {vmid} already exists on node '{existing.node}'")
            if existing.status == "running":
                raise die(f"{emsg} VM is running")
            if existing.lock:
                raise die(f"VM is locked ({existing.lock})")
        storage = v.get("storage")
        if storage is not None:
            if storage not in self.storages:
                raise die(f"storage '{storage}' does not exist")
            if "images" not in _split(self.storages[storage].get("content")):
                raise die(f"storage '{storage}' does not support vm images")
        drives = [(key, value) for key, value in sorted(source.items())
                  if key.startswith(DRIVE_PREFIXES) and key[-1].isdigit()
                  and not is_cdrom(*split_drive(value)) and volume_ref(split_drive(value)[0])[0]]
        vm = existing if existing is not None else FakeVm(vmid, str(source.get("name") or f"VM {vmid}"), node=node)
        if existing is None:
            self.vms.append(vm)
        self._qm_lock(vm, "create")
        holder: list[str] = []
        early: list[str] = []

        def write(line: str) -> None:
            (self.tasks[holder[0]]["log"] if holder else early).append(line)

        async def body() -> str:
            made: list[str] = []
            pid = vmid * 7 % 100000
            try:
                write(f"restore vma archive: zstd -q -d -c {self._volume_path(sid, volname, 'backup')} | vma extract "
                      f"-v -r /var/tmp/vzdumptmp{pid}.fifo - /var/tmp/vzdumptmp{pid}")
                write(f"CFG: size: {len(json.dumps(source))} name: qemu-server.conf")
                config = {k: val for k, val in source.items() if not (k.startswith(DRIVE_PREFIXES) and k[-1].isdigit())}
                if existing is not None:  # the disks of the VM restored over go first (destroy_vm, keep config)
                    for volid, _size in self._lab_local_disks(existing) + self._lab_shared_disks(existing):
                        self._qm_free(volid)
                for index, (key, value) in enumerate(drives, 1):
                    volume, props = split_drive(value)
                    size = size_bytes(props.get("size", "")) or 0
                    write(f"DEV: dev_id={index} size: {size} devname: drive-{key}")
                    target_sid = str(storage or volume_ref(volume)[0])
                    try:
                        new, _fmt = self._qm_alloc(target_sid, vmid, None, size)
                    except PveError as exc:
                        raise TaskError(f"{emsg} {exc.message}") from exc
                    made.append(new)
                    write(f"new volume ID is '{new}'")
                    config[key] = join_drive(new, dict(props, size=format_size(size)))
                await self.pause(self.restore_secs)
                total = sum(size_bytes(split_drive(val)[1].get("size", "")) or 0 for _k, val in drives)
                write(f"progress 100% (read {total} bytes, duration {int(self.restore_secs)} sec)")
                write(f"total bytes read {total}, sparse bytes {total // 2} (50%)")
                write("rescan volumes...")
                if _truthy(v.get("unique")):
                    for key in [k for k in config if re.fullmatch(r"net\d+", k)]:
                        config[key] = with_mac(config[key], fresh=True)
                vm.config = config
                vm.pending.clear()
                vm.snapshots.clear()
                vm.name = str(config.get("name") or f"VM {vmid}")
                vm.status = vm.qmpstatus = "stopped"
            except TaskError:
                for volid in made:
                    self._qm_free(volid)
                if existing is None and vm in self.vms:
                    self.vms.remove(vm)
                raise
            finally:
                self._qm_lock(vm, None)
            for callback in self.on_restore:
                callback(vmid, archive)
            if _truthy(v.get("start")):
                vm.status = vm.qmpstatus = "running"
                vm.started_at = time.time()
                write(f"start VM {vmid}")
            return "restore finished"

        upid: str = await self.task(node, "qmrestore", vmid, user, body, vm=vm)
        holder.append(upid)
        self.tasks[upid]["log"][0:0] = early
        return upid

    def _lab_shared_disks(self, vm: Any) -> list[tuple[str, int]]:
        local = {volid for volid, _size in self._lab_local_disks(vm)}
        disks = []
        for key, value in sorted(vm.config.items()):
            if key.startswith(DRIVE_PREFIXES) and key[-1].isdigit():
                volume, props = split_drive(value)
                if volume and volume_ref(volume)[0] and not is_cdrom(volume, props) and volume not in local:
                    disks.append((volume, 0))
        return disks

    async def task(self, node: str, ttype: str, tid: Any, user: str, body: Any, vm: Any = None,
                   lock: bool = True, log: Any = ()) -> str:
        subject = _TASK_SUBJECT.get() or {}

        async def watched() -> Any:
            try:
                note = await body()
                if ttype == "qmsnapshot" and "snapshot" in subject:
                    for callback in self.on_snapshot:
                        callback(int(tid), subject["snapshot"])
                if ttype == "qmrollback" and "rollback" in subject:
                    self._lab_rolled_back(int(tid), subject["rollback"])
                return note
            finally:
                if tid not in ("", None):
                    self._lab_changed(tid)
        upid: str = await super().task(node, ttype, tid, user, watched, vm=vm, lock=lock, log=log)
        return upid

    def _lab_rolled_back(self, vmid: int, name: str) -> None:
        target = self.vm(vmid)
        if target is None:
            return
        with_ram = bool(target.snapshots.get(name, {}).get("vmstate"))
        if with_ram and target.status == "stopped":
            # PVE starts the VM from the snapshot's RAM state; fakepve leaves it stopped.
            target.status = target.qmpstatus = "running"
            target.started_at = time.time()
        for callback in self.on_rollback:
            callback(vmid, name, with_ram)

    def _lab_changed(self, vmid: Any) -> None:
        for callback in self.on_change:
            callback(vmid)


async def _pve_content_type(_request: Any, response: Any) -> None:
    if response.content_type == "application/json":
        response.headers["Content-Type"] = JSON_CONTENT_TYPE


def _typed_config(values: dict[str, Any]) -> dict[str, Any]:
    """A config change's values as PVE stores them: integers, numbers and booleans of the schema as JSON numbers
    (a form sends every value as text; PVE's parameter check converts them, so ``cores=3`` reads back as 3)."""
    properties = schema_load().paths[CONFIG_PATH]["PUT"]["parameters"]["properties"]
    typed = dict(values)
    for key, value in values.items():
        kind = (properties.get(key) or properties.get(re.sub(r"\d+$", "[n]", key)) or {}).get("type")
        if not isinstance(value, str) or kind not in ("integer", "number", "boolean"):
            continue
        try:
            if kind == "integer":
                typed[key] = int(value)
            elif kind == "number":
                number = float(value)
                typed[key] = int(number) if number.is_integer() and "." not in value else number
            else:
                typed[key] = 1 if _truthy(value) else 0
        except ValueError:
            continue  # the schema check answers 400 for it
    return typed


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _major(version: Any) -> int:
    found = re.match(r"\d+", str(version))
    return int(found.group()) if found else 0


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def _split(value: Any) -> list[str]:
    return [item for item in re.split(r"[,;\s]+", str(value or "")) if item]


def _status_type(exitstatus: str) -> str:
    """PVE::Tools::upid_normalize_status_type."""
    if exitstatus == "OK":
        return "ok"
    if exitstatus.startswith("WARNINGS"):
        return "warning"
    if exitstatus in ("", "unknown", "unexpected status"):
        return "unknown"
    return "error"


def _first_disk_bytes(vm: Any) -> int:
    """Size of the VM's first disk (in config key order, CD-ROMs skipped), as /cluster/resources' maxdisk.

    Remembered per VM until its config dict, its number of keys or that disk's value changes: with 2,000 VMs
    the scan is most of the cost of /cluster/resources."""
    config = vm.config
    memo = vm.__dict__.get("_lab_maxdisk")
    if memo is not None and memo[0] is config and memo[1] == len(config) and config.get(memo[2]) is memo[3]:
        return int(memo[4])
    first = None
    for key in config:
        if key.startswith(DRIVE_PREFIXES) and key[-1].isdigit() and (first is None or key < first) \
                and "media=cdrom" not in str(config[key]):
            first = key
    size = 0
    if first is not None:
        found = DRIVE_SIZE.search(str(config[first]))
        size = (size_bytes(found.group(1)) or 0) if found else 0
    vm._lab_maxdisk = (config, len(config), first, config.get(first) if first else None, size)
    return size


def size_bytes(text: str) -> int | None:
    """A drive's size= value in bytes (a bare number is bytes, K/M/G/T are powers of 1024)."""
    found = SIZE_VALUE.fullmatch(text.strip())
    if found is None:
        return None
    return int(float(found.group(1)) * SIZE_UNITS.get(found.group(2) or "", 1))
