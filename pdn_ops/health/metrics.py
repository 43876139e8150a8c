"""Every Prometheus metric of pdn-ops, in one place.

Series are built per scrape from the latest state snapshot (``health_targets`` and ``job_status``, one query
each, kept in memory by ``SnapshotCache``); no scrape reads history. Labels are bounded
ids and codes (``site_id``, ``vm_id``, ``cluster``, ``vmid``, ``node``, ``opd`` code, ``kind``, ``state``,
``collector`` job name, a guest's fullest ``mount`` points capped at ten): never user text such as complaint
titles or URLs. Each app has its own registry (``build_registry``): nothing global, tests stay independent.

Health series (this module):

    pdn_target_state{kind,target,opd,state}             1 for the target's current state
    pdn_site_up / pdn_vm_up / pdn_guest_up / pdn_node_up / pdn_cluster_up   1 UP or DEGRADED, 0 DOWN (UNKNOWN: absent)
    pdn_site_dependency_down / pdn_vm_dependency_down{cause}   1 when an upstream is observed down (cause: it)
    pdn_open_incidents{opd}                            root incidents, as the fleet page counts them
    pdn_target_cause_unknown{kind,target,opd}          1 when a failing target's upstream cannot be seen
    pdn_site_failure{failure}                          1 while the site is DOWN, with its failure class
    pdn_site_response_seconds, pdn_site_http_status_code
    pdn_tls_cert_expiry_timestamp_seconds, pdn_tls_cert_expiry_remaining_seconds (days: / 86400)
    pdn_vm_cpu_ratio, pdn_vm_cpus, pdn_vm_memory_{used,total}_bytes, pdn_vm_disk_{used,total}_bytes
    pdn_guest_filesystem_used_ratio{mount}, pdn_guest_memory_{available,total}_bytes, pdn_guest_load1,
    pdn_guest_services_inactive, pdn_guest_failed_units
    pdn_vm_backup_*, pdn_vm_lock_stale{lock}, pdn_storage_*, pdn_node_* (the safety net: backups, locks,
    storage pools, node pressure)
    pdn_collector_runs_total, pdn_collector_errors_total, pdn_collector_last_duration_seconds,
    pdn_collector_last_run_success, pdn_collector_last_success_timestamp_seconds,
    pdn_collector_failing{failure}, pdn_collector_interval_seconds
    pdn_health_snapshot_timestamp_seconds
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from pdn_ops.core.db.tables import utcnow
from pdn_ops.core.metric_names import SERIES, counter, gauge
from pdn_ops.health.queries import HealthSnapshot, SnapshotDelta, TargetSnapshot, target_snapshot
from pdn_ops.health.service import Target

SNAPSHOT_TTL_S = 5.0
# A cache that jobs of this process have fed within this time is current: scrapes do not refresh it. Past it (the
# scheduler runs elsewhere, or stopped leading here) it falls back to background refreshes every ``ttl``.
FED_TTL_S = 60.0
STATES = ("up", "degraded", "down", "unknown")
UP_VALUE = {"up": "1", "degraded": "1", "down": "0"}

SnapshotLoader = Callable[[], HealthSnapshot]
DeltaLoader = Callable[[bool, bool], SnapshotDelta]  # (targets written, OPD codes needed)
log = logging.getLogger(__name__)


class SnapshotCache:
    """The latest snapshot in memory, with its rendered health families, so a scrape never waits for either.

    Reading and rendering the whole snapshot costs tens of milliseconds per thousand targets, so it happens once
    per process (the first scrape). After that the scheduler's jobs keep it current in their own thread: a job
    hands over the targets it wrote (``written``, from its transaction once committed) and ``after_job`` re-renders
    only those, re-reads ``job_status`` and, when targets were written, the incident counts; a job that wrote no
    health data only refreshes the job rows. Scrapes never start a rebuild while jobs feed the cache; in a process
    whose jobs do not (a web worker without the scheduler) a scrape that finds the copy older than ``ttl`` is
    served it and starts one background reload (stale-while-revalidate). ``pdn_health_snapshot_timestamp_seconds``
    shows the age.
    """

    def __init__(self, load: SnapshotLoader, ttl: float = SNAPSHOT_TTL_S, *,
                 load_delta: DeltaLoader | None = None) -> None:
        self._load = load
        self._load_delta = load_delta
        self._ttl = ttl
        self._lock = threading.Lock()  # the published value and the pending writes
        self._update = threading.Lock()  # one rebuild or update at a time; scrapes never take it
        self._value: tuple[HealthSnapshot, bytes] | None = None
        self._loaded_at = 0.0
        self._fed_at = float("-inf")
        self._refreshing = False
        self._pending: dict[int, Target] = {}
        self._render = _Rendered()

    def get(self) -> HealthSnapshot:
        return self._current()[0]

    def body(self) -> bytes:
        """The health families of the current snapshot, rendered once per snapshot."""
        return self._current()[1]

    def _current(self) -> tuple[HealthSnapshot, bytes]:
        with self._lock:
            value, now = self._value, time.monotonic()
            current = now - self._loaded_at <= self._ttl or now - self._fed_at <= FED_TTL_S
            start = value is not None and not current and not self._refreshing
            if start:
                self._refreshing = True
        if value is None:
            return self._refresh()
        if start:
            threading.Thread(target=self._background, name="pdn-ops-snapshot", daemon=True).start()
        return value

    def refresh(self) -> HealthSnapshot:
        return self._refresh()[0]

    def _refresh(self) -> tuple[HealthSnapshot, bytes]:
        with self._update:
            with self._lock:
                # Writes noted from here on are applied after this load (again, if it saw them: same values).
                self._pending.clear()
            snapshot = self._load()
            self._render.reset(snapshot)
            value = (snapshot, self._render.body())
            with self._lock:
                self._value, self._loaded_at = value, time.monotonic()
            return value

    def _background(self) -> None:
        try:
            self._refresh()
        except Exception:
            # Keep serving the previous snapshot (its timestamp shows its age); the error goes to the log.
            log.exception("could not refresh the health snapshot")
        finally:
            with self._lock:
                self._refreshing = False

    def written(self, targets: Iterable[Target]) -> None:
        """Targets a job's committed transaction wrote (``pdn_ops.health.service.written_targets``)."""
        with self._lock:
            if self._value is None:
                return  # the first scrape will read them all
            for target in targets:
                self._pending[target.id] = target

    def after_job(self) -> None:
        """What the scheduler calls after every job, in the job's thread: bring the snapshot up to date with what
        the job wrote. Nothing happens until a scrape has asked for the snapshot."""
        with self._update:
            with self._lock:
                if self._value is None:
                    return
                pending, self._pending = self._pending, {}
            if self._load_delta is None:
                with self._lock:
                    self._loaded_at = float("-inf")  # no incremental source: the next scrape starts a reload
                return
            need_opds = any(t.opd_id is not None and t.opd_id not in self._render.opd_codes
                            for t in pending.values())
            try:
                delta = self._load_delta(bool(pending), need_opds)
            except Exception:
                with self._lock:  # the database is out: keep what the job wrote for the next update
                    self._pending = {**pending, **self._pending}
                raise
            previous = self._render.snapshot
            snapshot = self._render.apply(pending.values(), delta)
            # Only the job rows changed (rendered per scrape by the registry): the health families stand.
            same = not pending and snapshot.incidents == previous.incidents and self._value is not None
            value = (snapshot, self._value[1] if same and self._value is not None else self._render.body())
            with self._lock:
                self._value, self._fed_at = value, time.monotonic()

    def invalidate(self) -> None:
        """Make the next scrape start a refresh (it is still served the current copy)."""
        with self._lock:
            self._loaded_at = self._fed_at = float("-inf")


