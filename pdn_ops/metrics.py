"""Every Prometheus metric of pdn-ops, in one place.

Series are built per scrape by custom collectors from the latest state snapshot (``health_targets`` and
``job_status``, one cheap query each, cached for ``SNAPSHOT_TTL_S``); no scrape reads history. Labels are bounded
ids and codes (``site_id``, ``vm_id``, ``cluster``, ``vmid``, ``node``, ``opd`` code, ``kind``, ``state``,
``collector`` job name, a guest's fullest ``mount`` points capped at ten): never user text such as complaint
titles or URLs. Each app has its own registry (``build_registry``): nothing global, tests stay independent.

Health series (this module):

    pdn_target_state{kind,target,opd,state}             1 for the target's current state
    pdn_site_up / pdn_vm_up / pdn_guest_up / pdn_node_up / pdn_cluster_up   1 UP or DEGRADED, 0 DOWN (UNKNOWN: absent)
    pdn_site_dependency_down / pdn_vm_dependency_down   1 when the target is down because a dependency is
    pdn_site_response_seconds, pdn_site_http_status_code
    pdn_tls_cert_expiry_timestamp_seconds, pdn_tls_cert_expiry_days
    pdn_vm_cpu_ratio, pdn_vm_cpus, pdn_vm_memory_{used,total}_bytes, pdn_vm_disk_{used,total}_bytes
    pdn_guest_filesystem_used_ratio{mount}, pdn_guest_memory_{available,total}_bytes, pdn_guest_load1,
    pdn_guest_services_inactive, pdn_guest_failed_units
    pdn_collector_runs_total, pdn_collector_errors_total, pdn_collector_last_duration_seconds,
    pdn_collector_last_run_success, pdn_collector_last_success_timestamp_seconds
    pdn_health_snapshot_timestamp_seconds
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from pdn_ops.services.health_queries import HealthSnapshot

SNAPSHOT_TTL_S = 1.0
STATES = ("up", "degraded", "down", "unknown")
UP_VALUE = {"up": 1.0, "degraded": 1.0, "down": 0.0}

SnapshotLoader = Callable[[], HealthSnapshot]


class SnapshotCache:
    """The latest snapshot, re-read at most once per ``ttl`` seconds; jobs call ``invalidate`` after writing."""

    def __init__(self, load: SnapshotLoader, ttl: float = SNAPSHOT_TTL_S) -> None:
        self._load = load
        self._ttl = ttl
        self._lock = threading.Lock()
        self._value: HealthSnapshot | None = None
        self._loaded_at = 0.0

    def get(self) -> HealthSnapshot:
        with self._lock:
            if self._value is None or time.monotonic() - self._loaded_at > self._ttl:
                self._value = self._load()
                self._loaded_at = time.monotonic()
            return self._value

    def invalidate(self) -> None:
        with self._lock:
            self._value = None


def _gauge(name: str, doc: str, labels: list[str], unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels, unit=unit)


def _num(values: dict[str, Any], key: str) -> float | None:
    value = values.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class HealthCollector(Collector):
    """Target states and measured values from the snapshot."""

    def __init__(self, snapshot: Callable[[], HealthSnapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return ()  # no collection at registration time: that would query the database

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        site_l, vm_l, guest_l = ["site_id", "opd"], ["vm_id", "cluster", "vmid", "opd"], ["vm_id", "opd"]
        state = _gauge("pdn_target_state", "Current health state of a target (1 for the current state).",
                       ["kind", "target", "opd", "state"])
        site_up = _gauge("pdn_site_up", "1 when the site answers as expected (UP or DEGRADED), 0 when DOWN.", site_l)
        site_dep = _gauge("pdn_site_dependency_down", "1 when the site is down because its VM or node is.", site_l)
        response = _gauge("pdn_site_response_seconds", "Total time of the latest site check.", site_l)
        status = _gauge("pdn_site_http_status_code", "HTTP status of the latest site check.", site_l)
        tls_ts = _gauge("pdn_tls_cert_expiry_timestamp_seconds", "Expiry of the site's TLS certificate.", site_l)
        tls_days = _gauge("pdn_tls_cert_expiry_days", "Days until the site's TLS certificate expires.", site_l)
        vm_up = _gauge("pdn_vm_up", "1 when Proxmox reports the VM running, 0 when not.", vm_l)
        vm_dep = _gauge("pdn_vm_dependency_down", "1 when the VM is down because its node or cluster is.", vm_l)
        vm_cpu = _gauge("pdn_vm_cpu_ratio", "CPU use of the VM as a ratio of its allocated CPUs.", vm_l)
        vm_cpus = _gauge("pdn_vm_cpus", "CPUs allocated to the VM.", vm_l)
        vm_mem = _gauge("pdn_vm_memory_used_bytes", "Memory used by the VM.", vm_l)
        vm_maxmem = _gauge("pdn_vm_memory_total_bytes", "Memory allocated to the VM.", vm_l)
        vm_disk = _gauge("pdn_vm_disk_used_bytes", "Disk used by the VM as Proxmox reports it.", vm_l)
        vm_maxdisk = _gauge("pdn_vm_disk_total_bytes", "Disk allocated to the VM.", vm_l)
        guest_up = _gauge("pdn_guest_up", "1 when the SSH check of the guest succeeds, 0 when it fails.", guest_l)
        fs_used = _gauge("pdn_guest_filesystem_used_ratio", "Used ratio of a guest filesystem (fullest ten).",
                         [*guest_l, "mount"])
        mem_avail = _gauge("pdn_guest_memory_available_bytes", "Memory available inside the guest.", guest_l)
        mem_total = _gauge("pdn_guest_memory_total_bytes", "Memory seen inside the guest.", guest_l)
        load1 = _gauge("pdn_guest_load1", "One-minute load average inside the guest.", guest_l)
        inactive = _gauge("pdn_guest_services_inactive", "Declared services of the guest that are not active.",
                          guest_l)
        failed_units = _gauge("pdn_guest_failed_units", "systemd units in failed state inside the guest.", guest_l)
        node_up = _gauge("pdn_node_up", "1 when the Proxmox node is online, 0 when offline.", ["cluster", "node"])
        cluster_up = _gauge("pdn_cluster_up", "1 when the cluster's API answers, 0 when it is DOWN.", ["cluster"])

        for t in snap.targets:
            opd = t.opd or ""
            values = t.values
            up = UP_VALUE.get(t.state)
            dep = 1.0 if t.caused_by else 0.0
            if t.kind == "site":
                labels = [str(t.site_id), opd]
                state.add_metric(["site", str(t.site_id), opd, t.state], 1.0)
                if up is not None:
                    site_up.add_metric(labels, up)
                    site_dep.add_metric(labels, dep)
                for family, key in ((response, "response_s"), (status, "status_code"),
                                    (tls_ts, "tls_expiry_ts"), (tls_days, "tls_days_left")):
                    value = _num(values, key)
                    if value is not None:
                        family.add_metric(labels, value)
            elif t.kind == "vm":
                cluster, _, vmid = t.ref.partition("/")
                labels = [str(t.vm_id), cluster, vmid, opd]
                state.add_metric(["vm", str(t.vm_id), opd, t.state], 1.0)
                if up is not None:
                    vm_up.add_metric(labels, up)
                    vm_dep.add_metric(labels, dep)
                for family, key in ((vm_cpu, "cpu"), (vm_cpus, "maxcpu"), (vm_mem, "mem"), (vm_maxmem, "maxmem"),
                                    (vm_disk, "disk"), (vm_maxdisk, "maxdisk")):
                    value = _num(values, key)
                    if value is not None:
                        family.add_metric(labels, value)
            elif t.kind == "guest":
                labels = [str(t.vm_id), opd]
                state.add_metric(["guest", str(t.vm_id), opd, t.state], 1.0)
                if up is not None:
                    guest_up.add_metric(labels, up)
                for mount in values.get("mounts") or ():
                    fs_used.add_metric([*labels, str(mount["mount"])], float(mount["used_ratio"]))
                for family, key in ((mem_avail, "mem_available"), (mem_total, "mem_total"), (load1, "load1"),
                                    (inactive, "services_inactive"), (failed_units, "failed_units")):
                    value = _num(values, key)
                    if value is not None:
                        family.add_metric(labels, value)
            elif t.kind == "node":
                cluster, _, node = t.ref.partition("/")
                state.add_metric(["node", t.ref, "", t.state], 1.0)
                if up is not None:
                    node_up.add_metric([cluster, node], up)
            elif t.kind == "cluster":
                state.add_metric(["cluster", t.ref, "", t.state], 1.0)
                if up is not None:
                    cluster_up.add_metric([t.ref], up)
        yield from (state, site_up, site_dep, response, status, tls_ts, tls_days, vm_up, vm_dep, vm_cpu, vm_cpus,
                    vm_mem, vm_maxmem, vm_disk, vm_maxdisk, guest_up, fs_used, mem_avail, mem_total, load1,
                    inactive, failed_units, node_up, cluster_up)
        yield from _collector_metrics(snap)


def _collector_metrics(snap: HealthSnapshot) -> Iterator[Metric]:
    labels = ["collector", "kind"]
    runs = CounterMetricFamily("pdn_collector_runs", "Runs of a scheduled job (collectors and maintenance).",
                               labels=labels)
    errors = CounterMetricFamily("pdn_collector_errors", "Runs of a scheduled job that ended in an error.",
                                 labels=labels)
    duration = _gauge("pdn_collector_last_duration_seconds", "Duration of the job's latest run.", labels)
    success = _gauge("pdn_collector_last_run_success", "1 when the job's latest run succeeded, 0 when it failed.",
                     labels)
    last_ok = _gauge("pdn_collector_last_success_timestamp_seconds", "When the job last succeeded.", labels)
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
    taken = _gauge("pdn_health_snapshot_timestamp_seconds", "When the state snapshot behind this scrape was read.",
                   [])
    taken.add_metric([], snap.taken_at.timestamp())
    yield from (runs, errors, duration, success, last_ok, taken)


# === complaints and SLA: reserved for the complaints helper (issue 5) ==========================================
# deploy/prometheus/rules and deploy/grafana already use these names; add a Collector here (or in a module
# imported here) and append its factory to AREA_COLLECTORS:
#   pdn_complaints_open{opd,status}     gauge: open complaints per OPD code and complaint status
#   pdn_complaint_sla_at_risk{opd}      gauge: open complaints whose SLA deadline is within the warning window
#   pdn_complaint_sla_breached{opd}     gauge: open complaints past their SLA deadline
# === remediation: reserved for the remediation helper (issue 6) ================================================
#   pdn_remediation_runs_total{playbook,outcome}   counter: playbook runs by outcome (succeeded|failed|unknown)
#   pdn_remediation_running{playbook}              gauge: runs in progress
# ==============================================================================================================

# Factories receive the app's context (pdn_ops.web.context.AppContext) and return a Collector.
AreaCollectorFactory = Callable[[Any], Collector]
AREA_COLLECTORS: list[AreaCollectorFactory] = []


def build_registry(snapshot: Callable[[], HealthSnapshot], extra: Iterable[Collector] = ()) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(snapshot))
    for collector in extra:
        registry.register(collector)
    return registry
