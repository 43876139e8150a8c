"""The lab's backups and storages as proxmoxer sees them: jobs, vzdump tasks with logs, backup volumes, storage
usage that grows, and the faults backup_fails, fill_storage and storage_offline."""

from __future__ import annotations

import time

import pytest
from proxmoxer import ResourceException

from tests.lab_fixtures import lab_proxmox


def _storages(prox) -> dict[str, dict]:
    return {r["storage"]: r for r in prox.cluster.resources.get(type="storage")}


def test_backup_jobs_tasks_logs_and_storage_faults(make_lab):
    lab = make_lab(vms=3, sites=0, guests=0)
    prox = lab_proxmox(lab)
    lab.faults.apply("backup_job", {"job": "daily", "vmids": "101,102", "storage": "local"})
    assert [(j["id"], j["type"], j["vmid"]) for j in prox.cluster.backup.get()] == [("daily", "vzdump", "101,102")]
    assert {e["vmid"] for e in prox.cluster("backup-info")("not-backed-up").get()} == {103}

    used_before = _storages(prox)["local"]["disk"]
    lab.faults.run_backup_job("daily")
    lab.faults.backup_fails(102)
    lab.faults.run_backup_job("daily")

    tasks = [t for t in prox.cluster.tasks.get() if t["type"] == "vzdump"]
    assert [t["status"] for t in tasks] == ["job errors", "OK"]  # newest first
    log = [line["t"] for line in prox.nodes("pve1").tasks(tasks[0]["upid"]).log.get()]
    assert "INFO: Starting Backup of VM 101 (qemu)" in log and log[-1] == "TASK ERROR: job errors"
    assert any(line.startswith("ERROR: Backup of VM 102 failed - ") for line in log)

    backups = prox.nodes("pve1").storage("local").content.get(content="backup")
    assert {b["vmid"] for b in backups} == {101, 102}  # 103 is in no job
    assert all(b["volid"].startswith(f"local:backup/vzdump-qemu-{b['vmid']}-") and b["size"] > 0 for b in backups)
    assert _storages(prox)["local"]["disk"] == used_before + sum(b["size"] for b in backups)

    # fill_storage: the usage jumps to the percent, then grows with (Proxmox) time.
    lab.faults.fill_storage("local-lvm", percent=90, per_hour=3600)  # a point per Proxmox second
    first = _storages(prox)["local-lvm"]
    assert first["disk"] / first["maxdisk"] == pytest.approx(0.90, abs=0.01)
    time.sleep(10 * lab.time_scale)
    assert _storages(prox)["local-lvm"]["disk"] > first["disk"]
    lab.faults.fill_storage("local-lvm", percent=0)
    assert _storages(prox)["local-lvm"]["disk"] < first["disk"]

    # storage_offline: listings fail, the resource is no longer available, and backups to it fail.
    lab.faults.storage_offline("local")
    assert _storages(prox)["local"]["status"] == "unknown"
    with pytest.raises(ResourceException, match="is not online"):
        prox.nodes("pve1").storage("local").content.get(content="backup")
    upid = lab.faults.backup_now(101)
    assert prox.nodes("pve1").tasks(upid).status.get()["exitstatus"] == "job errors"
    lab.faults.storage_offline("local", on=False)
    assert _storages(prox)["local"]["status"] == "available"
