"""The lab's Proxmox VE API: fakepve's FakePve with the gaps our clients hit filled in.

fakepve is the engine; this subclass only adds or corrects behaviour, through fakepve's own extension points
(a ``_routes_lab`` table of schema-checked handlers, and overrides of its hook methods). Every gap is listed in
pdn_ops/lab/README.md with the Proxmox behaviour it follows (shared/reference/PVE-API-NOTES.md).
"""

from __future__ import annotations

import re
from typing import Any

from fakepve import FakePve, PveError, TaskError
from fakepve.lxc import SIZE_UNITS, format_size
from fakepve.qemu import is_cdrom, join_drive, split_drive, volume_ref
from fakepve.routing import die, param_error
from fakepve.schema import load as load_schema
from fakepve.schema import validate as schema_validate
from fakepve.server import API, error, params

SIZE = re.compile(r"^(\+)?(\d+(?:\.\d+)?)([KMGT])?\Z")
# Keys that change a running VM at once whatever `hotplug` says (qemu-server vmconfig_hotplug_pending).
ALWAYS_LIVE = ("balloon", "cpulimit", "cpuunits", "shares")
DISK_KEY = re.compile(r"^(ide|sata|scsi|virtio)\d+\Z")
IGNORED_PARAMS = ("_dc",)


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
    out = []
    for key in keys:
        if key in ALWAYS_LIVE:
            out.append(key)
        elif key == "vcpus" and "cpu" in plug:
            out.append(key)
        elif key == "memory" and "memory" in plug and numa:
            out.append(key)
        elif re.fullmatch(r"net\d+", key) and "network" in plug:
            out.append(key)
        elif DISK_KEY.match(key) and "disk" in plug:
            out.append(key)
        elif re.fullmatch(r"usb\d+", key) and "usb" in plug:
            out.append(key)
    return out


class LabPve(FakePve):  # type: ignore[misc]  # fakepve ships no type information
    """FakePve plus: disk resize, 400 on unknown parameters everywhere, live hotplug, an empty replication list."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Called (vmid) after every change of a VM's power or disk; the lab uses it to wake its reconciler.
        self.on_change: list[Any] = []

    # ------------------------------------------------------------ routes
    def _routes_lab(self) -> list[tuple[str, str, Any]]:
        return [
            ("PUT", "/nodes/{node}/qemu/{vmid}/resize", self._lab_resize),
            ("GET", "/nodes/{node}/replication", self._lab_replication_list),
        ]

    async def _lab_replication_list(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
        # The lab configures no storage replication: PVE answers an empty list (fakepve invents a job
        # without `type`, which makes prometheus-pve-exporter's default scrape fail with HTTP 500).
        return []

    async def _lab_resize(self, v: dict[str, Any], user: str) -> str:
        """qemu-server resize_vm: grow a disk by +N or to N; refuse to shrink; a `resize` task (PVE >= 8)."""
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
        current = _bytes(props.get("size", ""))
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
            fresh_props = dict(fresh_props, size=format_size(new))
            vm.config[disk] = join_drive(fresh_volume, fresh_props)
            sid, name = volume_ref(fresh_volume)
            store = self.storages.get(sid, {})
            vol = store.get("volumes", {}).get(name)
            if vol is not None:
                grown = new - int(vol.get("size") or current)
                if "avail" in store:
                    if grown > store["avail"]:
                        raise TaskError(f"unable to write to storage '{sid}': No space left on device")
                    store["avail"] -= grown
                vol["size"] = new
            self._lab_changed(vm.vmid)
            return f"Image resized from {current} to {new} bytes"

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

    async def task(self, node: str, ttype: str, tid: Any, user: str, body: Any, vm: Any = None,
                   lock: bool = True, log: Any = ()) -> str:
        async def watched() -> Any:
            try:
                return await body()
            finally:
                if tid not in ("", None):
                    self._lab_changed(tid)
        upid: str = await super().task(node, ttype, tid, user, watched, vm=vm, lock=lock, log=log)
        return upid

    def _lab_changed(self, vmid: Any) -> None:
        for callback in self.on_change:
            callback(vmid)


def _bytes(text: str) -> int | None:
    """A drive's size= value in bytes (a bare number is bytes, K/M/G/T are powers of 1024)."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT])?", text.strip())
    if found is None:
        return None
    return int(float(found.group(1)) * SIZE_UNITS.get(found.group(2) or "", 1))


def schema_has(method: str, template: str) -> bool:
    return method in load_schema().paths.get(template, {})
