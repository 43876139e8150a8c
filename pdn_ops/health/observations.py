"""What collectors observe, as plain immutable values: the contract between collectors and the health model.

Collectors (``collectors/<kind>/parse.py``) build these from raw answers; ``pdn_ops.health.model`` evaluates
them into target states; the services layer stores them. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class FailureClass(StrEnum):
    """Why a check failed; bounded, so it may be a metric label."""

    DNS = "dns"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    TLS = "tls"
    STATUS = "status"
    KEYWORD = "keyword"
    PROTOCOL = "protocol"  # the peer answered something we cannot interpret
    AUTH = "auth"  # credentials refused (token revoked, key not accepted)
    HOST_KEY = "host_key"  # SSH host key is not the pinned one: a security event
    NODE_OFFLINE = "node_offline"  # Proxmox 595: the node behind the API is gone
    SERVER_ERROR = "server_error"  # 5xx from an API we poll
    EMPTY = "empty"  # an answer that is suspiciously empty, never taken as "everything is gone"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class SiteCheck:
    url: str
    at: datetime
    ok: bool
    status_code: int | None = None
    total_s: float | None = None
    ttfb_s: float | None = None
    keyword_found: bool | None = None
    redirects: int = 0
    bytes_read: int = 0
    tls_expires_at: datetime | None = None
    tls_days_left: float | None = None
    failure: FailureClass | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class GuestObservation:
    cluster: str
    vmid: int
    node: str
    name: str
    type: str  # "qemu" | "lxc"
    status: str  # Proxmox status: running, stopped, paused, ...
    cpu: float = 0.0  # ratio of maxcpu in use
    maxcpu: float = 0.0
    mem: int = 0
    maxmem: int = 0
    disk: int = 0
    maxdisk: int = 0
    uptime: int = 0
    lock: str | None = None
    template: bool = False
    hastate: str | None = None  # HA resource state when HA-managed (started, stopped, error, ...)
    qmpstatus: str | None = None  # from a targeted status/current call, only for guests whose state changed
    # Filesystems as the QEMU guest agent reports them (agent/get-fsinfo): Proxmox's ``disk`` is 0 for a QEMU
    # guest, so this is the only disk usage the API can give. None: no agent (or it did not answer).
    fs_used: int | None = None
    fs_total: int | None = None
    # The storages of its disks (from its config), read only for a guest found in io-error.
    disk_storages: tuple[str, ...] = ()
    # Seconds its ``lock`` has been held by no running task (None: not locked, or a task holds it).
    lock_free_s: float | None = None


@dataclass(frozen=True, slots=True)
class NodePressure:
    """A node's ``/nodes/{node}/status``: what presses it (memory, swap, load, KSM, its root filesystem)."""

    cpu: float = 0.0
    cpus: int = 0
    load1: float = 0.0
    mem_used: int = 0
    mem_total: int = 0
    swap_used: int = 0
    swap_total: int = 0
    ksm_shared: int = 0
    rootfs_used: int = 0
    rootfs_total: int = 0


@dataclass(frozen=True, slots=True)
class NodeObservation:
    cluster: str
    node: str
    online: bool
    cpu: float = 0.0
    mem: int = 0
    maxmem: int = 0
    pressure: NodePressure | None = None  # with ``node_status`` watched on the cluster


@dataclass(frozen=True, slots=True)
class StorageObservation:
    """One storage on one node, as ``/cluster/resources`` (type storage) shows it."""

    node: str
    storage: str
    plugintype: str = ""
    content: tuple[str, ...] = ()
    shared: bool = False
    available: bool = True  # status "available"; anything else: PVE could not activate it on the node
    used: int = 0
    total: int = 0
    # An LVM-thin pool's data and metadata use (0..1), where the node's thin-pool list gives them.
    thin_data: float | None = None
    thin_metadata: float | None = None

    @property
    def fill(self) -> float:
        """How full it is for its VMs' writes: its use, or an LVM-thin pool's data or metadata use, the highest (a
        pool whose metadata is full refuses writes while its data has room)."""
        return max(self.used / self.total if self.total else 0.0, self.thin_data or 0.0, self.thin_metadata or 0.0)


@dataclass(frozen=True, slots=True)
class BackupObservation:
    """What the backup storages, the vzdump tasks and the jobs say about one guest."""

    vmid: int
    jobs: tuple[str, ...] = ()  # the enabled vzdump jobs that include it: none means unprotected
    last_ok_at: datetime | None = None  # the newest backup volume's ctime
    last_ok_size: int | None = None
    last_ok_storage: str | None = None
    last_failed_at: datetime | None = None  # the newest vzdump task whose part for this guest failed
    failed_storage: str | None = None
    failure_log: str = ""  # that task's error line and the log's last lines


@dataclass(frozen=True, slots=True)
class ClusterObservation:
    """One Proxmox collection cycle for one cluster."""

    cluster: str
    at: datetime
    ok: bool
    quorate: bool | None = None
    nodes: tuple[NodeObservation, ...] = ()
    guests: tuple[GuestObservation, ...] = ()
    failure: FailureClass | None = None
    detail: str = ""
    api_calls: int = 0
    duration_s: float = 0.0
    storages: tuple[StorageObservation, ...] = ()
    backups: tuple[BackupObservation, ...] | None = None  # None: backups not watched on this cluster


@dataclass(frozen=True, slots=True)
class Mount:
    mount: str
    size_bytes: int
    used_bytes: int
    avail_bytes: int

    @property
    def used_ratio(self) -> float:
        return self.used_bytes / self.size_bytes if self.size_bytes else 0.0


@dataclass(frozen=True, slots=True)
class SshObservation:
    """One agentless SSH check of one guest."""

    cluster: str
    vmid: int
    at: datetime
    ok: bool
    failure: FailureClass | None = None
    detail: str = ""
    mounts: tuple[Mount, ...] = ()
    mem_total_bytes: int | None = None
    mem_available_bytes: int | None = None
    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    uptime_s: float | None = None
    services: dict[str, str] = field(default_factory=dict)  # unit -> systemctl is-active answer
    failed_units: tuple[str, ...] = ()