class _Rendered:
    """The health families kept per target (target id -> its lines, per family), so that an update re-renders
    the targets it names and joins the families again, instead of re-rendering every target."""

    def __init__(self) -> None:
        self.reset(HealthSnapshot(taken_at=utcnow()))

    def reset(self, snap: HealthSnapshot) -> None:
        self.snapshot = snap
        self.targets: dict[int, TargetSnapshot] = {}
        self.families: dict[str, dict[int, str]] = {f.name: {} for f in FAMILIES}
        self.joined: dict[str, str] = {}  # a family's samples joined, until one of its targets changes
        self.family_of: dict[int, tuple[str, ...]] = {}
        self.guest_of_vm: dict[int, int] = {}
        self.vm_target_of: dict[int, int] = {}
        self.opd_codes: dict[int, str] = {}
        self._ids_of_opd_code: dict[str, int] = {}
        self._next_anonymous = -1
        for t in snap.targets:
            self._remember(t)
        now = snap.taken_at.timestamp()
        for target_id in self.targets:
            self._render_one(target_id, now)

    def _remember(self, t: TargetSnapshot) -> int:
        target_id = t.id
        if target_id is None:  # a snapshot built by hand (tests): any stable key will do
            target_id, self._next_anonymous = self._next_anonymous, self._next_anonymous - 1
        self.targets[target_id] = t
        if t.vm_id is not None and t.kind == "guest":
            self.guest_of_vm[t.vm_id] = target_id
        elif t.vm_id is not None and t.kind == "vm":
            self.vm_target_of[t.vm_id] = target_id
        return target_id

    def _render_one(self, target_id: int, now: float) -> None:
        t = self.targets[target_id]
        guest = self.targets.get(self.guest_of_vm.get(t.vm_id, 0)) if t.kind == "vm" and t.vm_id is not None \
            else None
        lines = _target_lines(t, now, guest.values.get("mounts") if guest is not None else None)
        old = self.family_of.get(target_id, ())
        for name in old:
            if name not in lines:
                del self.families[name][target_id]
                self.joined.pop(name, None)
        for name, samples in lines.items():
            self.families[name][target_id] = "\n".join(samples)
            self.joined.pop(name, None)
        self.family_of[target_id] = tuple(lines)

    def apply(self, written: Iterable[Target], delta: SnapshotDelta) -> HealthSnapshot:
        if delta.opd_codes is not None:
            self.opd_codes = delta.opd_codes
        now = utcnow()
        dirty: set[int] = set()
        for target in written:
            t = target_snapshot(target, self.opd_codes)
            self._remember(t)
            dirty.add(target.id)
            if t.kind == "guest" and t.vm_id is not None and t.vm_id in self.vm_target_of:
                dirty.add(self.vm_target_of[t.vm_id])  # a VM's disk series may come from its guest's mounts
        stamp = now.timestamp()
        for target_id in dirty:
            self._render_one(target_id, stamp)
        old = self.snapshot
        self.snapshot = HealthSnapshot(
            taken_at=now, targets=tuple(self.targets.values()) if dirty else old.targets, jobs=delta.jobs,
            incidents=delta.incidents if delta.incidents is not None else old.incidents)
        return self.snapshot

    def body(self) -> bytes:
        out: list[str] = []
        incidents = self.snapshot.incidents
        for family in FAMILIES:
            name = family.name
            if name == "pdn_open_incidents":
                text = "\n".join(f'pdn_open_incidents{{opd="{_esc(code)}"}} {count}'
                                  for code, count in sorted(incidents.items()))
            else:
                text = self.joined.get(name) or "\n".join(self.families[name].values())
                self.joined[name] = text
            if text:
                out.append(f"# HELP {name} {family.help}\n# TYPE {name} gauge")
                out.append(text)
        return ("\n".join(out) + "\n").encode() if out else b""


