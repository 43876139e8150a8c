"""Proxmox API answers -> observations. Pure: no I/O, the time is an argument.

``/cluster/resources`` (one entry per guest, node and storage; sample, trimmed)::

    [{"id": "qemu/100", "type": "qemu", "vmid": 100, "name": "web-dinkes", "node": "pve1", "status": "running",
      "cpu": 0.02, "maxcpu": 2, "mem": 67108864, "maxmem": 2147483648, "disk": 0, "maxdisk": 34359738368,
      "uptime": 3600, "template": 0, "lock": "backup", "hastate": "started"},
     {"id": "lxc/101", "type": "lxc", "vmid": 101, "status": "stopped", "node": "pve2", ...},
     {"id": "node/pve1", "type": "node", "node": "pve1", "status": "online", "cpu": 0.02, "mem": 2147483648,
      "maxmem": 8589934592, ...},
     {"id": "storage/pve1/local", "type": "storage", ...}]

``/cluster/status`` (one cluster entry when clustered, one entry per node)::

    [{"type": "cluster", "id": "cluster", "name": "pdn", "nodes": 2, "quorate": 1, "version": 1},
     {"type": "node", "id": "node/pve1", "name": "pve1", "nodeid": 1, "online": 1, "local": 1, "ip": "..."}]

``status/current`` of one guest (only for guests whose state changed)::

    {"status": "running", "qmpstatus": "paused", "vmid": 100, "ha": {"managed": 0}, ...}
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from pdn_ops.core.errors import UnexpectedResponse
from pdn_ops.health.observations import (
    ClusterObservation,
    FailureClass,
    GuestObservation,
    NodeObservation,
    NodePressure,
)

GUEST_TYPES = ("qemu", "lxc")


def _list_of_dicts(data: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise UnexpectedResponse(f"{what}: expected a list of objects, got {type(data).__name__}")
    return data


def _num(entry: Mapping[str, Any], key: str, kind: type[int] | type[float], what: str) -> Any:
    value = entry.get(key, 0)
    if value is None or value == "":
        return kind(0)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UnexpectedResponse(f"{what}: field {key!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise UnexpectedResponse(f"{what}: field {key!r} is not a number") from None
    if not math.isfinite(number):
        raise UnexpectedResponse(f"{what}: field {key!r} is not finite")
    return kind(number)


def _opt_str(entry: Mapping[str, Any], key: str) -> str | None:
    value = entry.get(key)
    return str(value) if value not in (None, "") else None


def parse_guest(entry: Mapping[str, Any], cluster: str) -> GuestObservation:
    """One qemu/lxc entry of /cluster/resources."""
    what = f"guest {entry.get('id', '?')}"
    try:
        vmid = int(entry["vmid"])
        node = str(entry["node"])
        status = str(entry["status"])
    except (KeyError, TypeError, ValueError):
        raise UnexpectedResponse(f"{what}: missing vmid, node or status") from None
    return GuestObservation(
        cluster=cluster,
        vmid=vmid,
        node=node,
        name=str(entry.get("name") or ""),
        type=str(entry["type"]),
        status=status,
        cpu=_num(entry, "cpu", float, what),
        maxcpu=_num(entry, "maxcpu", float, what),
        mem=_num(entry, "mem", int, what),
        maxmem=_num(entry, "maxmem", int, what),
        disk=_num(entry, "disk", int, what),
        maxdisk=_num(entry, "maxdisk", int, what),
        uptime=_num(entry, "uptime", int, what),
        lock=_opt_str(entry, "lock"),
        template=bool(_num(entry, "template", int, what)),
        hastate=_opt_str(entry, "hastate"),
    )


def parse_resources(data: Any, cluster: str) -> tuple[list[GuestObservation], dict[str, dict[str, Any]]]:
    """Guests, and node entries by name (for their usage figures), from /cluster/resources."""
    guests: list[GuestObservation] = []
    nodes: dict[str, dict[str, Any]] = {}
    for entry in _list_of_dicts(data, "/cluster/resources"):
        kind = entry.get("type")
        if kind in GUEST_TYPES:
            guests.append(parse_guest(entry, cluster))
        elif kind == "node" and entry.get("node"):
            nodes[str(entry["node"])] = entry
    return guests, nodes


def parse_cluster_status(data: Any) -> tuple[bool | None, dict[str, bool]]:
    """(quorate or None for a single node without a cluster, {node: online})."""
    quorate: bool | None = None
    online: dict[str, bool] = {}
    for entry in _list_of_dicts(data, "/cluster/status"):
        if entry.get("type") == "cluster":
            quorate = bool(_num(entry, "quorate", int, "cluster entry"))
        elif entry.get("type") == "node" and entry.get("name"):
            online[str(entry["name"])] = bool(_num(entry, "online", int, f"node {entry['name']}"))
    if not online:
        raise UnexpectedResponse("/cluster/status: no node entries")
    return quorate, online


def build_nodes(cluster: str, online: Mapping[str, bool], usage: Mapping[str, Mapping[str, Any]]) -> tuple[
        NodeObservation, ...]:
    """Nodes as /cluster/status sees them (the authority on online), with usage from /cluster/resources."""
    nodes = []
    for name in sorted(online):
        entry = usage.get(name, {})
        up = online[name]
        nodes.append(NodeObservation(
            cluster=cluster,
            node=name,
            online=up,
            cpu=_num(entry, "cpu", float, f"node {name}") if up else 0.0,
            mem=_num(entry, "mem", int, f"node {name}") if up else 0,
            maxmem=_num(entry, "maxmem", int, f"node {name}") if up else 0,
        ))
    return tuple(nodes)


def node_pressure(data: Any, node: str) -> NodePressure:
    """One node's ``/nodes/{node}/status`` (memory/swap/rootfs objects, ``loadavg`` as strings, ``cpuinfo``)."""
    what = f"status of node {node}"
    if not isinstance(data, dict):
        raise UnexpectedResponse(f"{what}: expected an object")

    def part(key: str) -> Mapping[str, Any]:
        value = data.get(key) or {}
        if not isinstance(value, dict):
            raise UnexpectedResponse(f"{what}: {key} is not an object")
        return value

    load = data.get("loadavg") or []
    if not isinstance(load, list):
        raise UnexpectedResponse(f"{what}: loadavg is not a list")
    memory, swap, rootfs = part("memory"), part("swap"), part("rootfs")
    return NodePressure(
        cpu=_num(data, "cpu", float, what), cpus=_num(part("cpuinfo"), "cpus", int, what),
        load1=_num({"load1": load[0] if load else 0}, "load1", float, what),
        mem_used=_num(memory, "used", int, what), mem_total=_num(memory, "total", int, what),
        swap_used=_num(swap, "used", int, what), swap_total=_num(swap, "total", int, what),
        ksm_shared=_num(part("ksm"), "shared", int, what),
        rootfs_used=_num(rootfs, "used", int, what), rootfs_total=_num(rootfs, "total", int, what))


