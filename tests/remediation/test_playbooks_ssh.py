"""SSH playbooks against a real sshd guest: restart a declared service, free disk with a declared cleanup."""

from __future__ import annotations

import dataclasses

import pytest

from pdn_ops.core.errors import PolicyRefused
from pdn_ops.runs.model import Policy, StepStatus
from remediation import registry
from remediation.executors.ssh import SshExecutor, SshTarget
from remediation.playbooks.base import VmTarget
from tests.remediation.pve_support import MemoryJournal, run_playbook
from tests.remediation.sshguest import SshGuest

SERVICES = ("nginx.service", "php8.2-fpm.service")
CLEANUP = {"journal": ("/usr/bin/journalctl", "--vacuum-size=100M")}


def target(ssh_target: SshTarget) -> VmTarget:
    return VmTarget(cluster="pve", vmid=101, opd="dinkes", services=SERVICES, cleanup=CLEANUP, ssh=ssh_target)


def test_restart_service_restarts_the_declared_unit(ssh_guest: SshGuest, ssh_target: SshTarget) -> None:
    result, _ = run_playbook("restart_service", target(ssh_target), {"unit": "nginx.service"}, ssh=SshExecutor())
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert ssh_guest.units()["nginx.service"] == "active"
    assert ssh_guest.commands() == ["systemctl is-active nginx.service", "systemctl restart nginx.service",
                                    "systemctl is-active nginx.service"]
    assert "before failed, after active" in result.summary


def test_free_disk_reports_space_before_and_after(ssh_guest: SshGuest, ssh_target: SshTarget) -> None:
    result, _ = run_playbook("free_disk", target(ssh_target), {"cleanup": "journal"}, ssh=SshExecutor())
    assert result.status is StepStatus.SUCCEEDED, result.summary
    assert result.facts["freed_kib"] == 3_000_000
    assert "free 976 MiB -> 3906 MiB" in result.summary
    assert "/usr/bin/journalctl --vacuum-size=100M" in ssh_guest.commands()


BAD_UNITS = ["nginx.service; reboot", "$(reboot)", "`reboot`", "nginx.service\n", "nginx.service\nreboot",
             "-nginx.service", "sshd.service", "nginx service", "nginx.service|sh"]


@pytest.mark.parametrize("unit", BAD_UNITS)
def test_bad_unit_is_refused_before_any_ssh_connection(ssh_guest: SshGuest, ssh_target: SshTarget,
                                                       unit: str) -> None:
    with pytest.raises(PolicyRefused):
        run_playbook("restart_service", target(ssh_target), {"unit": unit}, ssh=SshExecutor())
    assert ssh_guest.commands() == []


@pytest.mark.parametrize("cleanup", ["tmp", "journal; rm -rf /", "-rf", "journal\n"])
def test_undeclared_cleanup_is_refused_before_any_ssh_connection(ssh_guest: SshGuest, ssh_target: SshTarget,
                                                                 cleanup: str) -> None:
    with pytest.raises(PolicyRefused):
        run_playbook("free_disk", target(ssh_target), {"cleanup": cleanup}, ssh=SshExecutor())
    assert ssh_guest.commands() == []


def test_changed_host_key_fails_the_run_as_a_security_event(ssh_guest: SshGuest, ssh_target: SshTarget) -> None:
    wrong = dataclasses.replace(ssh_target, host_key=ssh_guest.other_host_key)
    result, _ = run_playbook("restart_service", target(wrong), {"unit": "nginx.service"}, ssh=SshExecutor())
    assert result.status is StepStatus.FAILED and result.security_event
    assert ssh_guest.commands() == []


def test_hanging_restart_is_unknown_then_reconciled_by_the_service_state(ssh_guest: SshGuest,
                                                                       ssh_target: SshTarget) -> None:
    book = registry.playbook("restart_service")
    vm = target(ssh_target)
    journal = MemoryJournal()
    ssh_guest.hang(match="restart")
    result, journal = run_playbook("restart_service", vm, {"unit": "nginx.service"}, ssh=SshExecutor(),
                                   journal=journal)
    assert result.status is StepStatus.UNKNOWN
    ssh_guest.hang(False)  # the slow restart completes on the guest after we gave up
    for row in journal.rows.values():  # as if the worker had died inside the step
        if row["state"] == "unknown":
            row["state"] = "running"
    again, _ = run_playbook("restart_service", vm, {"unit": "nginx.service"}, ssh=SshExecutor(), journal=journal)
    assert again.status is StepStatus.SUCCEEDED, again.summary
    restarts = [c for c in ssh_guest.commands() if "restart" in c]
    assert restarts == ["systemctl restart nginx.service"]  # reconciled by checking the unit, not repeated
    assert book.risk.value == "low" and Policy().approval_from.value == "medium"
