"""Every Prometheus series pdn-ops exports, in one table: name, type, labels and help, all under the ``pdn_`` prefix.

The features' metric modules write their series from these entries (``family(name)`` for the small families,
``SERIES[name]`` for the fleet-sized ones written directly); the shipped rules and dashboard
(``deploy/prometheus``, ``deploy/grafana``) may only use names from here, and a test holds every scrape to it.
Labels are bounded: ids, codes and states, never user text. A counter is named here without ``_total``, which
the exposition adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

Kind = Literal["gauge", "counter", "histogram"]
PREFIX = "pdn_"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str


SITE = ("site_id", "opd")
VM = ("vm_id", "cluster", "vmid", "opd")
GUEST = ("vm_id", "opd")
JOB = ("collector", "kind")

_ALL = (
    # --- health: the fleet, from the state snapshot ------------------------------------------------------------
    Series("pdn_target_state", "gauge", ("kind", "target", "opd", "state"),
           "Current health state of a target (1 for the current state)."),
    Series("pdn_site_up", "gauge", SITE, "1 when the site answers as expected (UP or DEGRADED), 0 when DOWN."),
    # ``cause`` (the root target, e.g. "vm:pdn1/101") is set only on evidence: an upstream a working witness
    # observed failing (pdn_ops.health.model.attribute); the value is 1 exactly then.
    Series("pdn_site_dependency_down", "gauge", (*SITE, "cause"),
           "1 when the site is down because its VM or node is observed down (cause: that target)."),
    Series("pdn_site_failure", "gauge", (*SITE, "failure"),
           "1 while the site is DOWN, labelled with why its check fails."),
    Series("pdn_site_response_seconds", "gauge", SITE, "Total time of the latest site check."),
    Series("pdn_site_http_status_code", "gauge", SITE, "HTTP status of the latest site check."),
    Series("pdn_tls_cert_expiry_timestamp_seconds", "gauge", SITE, "Expiry of the site's TLS certificate (Unix time)."),
    # Days are what people ask for, but Prometheus names carry base units (promtool refuses "_days"):
    # dashboards and rules divide by 86400.
    Series("pdn_tls_cert_expiry_remaining_seconds", "gauge", SITE,
           "Time left until the site's TLS certificate expires."),
    Series("pdn_vm_up", "gauge", VM, "1 when Proxmox reports the VM running, 0 when not."),
    Series("pdn_vm_dependency_down", "gauge", (*VM, "cause"),
           "1 when the VM is not UP because its node is observed offline (cause: that node)."),
    Series("pdn_target_cause_unknown", "gauge", ("kind", "target", "opd"),
           "1 when a failing target's upstream cannot be seen (Proxmox API unreachable): its cause is unknown."),
    Series("pdn_vm_cpu_ratio", "gauge", VM, "CPU use of the VM as a ratio of its allocated CPUs."),
    Series("pdn_vm_cpus", "gauge", VM, "CPUs allocated to the VM."),
    Series("pdn_vm_memory_used_bytes", "gauge", VM, "Memory used by the VM."),
    Series("pdn_vm_memory_total_bytes", "gauge", VM, "Memory allocated to the VM."),
    Series("pdn_vm_disk_used_bytes", "gauge", VM,
           "Disk used by the VM: its guest agent's filesystems, else Proxmox's figure, else the guest's df."),
    Series("pdn_vm_disk_total_bytes", "gauge", VM, "Disk allocated to the VM."),
    Series("pdn_guest_up", "gauge", GUEST, "1 when the SSH check of the guest succeeds, 0 when it fails."),
    Series("pdn_guest_filesystem_used_ratio", "gauge", (*GUEST, "mount"),
           "Used ratio of a guest filesystem (its fullest ten)."),
    Series("pdn_guest_memory_available_bytes", "gauge", GUEST, "Memory available inside the guest."),
    Series("pdn_guest_memory_total_bytes", "gauge", GUEST, "Memory seen inside the guest."),
    Series("pdn_guest_load1", "gauge", GUEST, "One-minute load average inside the guest."),
    Series("pdn_guest_services_inactive", "gauge", GUEST, "Declared services of the guest that are not active."),
    Series("pdn_guest_failed_units", "gauge", GUEST, "systemd units in failed state inside the guest."),
    Series("pdn_open_incidents", "gauge", ("opd",),
           "Open incidents (root problems) per OPD, as the fleet page counts them; opd \"\" for clusters and nodes."),
    Series("pdn_vm_backup_last_success_timestamp_seconds", "gauge", VM,
           "Creation time of the VM's newest backup volume on a backup storage (absent: none found)."),
    Series("pdn_vm_backup_failed", "gauge", (*VM, "storage"),
           "1 when the VM's newest backup attempt failed (its vzdump part ended in ERROR), else 0."),
    Series("pdn_vm_backup_protected", "gauge", VM, "1 when an enabled backup job includes the VM, 0 when none does."),
    Series("pdn_vm_backup_state", "gauge", (*VM, "state"),
           "The VM's backup state (ok, failed, too_old, unprotected; 1 for the current state)."),
    Series("pdn_vm_backup_max_age_seconds", "gauge", VM,
           "The age the VM's newest backup may reach before it is too old (its own, its OPD's or the global one)."),
    Series("pdn_vm_lock_stale", "gauge", (*VM, "lock"),
           "While the VM has a lock (backup, snapshot, migrate...): 1 when no running task holds it, 0 when one "
           "does."),
    Series("pdn_storage_thin_data_used_ratio", "gauge", ("cluster", "node", "storage"),
           "Share of an LVM-thin pool's data space in use."),
    Series("pdn_storage_thin_metadata_used_ratio", "gauge", ("cluster", "node", "storage"),
           "Share of an LVM-thin pool's metadata space in use (a full one freezes its VMs like full data)."),
    Series("pdn_storage_up", "gauge", ("cluster", "node", "storage", "backup"),
           "1 when the storage is available on the node, 0 when not (backup: 1 when it holds backups)."),
    Series("pdn_storage_used_bytes", "gauge", ("cluster", "node", "storage"), "Space used on the storage."),
    Series("pdn_storage_total_bytes", "gauge", ("cluster", "node", "storage"), "Size of the storage."),
    Series("pdn_storage_full_in_seconds", "gauge", ("cluster", "node", "storage"),
           "Time until the storage is full (/ 86400: days): the least-squares slope of its hourly use (absent: not "
           "growing, or fewer than 3 hours seen)."),
    Series("pdn_node_memory_used_ratio", "gauge", ("cluster", "node"), "Share of the node's memory in use."),
    Series("pdn_node_swap_used_ratio", "gauge", ("cluster", "node"), "Share of the node's swap in use."),
    Series("pdn_node_load1", "gauge", ("cluster", "node"), "The node's one-minute load average."),
    Series("pdn_node_cpus", "gauge", ("cluster", "node"), "The node's logical CPUs."),
    Series("pdn_node_ksm_shared_bytes", "gauge", ("cluster", "node"), "Memory the node's KSM shares."),
    Series("pdn_node_rootfs_used_ratio", "gauge", ("cluster", "node"), "Share of the node's root filesystem in use."),
    Series("pdn_node_up", "gauge", ("cluster", "node"), "1 when the Proxmox node is online, 0 when offline."),
    Series("pdn_cluster_up", "gauge", ("cluster",), "1 when the cluster's API answers, 0 when it is DOWN."),
    # --- scheduled jobs -----------------------------------------------------------------------------------------
    Series("pdn_collector_runs", "counter", JOB, "Runs of a scheduled job (collectors and maintenance)."),
    Series("pdn_collector_errors", "counter", JOB, "Runs of a scheduled job that ended in an error."),
    Series("pdn_collector_last_duration_seconds", "gauge", JOB, "Duration of the job's latest run."),
    Series("pdn_collector_last_run_success", "gauge", JOB, "1 when the job's latest run succeeded, 0 when it failed."),
    Series("pdn_collector_last_success_timestamp_seconds", "gauge", JOB, "When the job last succeeded."),
    Series("pdn_collector_failing", "gauge", (*JOB, "failure"),
           "1 while the job's latest run failed, with why (auth: credentials refused, empty, timeout, error...)."),
    Series("pdn_collector_interval_seconds", "gauge", JOB, "How often the job runs (stall thresholds are relative)."),
    Series("pdn_health_snapshot_timestamp_seconds", "gauge", (),
           "When the state snapshot behind this scrape was read."),
    # --- complaints ---------------------------------------------------------------------------------------------
    Series("pdn_complaints_open", "gauge", ("opd", "state"), "Open complaints by state and OPD."),
    Series("pdn_complaints_sla", "gauge", ("opd", "level"),
           "Open complaints at SLA risk (at_risk_50, at_risk_80) or breached, by OPD."),
    # --- notifications ------------------------------------------------------------------------------------------
    Series("pdn_notifications", "gauge", ("channel", "status"), "Notifications in the outbox by channel and status."),
    Series("pdn_notify_oldest_undelivered_seconds", "gauge", (),
           "Age of the oldest notification not yet handed to a provider (0 when none)."),
    Series("pdn_notify_inbound_pending", "gauge", (),
           "Inbound WhatsApp and e-mail messages recorded and not yet acted on."),
    # --- remediation runs ---------------------------------------------------------------------------------------
    Series("pdn_remediation_runs", "counter", ("playbook", "outcome"), "Remediation runs by playbook and outcome."),
    Series("pdn_remediation_running", "gauge", ("playbook",), "Remediation runs in progress."),
    Series("pdn_remediation_run_duration_seconds", "histogram", ("playbook",),
           "Time from a worker claiming a run to its outcome."),
)
SERIES: dict[str, Series] = {s.name: s for s in _ALL}


def family(name: str) -> GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily:
    """An empty prometheus_client family for the table's entry ``name`` (a KeyError for a name not in it)."""
    s = SERIES[name]
    labels = list(s.labels)
    if s.kind == "counter":
        return CounterMetricFamily(s.name, s.help, labels=labels)
    if s.kind == "histogram":
        return HistogramMetricFamily(s.name, s.help, labels=labels)
    return GaugeMetricFamily(s.name, s.help, labels=labels)


def gauge(name: str) -> GaugeMetricFamily:
    found = family(name)
    assert isinstance(found, GaugeMetricFamily), name
    return found


def counter(name: str) -> CounterMetricFamily:
    found = family(name)
    assert isinstance(found, CounterMetricFamily), name
    return found


def histogram(name: str) -> HistogramMetricFamily:
    found = family(name)
    assert isinstance(found, HistogramMetricFamily), name
    return found
