"""Every refusal a person can meet on the remediation pages has its own sentence in the catalogue.

The refusals are produced by the real code (the domain, the playbooks, the services), not typed here: a reworded
English message then fails this test instead of silently falling back to the generic "refused" sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pdn_ops.core.errors import PdnOpsError, Refused
from pdn_ops.core.i18n import catalogue, translate
from pdn_ops.core.inventory import Inventory
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.messages import FALLBACK, message, message_key, run_summary
from remediation import registry
from tests.remediation.world import add_vms, inventory, write_inventory

ENG = svc.Requester("eng1")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, fakepve_session: Any, fakepve_cafile: str,
          ssh_guest_server: Any) -> Inventory:
    add_vms(fakepve_session, range(101, 104))
    return inventory(write_inventory(Path(tmp_path_factory.mktemp("messages")), fakepve_session, fakepve_cafile,
                                     ssh_guest_server))


REFUSALS: list[tuple[str, str, dict[str, object], str]] = [
    ("restart_service", "pve/101", {"unit": "nginx.service; reboot"}, "remediation.error.unit_invalid"),
    ("restart_service", "pve/101", {"unit": "nginx.service\n"}, "remediation.error.unit_invalid"),
    ("restart_service", "pve/101", {"unit": "sshd.service"}, "remediation.error.unit_undeclared"),
    ("restart_service", "pve/102", {"unit": "nginx.service"}, "remediation.error.no_ssh"),
    ("restart_service", "pve/101", {"unit": "nginx.service", "x": 1}, "remediation.error.unknown_params"),
    ("restart_service", "pve/101", {"unit": 7}, "remediation.error.text"),
    ("free_disk", "pve/101", {"cleanup": "Journal!"}, "remediation.error.cleanup_invalid"),
    ("free_disk", "pve/101", {"cleanup": "tmp"}, "remediation.error.cleanup_undeclared"),
    ("restore_snapshot", "pve/101", {}, "remediation.error.snapshot_missing"),
    ("restore_snapshot", "pve/101", {"snapshot": "1st"}, "remediation.error.snapshot_invalid"),
    ("resize_vm", "pve/101", {"cores": "-4"}, "remediation.error.whole_number"),
    ("resize_vm", "pve/101", {"cores": 0}, "remediation.error.positive"),
    ("resize_vm", "pve/101", {"cores": 999}, "remediation.error.above_limit"),
    ("resize_vm", "pve/101", {}, "remediation.error.resize_empty"),
    ("resize_vm", "pve/101", {"disk_grow_gib": 5, "disk": "hda9"}, "remediation.error.disk_unknown"),
    ("resize_vm", "pve/101", {"memory_mib": 4096, "reboot": "maybe"}, "remediation.error.reboot_flag"),
    ("resize_vm", "pve/101", {"swap": 1}, "remediation.error.unknown_params"),
    ("restart_vm", "pve/101", {"shutdown_timeout": 5}, "remediation.error.shutdown_timeout"),
    ("restore_backup", "pve/101", {"backup": "local:backup/vzdump-qemu-102-2026_01_01-00_00_00.vma.zst"},
     "remediation.error.backup_other_vm"),
    ("restore_backup", "pve/101", {"backup": "local:iso/x.iso"}, "remediation.error.backup_invalid"),
    ("restore_backup", "pve/101", {"mode": "sideways"}, "remediation.error.restore_mode"),
    ("restore_backup", "pve/101", {"mode": "in_place", "vmid": 150}, "remediation.error.in_place_vmid"),
    ("restore_backup", "pve/101", {"vmid": 101}, "remediation.error.vmid_taken"),
    ("restore_backup", "pve/101", {"vmid": 12}, "remediation.error.vmid_invalid"),
    ("restore_backup", "pve/101", {"storage": "Local LVM"}, "remediation.error.storage_invalid"),
    ("restore_backup", "pve/101", {"before": "yesterday"}, "remediation.error.moment"),
    ("restore_backup", "pve/101", {"start": "maybe"}, "remediation.error.flag"),
    ("migrate_vm", "pve/101", {"target": "pve 2"}, "remediation.error.node_invalid"),
    ("clear_lock", "pve/101", {"lock": "everything"}, "remediation.error.lock_invalid"),
    ("nuke_vm", "pve/101", {}, "remediation.error.playbook_unknown"),
    ("restart_vm", "pve/999", {}, "remediation.error.vm_unknown"),
]


@pytest.mark.parametrize(("playbook", "target", "params", "key"), REFUSALS)
def test_each_bad_request_reads_as_its_own_sentence(world: Inventory, playbook: str, target: str,
                                                    params: dict[str, object], key: str) -> None:
    with pytest.raises(PdnOpsError) as info:
        svc.dry_run(world, playbook=playbook, target=target, params=params, policy=rem.Policy(), requester=ENG)
    assert message_key(info.value)[0] == key, str(info.value)
    assert message(info.value, "id") != translate(FALLBACK, "id")


def test_the_domains_other_refusals_have_sentences_too() -> None:
    produced: list[Exception] = []
    for attempt in (lambda: rem.add_approval(["eng1"], "eng1", 1), lambda: rem.add_approval([], "eng1", 0),
                    lambda: rem.add_approval([], "eng1", 1, requested_by="eng1"),
                    lambda: rem.add_approval([], "eng2", 1, policy=rem.Policy(approvers=frozenset({"boss"}))),
                    lambda: rem.check_transition("failed", "running"),
                    lambda: rem.plan_resize(rem.ResizeRequest(cores=1), rem.VmShape(cores=2, memory_mib=2048),
                                            rem.NodeCapacity(8, 4096, 100), rem.Policy()),
                    lambda: rem.plan_resize(rem.ResizeRequest(cores=16), rem.VmShape(cores=2, memory_mib=2048),
                                            rem.NodeCapacity(8, 4096, 100), rem.Policy()),
                    lambda: rem.plan_resize(rem.ResizeRequest(cores=2), rem.VmShape(cores=2, memory_mib=2048),
                                            rem.NodeCapacity(8, 4096, 100), rem.Policy()),
                    lambda: rem.validate_snapshot_name("daily", existing=["weekly"])):
        with pytest.raises(Refused) as info:
            attempt()
        produced.append(info.value)
    keys = [message_key(exc)[0] for exc in produced]
    assert keys == ["remediation.error.already_approved", "remediation.error.no_approval_needed",
                    "remediation.error.own_request", "remediation.error.not_an_approver", "remediation.error.transition", "remediation.error.shrink", "remediation.error.capacity",
                    "remediation.error.same_size", "remediation.error.snapshot_unknown"]


def test_an_unknown_refusal_is_still_a_sentence_of_the_catalogue() -> None:
    from pdn_ops.core.errors import Conflict, NotFound, PolicyRefused

    assert message(PolicyRefused("something new"), "id") == translate(FALLBACK, "id")
    assert message_key(NotFound("gone"))[0] == "remediation.error.not_found"
    assert message_key(Conflict("raced"))[0] == "remediation.error.conflict"
    assert message(svc.ActiveRunConflict(7, "restart_vm", "running", "pve/101"), "en") == \
        "Run #7 is still active on this VM."


def test_every_playbook_has_a_run_summary_in_both_languages_from_its_facts() -> None:
    for name in registry.PLAYBOOKS:
        assert set(catalogue().get(f"remediation.summary.{name}", {})) == {"id", "en"}, name
        texts = {lang: run_summary(playbook=name, state="failed", outcome="failed", facts={}, stored="",
                                   language=lang) for lang in ("id", "en")}
        assert texts["id"].startswith("gagal; ") and texts["en"].startswith("failed; "), texts
    facts = {"lock": "backup", "lock_task": {"type": "vzdump", "upid": "UPID:pve1:1", "status": "job errors"}}
    assert run_summary(playbook="clear_lock", state="succeeded", outcome="succeeded", facts=facts, stored="",
                       language="id") == "berhasil; kunci backup; ditinggalkan oleh tugas vzdump UPID:pve1:1 (job errors)"
    assert run_summary(playbook="restart_vm", state="cancelled", outcome=None, facts={}, language="en",
                       stored="cancelled by ana before it started") == "Cancelled by ana before it started"
    assert run_summary(playbook="restart_vm", state="running", outcome=None, facts={}, stored="", language="id") == ""