def with_current_status(guest: GuestObservation, data: Any) -> GuestObservation:
    """A guest refined by its status/current answer (the QMP state tells paused from running)."""
    if not isinstance(data, dict) or "status" not in data:
        raise UnexpectedResponse(f"status/current of {guest.vmid}: expected an object with status")
    return replace(guest, status=str(data["status"]), qmpstatus=_opt_str(data, "qmpstatus"))


DISK_KEY = re.compile(r"^(?:ide|sata|scsi|virtio)\d+$|^efidisk0$|^tpmstate0$")


def disk_storages(data: Any, vmid: int) -> tuple[str, ...]:
    """The storages of a QEMU guest's disks from its ``config`` (``scsi0: local-lvm:vm-101-disk-0,size=32G``);
    CD-ROMs and passed-through devices (``/dev/...``, ``none``) are not on a storage."""
    if not isinstance(data, dict):
        raise UnexpectedResponse(f"config of {vmid}: expected an object")
    found: set[str] = set()
    for key, value in data.items():
        if not DISK_KEY.match(str(key)) or not isinstance(value, str):
            continue
        volume, *options = value.split(",")
        if "media=cdrom" in options or ":" not in volume or volume.startswith("/"):
            continue
        found.add(volume.partition(":")[0])
    return tuple(sorted(found))


