"""Backups and storages: the pure parsing and state, then the Proxmox collector against the lab's vzdump jobs,
tasks and backup storages, into the health model and its series (both engines)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from collectors.proxmox import backups
from collectors.proxmox.collector import ProxmoxCollector
from pdn_ops.core.inventory import load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.health import queries as health_queries
from pdn_ops.health import service as health
from pdn_ops.health.metrics import render_health
from pdn_ops.health.model import BackupState, Thresholds, assess_backup

T0 = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)
LOG = [
    "INFO: starting new backup job: vzdump 101 102 --storage nas --mode snapshot --node pve1",
    "INFO: Starting Backup of VM 101 (qemu)",
    "INFO: Finished Backup of VM 101 (00:01:02)",
    "INFO: Starting Backup of VM 102 (qemu)",
    "ERROR: Backup of VM 102 failed - vma_queue_write: write error - No space left on device",
    "INFO: Failed at 2026-12-01 21:03:00",
    "INFO: Backup job finished with errors",
    "TASK ERROR: job errors",
]


def test_backups_per_guest_from_volumes_failed_tasks_and_jobs() -> None:
    task = {"upid": "UPID:pve1:1:2:3:vzdump::root@pam:", "id": "", "status": "job errors"}
    parts = backups.failed_parts(task, LOG)
    assert list(parts) == [102] and parts[102].startswith("ERROR: Backup of VM 102 failed - vma_queue_write")
    assert parts[102].endswith("TASK ERROR: job errors") and backups.task_storage(LOG) == "nas"
    # A single-guest task that failed before any guest's part started still counts for that guest.
    assert list(backups.failed_parts({"id": "103", "status": "unexpected status"}, ["TASK ERROR: x"])) == [103]

    jobs = [{"id": "daily", "all": 1, "exclude": "104"}, {"id": "db", "vmid": "102", "enabled": 1},
            {"id": "off", "vmid": "104", "enabled": 0}]
    covered = backups.coverage(jobs, [101, 102, 104])
    assert covered == {101: ("daily",), 102: ("daily", "db"), 104: ()}

    stamp = int(T0.timestamp())
    volumes = [("nas", {"volid": "nas:backup/vzdump-qemu-101-2026_12_01-21_00_00.vma.zst", "ctime": stamp,
                        "size": 5, "vmid": 101}),
               ("nas", {"volid": "nas:backup/vzdump-qemu-101-2026_11_30-21_00_00.vma.zst", "ctime": stamp - 86400,
                        "size": 4}),
               ("nas", {"volid": "nas:backup/vzdump-qemu-102-2026_11_30-21_00_00.vma.zst", "ctime": stamp - 86400,
                        "size": 7})]
    found = {b.vmid: b for b in backups.per_guest([101, 102, 104], volumes,
                                                  [(T0 + timedelta(minutes=3), "nas", parts)], covered)}
    assert found[101].last_ok_at == T0 and found[101].last_ok_size == 5 and found[101].last_failed_at is None
    assert found[102].last_ok_at == T0 - timedelta(days=1) and found[102].failed_storage == "nas"

    th = Thresholds()
    assert assess_backup(found[101], T0 + timedelta(hours=25), th) is BackupState.OK
    assert assess_backup(found[101], T0 + timedelta(hours=27), th) is BackupState.TOO_OLD
    assert assess_backup(found[102], T0 + timedelta(hours=1), th) is BackupState.FAILED
    assert assess_backup(found[104], T0, th) is BackupState.UNPROTECTED


def test_collector_watches_backups_with_calls_independent_of_guests(make_lab, session: Session) -> None:
    lab = make_lab(vms=3, sites=0, guests=0)
    faults = lab.faults
    faults.backup_job("daily", vmids="101,102", storage="local")
    faults.run_backup_job("daily")
    faults.backup_fails(102, message="unable to connect to VM 102 qmp socket")
    faults.run_backup_job("daily")

    inventory = load_inventory(lab.inventory_path)
    cluster = inventory.clusters[0].model_copy(update={"backups": True})
    collector = ProxmoxCollector.from_inventory(cluster, inventory.vms, base_dir=lab.inventory_path.parent)
    try:
        first = collector.collect()
        second = collector.collect()
        faults.storage_offline("local")
        third = collector.collect()
    finally:
        collector.close()
    # resources + status (and on the first cycle status/current of the 3 guests), then tasks + jobs + one listing
    # of the one backup storage, and the failed task's log once; an offline storage is not listed.
    assert (first.api_calls, second.api_calls, third.api_calls) == (2 + 3 + 3 + 1, 2 + 3, 2 + 2)
    found = {b.vmid: b for b in second.backups or ()}
    assert found[101].jobs == ("daily",) and found[101].last_ok_storage == "local" and found[101].last_ok_size
    assert found[102].last_failed_at is not None and found[102].last_ok_at is not None
    assert "ERROR: Backup of VM 102 failed - unable to connect to VM 102 qmp socket" in found[102].failure_log
    assert found[103].jobs == () and found[103].last_ok_at is None
    assert {(s.storage, s.available) for s in third.storages} == {("local", False), ("local-lvm", True)}

    sync_inventory(session, inventory, now=second.at)
    health.record_cluster(session, second, thresholds=Thresholds())
    health.record_cluster(session, third, thresholds=Thresholds())
    session.commit()
    text = render_health(health_queries.health_snapshot(session))
    states = {line.split('vmid="')[1][:3]: line.split('state="')[1].split('"')[0]
              for line in text.splitlines() if line.startswith("pdn_vm_backup_state{") and line.endswith(" 1")}
    assert states == {"101": "ok", "102": "failed", "103": "unprotected"}
    assert any(line.startswith("pdn_vm_backup_failed{") and 'vmid="102"' in line and 'storage="local"' in line
               and line.endswith(" 1") for line in text.splitlines())
    assert 'pdn_storage_up{cluster="lab",node="pve1",storage="local",backup="1"} 0' in text
    assert 'pdn_storage_up{cluster="lab",node="pve1",storage="local-lvm",backup="0"} 1' in text
