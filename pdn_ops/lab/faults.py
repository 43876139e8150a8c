"""Faults on demand, for tests (``lab.faults.crash_service(101)``) and the demo (``pdn-ops lab fault ...``).

Guest faults change a guest's state file, its site or its sshd; Proxmox faults use fakepve's own scenarios.
Each runs on the lab's event loop, so it never races the reconciler. ``FAULTS`` lists what the control
endpoint (and so the CLI) may call, with each fault's parameters.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from pdn_ops.lab import guest_state

if TYPE_CHECKING:
    from pdn_ops.lab.lab import Lab

FAULTS: dict[str, str] = {
    "crash_service": "vmid unit=nginx.service broken=0   a unit fails; broken=1: restarts fail too",
    "repair_service": "vmid unit=nginx.service          restarts work again (the unit stays as it is)",
    "site_error": "vmid                               the site answers HTTP 500",
    "site_hang": "vmid                                the site accepts connections but never answers",
    "site_ok": "vmid                                  clear site_error/site_hang",
    "fill_disk": "vmid percent=97                     the root filesystem fills (journal + data)",
    "ship_bad_update": "vmid version=1.5.0 break_unit=0   a botched deploy: the site answers 500 (break_unit=1: the "
                       "app unit fails too); restarts and reboots keep it, a snapshot rollback cures it",
    "memory_pressure": "vmid need_mib=4096 on=1           the app needs need_mib: while the VM has less, the OOM "
                       "killer stops its units (resize the memory)",
    "stop_vm": "vmid                                  the guest powers itself off: the VM is stopped (no task)",
    "take_snapshot": "vmid name= vmstate=0 description=  a Proxmox snapshot; the guest's state is kept with it",
    "expire_certificate": "vmid days_ago=1            the HTTPS site's certificate expired days_ago",
    "set_certificate_expiry": "vmid days=10           the HTTPS certificate expires in days",
    "change_host_key": "vmid                          the guest's SSH host key changes",
    "revoke_client_key": "vmid on=1                   the guest no longer accepts the lab's client key",
    "revoke_token": "on=1                             the API token is refused (401 authentication failure)",
    "ssh_hang": "vmid on=1                            sshd accepts keys, then the session never answers",
    "overload": "vmid on=1                            CPU and memory near 100% (guest load, free, PVE usage)",
    "ignore_acpi": "vmid on=1                         the guest ignores ACPI: shutdown tasks time out",
    "storage_full": "storage=local-lvm on=1           no space left: disk allocations and resizes fail",
    "task_failure": "vmid action=start message=...   the VM's next start task ends with TASK ERROR",
    "fill_storage": "storage=local-lvm percent=95 per_hour=0  the storage's usage goes to percent, then grows "
                    "per_hour percentage points per Proxmox hour (percent=0: back to its volumes)",
    "storage_offline": "storage=local on=1 node=        the storage is not online (on every node, or on node): "
                       "listings fail, resources 'unknown'",
    "backup_job": "job=daily vmids=all storage=local exclude= enabled=1  a vzdump job in /cluster/backup "
                  "(vmids: 'all' or a list like 101,102)",
    "delete_backup_job": "job=daily                   remove the vzdump job",
    "run_backup_job": "job=daily                      run the job now: one vzdump task per node; waits for them",
    "backup_now": "vmid storage=local                 a vzdump of one VM now; waits for the task, returns its UPID",
    "backup_fails": "vmid on=1 message=...          the VM's backups fail (its part of a vzdump task: ERROR)",
    "node_pressure": "node=pve1 memory=0.97 swap=0.6 load=2.0 ksm_gib=4 on=1  the node's status shows memory and "
                     "swap used (ratios), load per CPU and KSM sharing",
    "lock": "vmid lock=backup                         the VM is locked",
    "stale_lock": "vmid lock=backup task=1                  a lock no task holds: the task that took it died "
                  "(TASK ERROR: interrupted by signal) and left it (task=0: no task at all)",
    "unlock": "vmid                                   clear the VM's lock",
    "node_offline": "node=pve1 offline=1              requests for the node get 595 No route to host",
    "slow_api": "latency=2.0 jitter=0                 PVE seconds added to every API answer",
    "api_failure": "method=GET suffix=/cluster/resources status=500 message=... times=0  an API call fails",
    "flaky_api": "drop_rate=0.2 hang_rate=0           drop or hang a share of API requests",
    "clear_api_faults": "                             undo slow_api, api_failure, flaky_api, node_offline",
}


TASK_WAIT = 30.0
# The worker type that takes each lock (qemu-server's API2/Qemu.pm and vzdump), for stale_lock's dead task.
STALE_LOCK_TASKS = {"backup": "vzdump", "snapshot": "qmsnapshot", "snapshot-delete": "qmdelsnapshot",
                    "migrate": "qmigrate", "rollback": "qmrollback", "clone": "qmclone", "create": "qmcreate"}


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


class Faults:
    def __init__(self, lab: Lab) -> None:
        self._lab = lab
        # storage -> its (total, avail) before storage_full, kept here: fakepve lists unknown storage keys.
        self._sizes: dict[str, tuple[Any, Any]] = {}

    def apply(self, name: str, args: dict[str, Any]) -> Any:
        """Run the fault called ``name`` (as the control endpoint does) with string or typed arguments."""
        if name.replace("-", "_") not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}")
        method = getattr(self, name.replace("-", "_"))
        if "vmid" in args:
            args = dict(args, vmid=int(args["vmid"]))
        return method(**args)

    # ------------------------------------------------------------ guests
    def _run(self, fn: Any) -> Any:
        async def call() -> Any:
            async with self._lab.lock:
                result = fn()
                if hasattr(result, "__await__"):
                    result = await result
                await self._lab.reconcile_locked()
            return result
        return self._lab.call(call())

    def crash_service(self, vmid: int, unit: str = "nginx.service", broken: Any = False) -> None:
        guest = self._lab.guest(vmid)

        def change() -> None:
            with guest.state_file.update() as state:
                if unit not in state["units"]:
                    raise ValueError(f"guest {vmid} has no unit {unit}")
                state["units"][unit].update(state="failed", since=time.time(), broken=_flag(broken))
        self._run(change)

    def repair_service(self, vmid: int, unit: str = "nginx.service") -> None:
        guest = self._lab.guest(vmid)

        def change() -> None:
            with guest.state_file.update() as state:
                state["units"][unit]["broken"] = False
        self._run(change)

    def _site(self, vmid: int, mode: str | None) -> None:
        guest = self._lab.guest(vmid)

        def change() -> None:
            guest.site_faults.mode = mode
            if mode != "hang":
                guest.site_faults.release.set()
            else:
                guest.site_faults.release.clear()
        self._run(change)

    def site_error(self, vmid: int) -> None:
        self._site(vmid, "error")

    def site_hang(self, vmid: int) -> None:
        self._site(vmid, "hang")

    def site_ok(self, vmid: int) -> None:
        self._site(vmid, None)

    def fill_disk(self, vmid: int, percent: Any = 97) -> None:
        guest = self._lab.guest(vmid)
        pct = float(percent)
        if not 0 <= pct <= 100:
            raise ValueError("percent must be between 0 and 100")

        def change() -> None:
            with guest.state_file.update() as state:
                size = int(state["disk"]["size"])
                target = int(size * pct / 100)
                base = int(state["disk"]["base_used"])
                # Most of the growth is journal (what the cleanup playbook can free), the rest data.
                extra = max(target - base, 0)
                state["journal_bytes"] = int(extra * 0.8)
                state["disk"]["fill"] = extra - int(extra * 0.8)
        self._run(change)

    def ship_bad_update(self, vmid: int, version: str = "1.5.0", break_unit: Any = False) -> str:
        """A botched deploy of the OPD's application, on the guest's disk: the site answers HTTP 500 (with
        ``break_unit``, or on a guest without a site, the application's unit fails to start as well). Neither a
        service restart nor a reboot cures it; a rollback to a snapshot taken before it does."""
        guest = self._lab.guest(vmid)
        version = str(version).strip()
        if not version or len(version) > 40 or not version.isprintable():
            raise ValueError("version must be 1 to 40 printable characters")
        broken = _flag(break_unit) or guest.spec.site is None

        def change() -> None:
            with guest.state_file.update() as state:
                previous = state.get("release", {}).get("version", guest_state.FIRST_RELEASE)
                state["release"] = {"version": version, "previous": previous, "healthy": False}
                if broken:
                    now = time.time()
                    for unit in guest_state.app_units(state)[:1]:
                        state["units"][unit].update(state="failed", since=now, broken=True)
                guest.state_file.record(state, ["apt-get", "install", f"{guest_state.APP_NAME}={version}"], 0)
        self._run(change)
        return version

    def memory_pressure(self, vmid: int, need_mib: Any = 4096, on: Any = True) -> None:
        guest = self._lab.guest(vmid)
        need = int(need_mib)
        if not 1 <= need <= 4 * 1024 * 1024:
            raise ValueError("need_mib must be between 1 and 4194304")

        def change() -> None:
            units = guest_state.app_units(guest.state())
            guest.memory_pressure(need * 1024**2 if _flag(on) else 0, units)
        self._run(change)

    def stop_vm(self, vmid: int) -> None:
        """The guest powers itself off (``poweroff`` inside, a kernel panic with panic=0...): no Proxmox task,
        the VM is simply stopped, as Proxmox then shows it."""
        vm = self._lab.pve.vm(vmid)
        if vm is None:
            raise ValueError(f"no VM {vmid}")

        def change() -> None:
            if vm.status == "running":
                vm.status = vm.qmpstatus = "stopped"
        self._run(change)

    def take_snapshot(self, vmid: int, name: str = "", vmstate: Any = False, description: str = "") -> str:
        """A snapshot through the lab API's own handler (checked against the schema, a real task); the guest's
        state is kept with it. Returns the snapshot's name (``lab_YYYYmmdd_HHMMSS`` when none is given)."""
        from fakepve import PveError, schema

        pve = self._lab.pve
        vm = pve.vm(vmid)
        if vm is None:
            raise ValueError(f"no VM {vmid}")
        name = name or time.strftime("lab_%Y%m%d_%H%M%S")
        values: dict[str, Any] = {"node": vm.node, "vmid": vmid, "snapname": name}
        if _flag(vmstate):
            values["vmstate"] = 1
        if description:
            values["description"] = description
        spec = schema.load().paths["/nodes/{node}/qemu/{vmid}/snapshot"]["POST"]["parameters"]
        checked, errors = schema.validate(spec, values)
        if errors:
            raise ValueError("; ".join(f"{k}: {v.strip()}" for k, v in sorted(errors.items())))

        try:
            upid: str = self._lab.call(pve._lab_snapshot(checked, "root@pam"))
        except PveError as exc:
            raise ValueError(f"snapshot {name} of VM {vmid}: {exc.message}") from exc
        deadline = time.monotonic() + TASK_WAIT
        while pve.tasks[upid]["status"] == "running":  # the task runs on the lab's loop; this thread waits
            if time.monotonic() > deadline:
                raise ValueError(f"snapshot {name} of VM {vmid} still running after {TASK_WAIT:.0f} s")
            time.sleep(0.01)
        status = str(pve.tasks[upid].get("exitstatus"))
        if status != "OK":
            raise ValueError(f"snapshot {name} of VM {vmid} failed: {status}")
        return name

    def expire_certificate(self, vmid: int, days_ago: Any = 1) -> None:
        when = dt.datetime.now(dt.UTC) - dt.timedelta(days=float(days_ago))
        self._certificate(vmid, when)

    def set_certificate_expiry(self, vmid: int, days: Any = 10) -> None:
        self._certificate(vmid, dt.datetime.now(dt.UTC) + dt.timedelta(days=float(days)))

    def _certificate(self, vmid: int, not_after: dt.datetime) -> None:
        guest = self._lab.guest(vmid)
        if guest.spec.site is None or not guest.spec.site.https:
            raise ValueError(f"guest {vmid} serves no HTTPS site")
        self._run(lambda: guest.set_certificate(not_after))

    def change_host_key(self, vmid: int) -> str:
        guest = self._lab.guest(vmid)
        key: str = self._run(guest.new_host_key)
        if guest.powered:
            self._lab.wait_guest(vmid, up=True)
        return key

    def revoke_client_key(self, vmid: int, on: Any = True) -> None:
        guest = self._lab.guest(vmid)
        keys = guest.dir / "authorized_keys"
        line = self._lab.client_key_path.with_name(self._lab.client_key_path.name + ".pub").read_text()
        self._run(lambda: keys.write_text("" if _flag(on) else line, encoding="utf-8"))

    def revoke_token(self, on: Any = True) -> None:
        lab = self._lab

        def change() -> None:
            if _flag(on):
                lab.pve.apitokens.pop(lab.token_id, None)
            else:
                lab.pve.apitokens[lab.token_id] = lab.token_secret
        self._run(change)

    def ssh_hang(self, vmid: int, on: Any = True) -> None:
        guest = self._lab.guest(vmid)

        def change() -> None:
            with guest.state_file.update() as state:
                state["ssh_hang"] = _flag(on)
        self._run(change)

    def overload(self, vmid: int, on: Any = True) -> None:
        guest = self._lab.guest(vmid)
        vm = self._lab.pve.vm(vmid)
        busy = _flag(on)

        def change() -> None:
            with guest.state_file.update() as state:
                state["load"] = [11.8, 9.6, 6.2] if busy else [0.08, 0.05, 0.01]
                state["memory"]["used_ratio"] = 0.96 if busy else 0.42
            for key in ("cpu", "mem", "memhost"):
                vm.stats.pop(key, None)
            if busy:
                maxmem = int(str(vm.config.get("memory", 2048)).split("=")[-1]) * 1024**2
                vm.stats.update(cpu=0.97, mem=int(maxmem * 0.96), memhost=int(maxmem * 0.96))
        self._run(change)

    # ------------------------------------------------------------ Proxmox (fakepve's scenarios)
    def ignore_acpi(self, vmid: int, on: Any = True) -> None:
        vm = self._lab.pve.vm(vmid)
        if vm is None:
            raise ValueError(f"no VM {vmid}")
        self._run(lambda: setattr(vm, "acpi", not _flag(on)))

    def task_failure(self, vmid: int, action: str = "start", message: str | None = None) -> None:
        pve = self._lab.pve
        vm = pve.vm(vmid)
        if vm is None:
            raise ValueError(f"no VM {vmid}")
        if action == "start":
            self._run(lambda: setattr(vm, "start_error", message or f"start failed: QEMU exited with code 1 "
                                                                     f"(VM {vmid})"))
            return
        path = f"/nodes/{vm.node}/qemu/{vmid}/status/{action}"
        text = message or f"{action} failed"

        def change() -> None:
            # A named catalogue error raised inside the worker would need its exact name; a plain 500 is what
            # the API answers when the worker cannot even start.
            pve.fail("POST", path, 500, text, times=1)
        self._run(change)

    def storage_full(self, storage: str = "local-lvm", on: Any = True) -> None:
        pve = self._lab.pve
        if storage not in pve.storages:
            raise ValueError(f"no storage {storage!r}; known: {', '.join(sorted(pve.storages))}")
        store = pve.storages[storage]

        def change() -> None:
            # The storage shrinks to what its volumes use, so fakepve's own accounting says: no space left.
            if _flag(on):
                self._sizes.setdefault(storage, (store.get("total"), store.get("avail")))
                store.pop("avail", None)
                store["total"] = pve._space(store)[1]
            elif storage in self._sizes:
                total, avail = self._sizes.pop(storage)
                for key, value in (("total", total), ("avail", avail)):
                    if value is None:
                        store.pop(key, None)
                    else:
                        store[key] = value
        self._run(change)

    def _storage(self, storage: str) -> dict[str, Any]:
        pve = self._lab.pve
        if storage not in pve.storages:
            raise ValueError(f"no storage {storage!r}; known: {', '.join(sorted(pve.storages))}")
        store: dict[str, Any] = pve.storages[storage]
        return store

    def fill_storage(self, storage: str = "local-lvm", percent: Any = 95, per_hour: Any = 0) -> None:
        """Space used outside the listed volumes (other data, a snapshot growing): usage at ``percent`` now,
        growing ``per_hour`` percentage points per Proxmox hour until the storage is full."""
        pve = self._lab.pve
        store = self._storage(storage)
        pct, rate = float(percent), float(per_hour)
        if not 0 <= pct <= 100 or not 0 <= rate <= 360000:
            raise ValueError("percent must be between 0 and 100, per_hour between 0 and 360000")

        def change() -> None:
            pve.storage_fill.pop(storage, None)
            total, used, _avail = pve._space(store)
            if pct == 0 and rate == 0:
                return
            fill = max(int(total * pct / 100) - int(used), 0)
            pve.storage_fill[storage] = (fill, total * rate / 100 / 3600, time.time())
        self._run(change)

    def storage_offline(self, storage: str = "local", on: Any = True, node: str = "") -> None:
        store = self._storage(storage)
        pve = self._lab.pve
        if node and node not in pve.nodes:
            raise ValueError(f"no node {node!r}; known: {', '.join(sorted(pve.nodes))}")

        def change() -> None:
            if node:
                offline = pve.storage_offline.setdefault(storage, set())
                (offline.add if _flag(on) else offline.discard)(node)
            else:
                store["active"] = 0 if _flag(on) else 1
                if not _flag(on):
                    pve.storage_offline.pop(storage, None)
        self._run(change)

    def backup_job(self, job: str = "daily", vmids: str = "all", storage: str = "local", exclude: str = "",
                   enabled: Any = True) -> None:
        self._storage(storage)
        job = job.strip()
        if not job or len(job) > 50 or any(c.isspace() for c in job):
            raise ValueError("job must be 1 to 50 characters without spaces")
        spec: dict[str, Any] = {"storage": storage, "schedule": "21:00", "mode": "snapshot", "compress": "zstd",
                                "enabled": 1 if _flag(enabled) else 0, "enabled_nodes": ""}
        if str(vmids).strip() in ("", "all"):
            spec["all"] = 1
            if exclude:
                spec["exclude"] = ",".join(str(int(v)) for v in str(exclude).split(","))
        else:
            spec["vmid"] = ",".join(str(int(v)) for v in str(vmids).split(","))
        spec.pop("enabled_nodes")
        self._run(lambda: self._lab.pve.backup_jobs.__setitem__(job, spec))

    def delete_backup_job(self, job: str = "daily") -> None:
        self._run(lambda: self._lab.pve.backup_jobs.pop(job, None))

    def run_backup_job(self, job: str = "daily") -> list[str]:
        """What the scheduler does at the job's time: a vzdump task per node with that node's guests."""
        pve = self._lab.pve
        spec = pve.backup_jobs.get(job)
        if spec is None:
            raise ValueError(f"no backup job {job!r}")
        covered = pve.covered_vmids() if spec.get("all") else {int(v) for v in str(spec["vmid"]).split(",")}
        upids = []
        for node in sorted(pve.nodes):
            vmids = sorted(int(vm.vmid) for vm in pve.vms if vm.node == node and int(vm.vmid) in covered)
            if spec.get("all"):
                vmids = [v for v in vmids if str(v) not in str(spec.get("exclude", "")).split(",")]
            if not vmids:
                continue
            # As PVE's scheduler: `all` with the job's exclusions (a VMID list would outgrow the 4096-character
            # parameter at a thousand guests), or the job's own list.
            chosen = {"all": 1, **({"exclude": spec["exclude"]} if spec.get("exclude") else {})} \
                if spec.get("all") else {"vmid": ",".join(map(str, vmids))}
            upids.append(self._vzdump(node, {**chosen, "storage": spec["storage"], "mode": spec["mode"],
                                             "compress": spec["compress"], "job-id": job}))
        for upid in upids:
            self._wait_task(upid, "backup job " + job)
        return upids

    def backup_now(self, vmid: int, storage: str = "local") -> str:
        vm = self._lab.pve.vm(vmid)
        if vm is None:
            raise ValueError(f"no VM {vmid}")
        self._storage(storage)
        upid = self._vzdump(vm.node, {"vmid": str(vmid), "storage": storage, "mode": "snapshot",
                                      "compress": "zstd"})
        self._wait_task(upid, f"backup of VM {vmid}")
        return upid

    def _vzdump(self, node: str, values: dict[str, Any]) -> str:
        from fakepve import PveError, schema

        spec = schema.load().paths["/nodes/{node}/vzdump"]["POST"]["parameters"]
        checked, errors = schema.validate(spec, dict(values, node=node))
        if errors:
            raise ValueError("; ".join(f"{k}: {v.strip()}" for k, v in sorted(errors.items())))
        try:
            upid: str = self._lab.call(self._lab.pve._lab_vzdump(checked, "root@pam"))
        except PveError as exc:
            raise ValueError(f"vzdump on {node}: {exc.message}") from exc
        return upid

    def _wait_task(self, upid: str, what: str) -> None:
        tasks = self._lab.pve.tasks
        deadline = time.monotonic() + TASK_WAIT
        while tasks[upid]["status"] == "running":  # the task runs on the lab's loop; this thread waits
            if time.monotonic() > deadline:
                raise ValueError(f"{what} still running after {TASK_WAIT:.0f} s")
            time.sleep(0.01)

    def backup_fails(self, vmid: int, on: Any = True, message: str = "") -> None:
        if self._lab.pve.vm(vmid) is None:
            raise ValueError(f"no VM {vmid}")
        text = message or "unable to connect to VM 101 qmp socket - timeout after 31 retries"
        text = text.replace("101", str(vmid)) if not message else text
        errors = self._lab.pve.backup_errors

        def change() -> None:
            if _flag(on):
                errors[vmid] = text
            else:
                errors.pop(vmid, None)
        self._run(change)

    def node_pressure(self, node: str = "pve1", memory: Any = 0.97, swap: Any = 0.6, load: Any = 2.0,
                      ksm_gib: Any = 4, on: Any = True) -> None:
        pve = self._lab.pve
        if node not in pve.nodes:
            raise ValueError(f"no node {node!r}; known: {', '.join(sorted(pve.nodes))}")
        values = {"memory": float(memory), "swap": float(swap), "load": float(load), "ksm": float(ksm_gib) * 1024**3}
        if not all(0 <= values[k] <= 1 for k in ("memory", "swap")) or not 0 <= values["load"] <= 100:
            raise ValueError("memory and swap are ratios (0 to 1), load per CPU 0 to 100")

        def change() -> None:
            if _flag(on):
                pve.node_pressure[node] = values
            else:
                pve.node_pressure.pop(node, None)
        self._run(change)

    def lock(self, vmid: int, lock: str = "backup") -> None:
        self._run(lambda: self._lab.pve.snapshot_lock(vmid, lock))

    def stale_lock(self, vmid: int, lock: str = "backup", task: Any = True) -> str | None:
        """A lock that outlived its task, as a vzdump, snapshot or migration whose worker was killed leaves it:
        the VM's config says ``lock: <lock>`` (status/current and /cluster/resources show it), no running task
        holds it, and (with ``task``) the task that took it is in the node's list, ended with "interrupted by
        signal" (what a PVE worker killed by a signal logs). Returns that task's UPID."""
        from fakepve import TaskError

        pve = self._lab.pve
        vm = pve.vm(vmid)
        if vm is None:
            raise ValueError(f"no VM {vmid}")
        if lock not in STALE_LOCK_TASKS:
            raise ValueError(f"lock must be one of {', '.join(sorted(STALE_LOCK_TASKS))}")
        if not _flag(task):
            self._run(lambda: pve.snapshot_lock(vmid, lock))
            return None

        async def died() -> None:
            pve.snapshot_lock(vmid, lock)
            raise TaskError("interrupted by signal")

        async def start() -> str:
            upid: str = await pve.task(vm.node, STALE_LOCK_TASKS[lock], vmid, "root@pam", died, lock=False)
            return upid

        upid: str = self._run(start)
        self._wait_task(upid, f"the {lock} task of VM {vmid}")
        return upid

    def unlock(self, vmid: int) -> None:
        self._run(lambda: self._lab.pve.unlock(vmid))

    def node_offline(self, node: str = "pve1", offline: Any = True) -> None:
        self._run(lambda: self._lab.pve.set_node_offline(node, _flag(offline)))

    def slow_api(self, latency: Any = 2.0, jitter: Any = 0.0) -> None:
        self._run(lambda: self._lab.pve.slow_network(float(latency), float(jitter)))

    def api_failure(self, method: str = "GET", suffix: str = "/cluster/resources", status: Any = 500,
                    message: str = "internal error", times: Any = 0) -> None:
        count = int(times) or None
        self._run(lambda: self._lab.pve.fail(method.upper(), suffix, int(status), message, times=count))

    def flaky_api(self, drop_rate: Any = 0.2, hang_rate: Any = 0.0) -> None:
        self._run(lambda: self._lab.pve.flaky_network(float(drop_rate), float(hang_rate), hang_secs=30))

    def clear_api_faults(self) -> None:
        def change() -> None:
            pve = self._lab.pve
            pve.failures.clear()
            pve.slow_network(0.0, 0.0)
            pve.network["node_latency"].clear()
            pve.flaky_network(0.0, 0.0)
            for node in pve.nodes:
                pve.set_node_offline(node, False)
            for vm in pve.vms:
                vm.start_error = None
        self._run(change)