def thin_pool_names(data: Any) -> dict[str, tuple[str, str]]:
    """``/storage`` (storage.cfg) -> {storage: (volume group, thin pool)} of its lvmthin storages::

        [{"storage": "local-lvm", "type": "lvmthin", "vgname": "pve", "thinpool": "data", "content": "images"}]
    """
    out: dict[str, tuple[str, str]] = {}
    for entry in _list_of_dicts(data, "/storage"):
        if entry.get("type") == "lvmthin" and entry.get("storage") and entry.get("vgname") and entry.get("thinpool"):
            out[str(entry["storage"])] = (str(entry["vgname"]), str(entry["thinpool"]))
    return out


def thin_pools(data: Any, node: str) -> dict[tuple[str, str], tuple[float, float]]:
    """A node's ``disks/lvmthin`` -> {(volume group, pool): (data used ratio, metadata used ratio)}; pools that
    report no size (nothing to divide by) are left out::

        [{"lv": "data", "vg": "pve", "lv_size": 107374182400, "used": 53687091200,
          "metadata_size": 1073741824, "metadata_used": 107374182}]
    """
    what = f"disks/lvmthin of node {node}"
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for entry in _list_of_dicts(data, what):
        size, meta = _num(entry, "lv_size", int, what), _num(entry, "metadata_size", int, what)
        if size <= 0 or meta <= 0 or not entry.get("lv") or not entry.get("vg"):
            continue
        out[(str(entry["vg"]), str(entry["lv"]))] = (
            round(min(_num(entry, "used", int, what) / size, 1.0), 6),
            round(min(_num(entry, "metadata_used", int, what) / meta, 1.0), 6))
    return out


def filesystems(data: Any) -> tuple[int, int]:
    """agent/get-fsinfo (``{"result": [GuestFilesystemInfo...]}``) -> (used, total) bytes over its filesystems.

    Each filesystem counts once (a device mounted twice, e.g. a bind mount, is one); entries without byte counts
    (pseudo or read-only filesystems the agent cannot measure) are left out."""
    if not isinstance(data, dict) or not isinstance(data.get("result"), list):
        raise UnexpectedResponse("agent/get-fsinfo: expected an object with a 'result' list")
    used = total = 0
    seen: set[str] = set()
    for entry in _list_of_dicts(data["result"], "agent/get-fsinfo"):
        name = str(entry.get("name") or entry.get("mountpoint") or "")
        if name in seen or entry.get("total-bytes") is None or entry.get("used-bytes") is None:
            continue
        seen.add(name)
        used += _num(entry, "used-bytes", int, "agent/get-fsinfo")
        total += _num(entry, "total-bytes", int, "agent/get-fsinfo")
    return used, total


def changed_guests(guests: Iterable[GuestObservation], previous: Mapping[int, str]) -> list[GuestObservation]:
    """Guests seen before whose status differs now (new guests are not "changed": nothing to compare)."""
    return [g for g in guests if g.vmid in previous and previous[g.vmid] != g.status]


def observe(
    cluster: str,
    now: datetime,
    resources: Any,
    status: Any,
    *,
    guests_seen_before: int = 0,
    guests_expected: int = 0,
) -> ClusterObservation:
    """One cycle's observation from the two fleet-wide answers.

    An empty guest list where guests were seen before, or where the inventory declares some, is an anomaly
    (FailureClass.EMPTY, ok=False): an API token that lost its VM.Audit right or a half-started pveproxy
    answers like this, and reading it as "every VM is gone" would page for the whole fleet.
    """
    guests, node_usage = parse_resources(resources, cluster)
    quorate, online = parse_cluster_status(status)
    nodes = build_nodes(cluster, online, node_usage)
    if not guests and (guests_seen_before or guests_expected):
        return ClusterObservation(
            cluster=cluster, at=now, ok=False, quorate=quorate, nodes=nodes, failure=FailureClass.EMPTY,
            detail=(f"/cluster/resources listed no guests, but {guests_seen_before} were seen before and "
                    f"{guests_expected} are in the inventory"),
        )
    guests.sort(key=lambda g: g.vmid)
    return ClusterObservation(cluster=cluster, at=now, ok=True, quorate=quorate, nodes=nodes, guests=tuple(guests))