# --- fleet-sized families: written directly -----------------------------------------------------------------
# prometheus_client's generic formatter costs about 10 us per sample; 2,000 sites and 2,000 VMs make ~30,000
# samples, far over the 100 ms budget of a scrape. These families are therefore rendered by a purpose-built
# writer of the text exposition format (0.0.4) from the snapshot; the small families (jobs, other areas) still
# go through prometheus_client collectors and the registry. Both halves are checked by `promtool check metrics`.


# The fleet-sized families, in the order they are written (names, labels and help: pdn_ops.core.metric_names).
FAMILIES = tuple(SERIES[name] for name in (
    "pdn_target_state", "pdn_target_cause_unknown", "pdn_site_up", "pdn_site_dependency_down", "pdn_site_failure",
    "pdn_site_response_seconds",
    "pdn_site_http_status_code", "pdn_tls_cert_expiry_timestamp_seconds", "pdn_tls_cert_expiry_remaining_seconds",
    "pdn_vm_up", "pdn_vm_dependency_down", "pdn_vm_cpu_ratio", "pdn_vm_cpus", "pdn_vm_memory_used_bytes",
    "pdn_vm_memory_total_bytes", "pdn_vm_disk_used_bytes", "pdn_vm_disk_total_bytes", "pdn_guest_up",
    "pdn_guest_filesystem_used_ratio", "pdn_guest_memory_available_bytes", "pdn_guest_memory_total_bytes",
    "pdn_guest_load1", "pdn_guest_services_inactive", "pdn_guest_failed_units", "pdn_open_incidents",
    "pdn_vm_backup_last_success_timestamp_seconds", "pdn_vm_backup_failed", "pdn_vm_backup_protected",
    "pdn_vm_backup_state", "pdn_vm_backup_max_age_seconds", "pdn_vm_lock_stale", "pdn_storage_up",
    "pdn_storage_used_bytes", "pdn_storage_total_bytes",
    "pdn_storage_full_in_seconds", "pdn_storage_thin_data_used_ratio", "pdn_storage_thin_metadata_used_ratio",
    "pdn_node_memory_used_ratio", "pdn_node_swap_used_ratio", "pdn_node_load1",
    "pdn_node_cpus", "pdn_node_ksm_shared_bytes", "pdn_node_rootfs_used_ratio", "pdn_node_up",
    "pdn_cluster_up"))
SITE_VALUES = (("pdn_site_response_seconds", "response_s"), ("pdn_site_http_status_code", "status_code"),
               ("pdn_tls_cert_expiry_timestamp_seconds", "tls_expiry_ts"))
VM_VALUES = (("pdn_vm_cpu_ratio", "cpu"), ("pdn_vm_cpus", "maxcpu"), ("pdn_vm_memory_used_bytes", "mem"),
             ("pdn_vm_memory_total_bytes", "maxmem"))


def vm_disk(values: dict[str, object], guest_mounts: object) -> tuple[object, object]:
    """A VM's disk (used, total): the guest agent's filesystems where the VM has one, Proxmox's figure where it
    has one (containers), else the SSH collector's df over the guest's filesystems; (None, total) when unknown.

    Proxmox reports disk 0 for a QEMU guest it cannot look into: that is not a measurement."""
    if isinstance(values.get("fs_total"), int) and values.get("fs_total") and isinstance(values.get("fs_used"), int):
        return values["fs_used"], values["fs_total"]
    if isinstance(values.get("disk"), int) and values.get("disk"):
        return values["disk"], values.get("maxdisk")
    if isinstance(guest_mounts, list) and guest_mounts:
        used = sum(int(m.get("used") or 0) for m in guest_mounts if isinstance(m, dict))
        size = sum(int(m.get("size") or 0) for m in guest_mounts if isinstance(m, dict))
        if size:
            return used, size
    return None, values.get("maxdisk")
GUEST_VALUES = (("pdn_guest_memory_available_bytes", "mem_available"), ("pdn_guest_memory_total_bytes",
                                                                        "mem_total"),
                ("pdn_guest_load1", "load1"), ("pdn_guest_services_inactive", "services_inactive"),
                ("pdn_guest_failed_units", "failed_units"))


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def render_health(snap: HealthSnapshot) -> str:
    """The fleet-sized families in the text exposition format, from one snapshot."""
    lines: dict[str, list[str]] = {f.name: [] for f in FAMILIES}
    now = snap.taken_at.timestamp()
    mounts_of: dict[int | None, object] = {t.vm_id: t.values.get("mounts") for t in snap.targets
                                           if t.kind == "guest" and t.vm_id is not None}
    for t in snap.targets:
        for name, samples in _target_lines(t, now, mounts_of.get(t.vm_id) if t.kind == "vm" else None).items():
            lines[name].extend(samples)
    for code, count in sorted(snap.incidents.items()):
        lines["pdn_open_incidents"].append(f'pdn_open_incidents{{opd="{_esc(code)}"}} {count}')
    out: list[str] = []
    for family in FAMILIES:
        samples = lines[family.name]
        if samples:
            out.append(f"# HELP {family.name} {family.help}\n# TYPE {family.name} gauge")
            out.extend(samples)
    return "\n".join(out) + "\n" if out else ""


def _target_lines(t: TargetSnapshot, now: float, guest_mounts: object) -> dict[str, list[str]]:
    """One target's samples, per family (``guest_mounts``: a VM's guest's filesystems, for its disk series)."""
    lines: dict[str, list[str]] = defaultdict(list)
    state = lines["pdn_target_state"]
    opd = _esc(t.opd or "")
    up = UP_VALUE.get(t.state)
    dep = f'cause="{_esc(t.caused_by)}"}} 1' if t.caused_by else 'cause=""} 0'
    values = t.values
    if t.cause_unknown and t.state != "up":
        target = t.site_id if t.kind == "site" else t.vm_id if t.kind in ("vm", "guest") else _esc(t.ref)
        lines["pdn_target_cause_unknown"].append(
            f'pdn_target_cause_unknown{{kind="{t.kind}",target="{target}",opd="{opd}"}} 1')
    if t.kind == "site":
        lbl = f'site_id="{t.site_id}",opd="{opd}"'
        state.append(f'pdn_target_state{{kind="site",target="{t.site_id}",opd="{opd}",state="{t.state}"}} 1')
        if up is not None:
            lines["pdn_site_up"].append(f"pdn_site_up{{{lbl}}} {up}")
            lines["pdn_site_dependency_down"].append(f"pdn_site_dependency_down{{{lbl},{dep}")
            if t.state == "down" and t.failure:
                lines["pdn_site_failure"].append(f'pdn_site_failure{{{lbl},failure="{_esc(t.failure)}"}} 1')
        for name, key in SITE_VALUES:
            value = _num(values.get(key))
            if value is not None:
                lines[name].append(f"{name}{{{lbl}}} {value}")
        expiry = values.get("tls_expiry_ts")
        if isinstance(expiry, int | float):
            lines["pdn_tls_cert_expiry_remaining_seconds"].append(
                f"pdn_tls_cert_expiry_remaining_seconds{{{lbl}}} {_num(round(expiry - now, 3))}")
    elif t.kind == "vm":
        cluster, _, vmid = t.ref.partition("/")
        lbl = f'vm_id="{t.vm_id}",cluster="{_esc(cluster)}",vmid="{_esc(vmid)}",opd="{opd}"'
        state.append(f'pdn_target_state{{kind="vm",target="{t.vm_id}",opd="{opd}",state="{t.state}"}} 1')
        if up is not None:
            lines["pdn_vm_up"].append(f"pdn_vm_up{{{lbl}}} {up}")
            lines["pdn_vm_dependency_down"].append(f"pdn_vm_dependency_down{{{lbl},{dep}")
        for name, key in VM_VALUES:
            value = _num(values.get(key))
            if value is not None:
                lines[name].append(f"{name}{{{lbl}}} {value}")
        _backup_lines(lines, lbl, values)
        lock = values.get("lock")
        if isinstance(lock, str) and lock:
            stale = 1 if isinstance(values.get("lock_free_s"), int | float) else 0
            lines["pdn_vm_lock_stale"].append(f'pdn_vm_lock_stale{{{lbl},lock="{_esc(lock)}"}} {stale}')
        for name, disk_value in zip(("pdn_vm_disk_used_bytes", "pdn_vm_disk_total_bytes"),
                                    vm_disk(values, guest_mounts), strict=True):
            value = _num(disk_value)
            if value is not None:
                lines[name].append(f"{name}{{{lbl}}} {value}")
    elif t.kind == "guest":
        lbl = f'vm_id="{t.vm_id}",opd="{opd}"'
        state.append(f'pdn_target_state{{kind="guest",target="{t.vm_id}",opd="{opd}",state="{t.state}"}} 1')
        if up is not None:
            lines["pdn_guest_up"].append(f"pdn_guest_up{{{lbl}}} {up}")
        for mount in values.get("mounts") or ():
            ratio = _num(mount.get("used_ratio"))
            if ratio is not None:
                lines["pdn_guest_filesystem_used_ratio"].append(
                    f'pdn_guest_filesystem_used_ratio{{{lbl},mount="{_esc(str(mount.get("mount")))}"}} {ratio}')
        for name, key in GUEST_VALUES:
            value = _num(values.get(key))
            if value is not None:
                lines[name].append(f"{name}{{{lbl}}} {value}")
    elif t.kind == "node":
        cluster, _, node = t.ref.partition("/")
        state.append(f'pdn_target_state{{kind="node",target="{_esc(t.ref)}",opd="",state="{t.state}"}} 1')
        if up is not None:
            lines["pdn_node_up"].append(f'pdn_node_up{{cluster="{_esc(cluster)}",node="{_esc(node)}"}} {up}')
        if t.state in ("up", "degraded"):
            _node_lines(lines, f'cluster="{_esc(cluster)}",node="{_esc(node)}"', values)
    elif t.kind == "cluster":
        state.append(f'pdn_target_state{{kind="cluster",target="{_esc(t.ref)}",opd="",state="{t.state}"}} 1')
        if up is not None:
            lines["pdn_cluster_up"].append(f'pdn_cluster_up{{cluster="{_esc(t.ref)}"}} {up}')
        _storage_lines(lines, _esc(t.ref), values.get("storages"))
    return {name: samples for name, samples in lines.items() if samples}


BACKUP_STATES = ("ok", "failed", "too_old", "unprotected")


def _backup_lines(lines: dict[str, list[str]], lbl: str, values: dict[str, object]) -> None:
    """A VM's backup series, when its cluster's backups are watched (``backup_state`` in its values)."""
    current = values.get("backup_state")
    if current not in BACKUP_STATES:
        return
    for state in BACKUP_STATES:
        lines["pdn_vm_backup_state"].append(
            f'pdn_vm_backup_state{{{lbl},state="{state}"}} {1 if state == current else 0}')
    max_age = values.get("backup_max_age_h")
    if isinstance(max_age, int | float):
        lines["pdn_vm_backup_max_age_seconds"].append(
            f"pdn_vm_backup_max_age_seconds{{{lbl}}} {_num(round(max_age * 3600, 3))}")
    ok_ts = _num(values.get("backup_ok_ts"))
    if ok_ts is not None:
        lines["pdn_vm_backup_last_success_timestamp_seconds"].append(
            f"pdn_vm_backup_last_success_timestamp_seconds{{{lbl}}} {ok_ts}")
    storage = values.get("backup_failed_storage") if current == "failed" else ""
    lines["pdn_vm_backup_failed"].append(
        f'pdn_vm_backup_failed{{{lbl},storage="{_esc(str(storage or ""))}"}} {1 if current == "failed" else 0}')
    lines["pdn_vm_backup_protected"].append(
        f"pdn_vm_backup_protected{{{lbl}}} {0 if current == 'unprotected' else 1}")


def _ratio(used: object, total: object) -> float | None:
    if isinstance(used, int | float) and isinstance(total, int | float) and total > 0:
        return round(used / total, 6)
    return None


def _node_lines(lines: dict[str, list[str]], lbl: str, values: dict[str, object]) -> None:
    """A node's pressure, when its status is watched (``mem_total`` in its values)."""
    if "mem_total" not in values:
        return
    for name, value in (("pdn_node_memory_used_ratio", _ratio(values.get("mem_used"), values.get("mem_total"))),
                        ("pdn_node_swap_used_ratio", _ratio(values.get("swap_used"), values.get("swap_total"))),
                        ("pdn_node_load1", values.get("load1")), ("pdn_node_cpus", values.get("cpus")),
                        ("pdn_node_ksm_shared_bytes", values.get("ksm_shared")),
                        ("pdn_node_rootfs_used_ratio", _ratio(values.get("rootfs_used"), values.get("rootfs_total")))):
        text = _num(value)
        if text is not None:
            lines[name].append(f"{name}{{{lbl}}} {text}")


def _days_to_seconds(days: object) -> float | None:
    # promtool's lint wants base units: the forecast is kept in days and exported in seconds.
    return round(days * 86400, 3) if isinstance(days, int | float) and not isinstance(days, bool) else None


def _storage_lines(lines: dict[str, list[str]], cluster: str, storages: object) -> None:
    if not isinstance(storages, list):
        return
    for item in storages:
        if not isinstance(item, dict):
            continue
        lbl = f'cluster="{cluster}",node="{_esc(str(item.get("node")))}",storage="{_esc(str(item.get("storage")))}"'
        lines["pdn_storage_up"].append(
            f'pdn_storage_up{{{lbl},backup="{1 if item.get("backup") else 0}"}} {1 if item.get("available") else 0}')
        if item.get("available"):
            thin = item.get("thin")
            thin = thin if isinstance(thin, dict) else {}
            for name, value in (("pdn_storage_used_bytes", item.get("used")),
                                ("pdn_storage_total_bytes", item.get("total")),
                                ("pdn_storage_full_in_seconds", _days_to_seconds(item.get("days_until_full"))),
                                ("pdn_storage_thin_data_used_ratio", thin.get("data")),
                                ("pdn_storage_thin_metadata_used_ratio", thin.get("metadata"))):
                text = _num(value)
                if text is not None:
                    lines[name].append(f"{name}{{{lbl}}} {text}")


class JobCollector(Collector):
    """Collector duration and errors from ``job_status`` (one row per job), through prometheus_client."""

    def __init__(self, snapshot: Callable[[], HealthSnapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return ()  # no collection at registration time: that would query the database

    def collect(self) -> Iterator[Metric]:
        yield from _collector_metrics(self._snapshot())


def _collector_metrics(snap: HealthSnapshot) -> Iterator[Metric]:
    runs, errors = counter("pdn_collector_runs"), counter("pdn_collector_errors")
    duration = gauge("pdn_collector_last_duration_seconds")
    success = gauge("pdn_collector_last_run_success")
    last_ok = gauge("pdn_collector_last_success_timestamp_seconds")
    failing = gauge("pdn_collector_failing")
    interval = gauge("pdn_collector_interval_seconds")
    for job in snap.jobs:
        values = [job.job, job.kind]
        runs.add_metric(values, job.runs_total)
        errors.add_metric(values, job.errors_total)
        if job.last_duration_s is not None:
            duration.add_metric(values, job.last_duration_s)
        if job.last_ok is not None:
            success.add_metric(values, 1.0 if job.last_ok else 0.0)
        if job.last_success_at is not None:
            last_ok.add_metric(values, job.last_success_at.timestamp())
        if job.last_ok is False:
            failing.add_metric([*values, job.last_failure or "error"], 1.0)
        if job.interval_s is not None:
            interval.add_metric(values, job.interval_s)
    taken = gauge("pdn_health_snapshot_timestamp_seconds")
    taken.add_metric([], snap.taken_at.timestamp())
    yield from (runs, errors, duration, success, last_ok, failing, interval, taken)


def build_registry(snapshot: Callable[[], HealthSnapshot], extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """The small families: jobs and other areas' collectors (the fleet-sized ones come from ``render_health``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobCollector(snapshot))
    for collector in extra:
        registry.register(collector)
    return registry


def render(cache: SnapshotCache, registry: CollectorRegistry) -> bytes:
    """The whole /metrics body: the health families (pre-rendered per snapshot), then the registry's."""
    return cache.body() + generate_latest(registry)
