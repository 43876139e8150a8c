"""Pure rules of automatic remediation: which symptom a rule fires on, and which automatic runs wait for approval."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pdn_ops.health.model import Reason, Thresholds, assess_ssh, guest_findings
from pdn_ops.health.observations import Mount, SshObservation
from pdn_ops.runs import model as rem

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def decide(rule: rem.AutoRule, signals: rem.Signals) -> rem.Decision:
    return rem.auto_decision(rule, signals, rem.Policy(), now=NOW, recent_runs=[], windows=[])


def test_a_disk_rule_ignores_a_failing_site_and_fires_on_a_full_disk() -> None:
    rule = rem.AutoRule("pve/101", "free_disk", vm_status=None)
    assert not decide(rule, rem.Signals(9, "running")).allowed
    assert not decide(rule, rem.Signals(0, "running", guest_problems={"disk_full": 2})).allowed
    assert decide(rule, rem.Signals(0, "running", guest_problems={"disk_full": 3})).allowed


def test_a_service_rule_fires_only_when_its_own_unit_is_inactive() -> None:
    rule = rem.AutoRule("pve/101", "restart_service", vm_status="running", unit="nginx.service")
    other = rem.Signals(3, "running", guest_problems={"service_inactive": 5},
                        inactive_services=frozenset({"php8.2-fpm.service"}))
    assert not decide(rule, other).allowed
    mine = rem.Signals(0, "running", guest_problems={"service_inactive": 3},
                       inactive_services=frozenset({"nginx.service"}))
    assert decide(rule, mine).allowed


@pytest.mark.parametrize(("playbook", "vm_status", "needed"), [
    ("restart_vm", "stopped", 0),  # the example: "VM stopped -> start the VM"
    ("restart_vm", None, 1),  # a real restart of a running VM
    ("restart_vm", "running", 1),
    ("resize_vm", None, 1),
    ("restore_snapshot", "running", 1),
    ("restart_service", "running", 0),
    ("free_disk", None, 0),
])
def test_automatic_runs_need_the_approvals_their_risk_needs(playbook: str, vm_status: str | None,
                                                            needed: int) -> None:
    risk = {"restart_vm": rem.Risk.MEDIUM, "resize_vm": rem.Risk.MEDIUM, "restore_snapshot": rem.Risk.HIGH,
            "restart_service": rem.Risk.LOW, "free_disk": rem.Risk.LOW}[playbook]
    rule = rem.AutoRule("pve/101", playbook, vm_status=vm_status)
    assert rem.auto_approvals_needed(rule, risk, rem.Policy()) == needed
    if playbook == "restore_snapshot":
        assert rem.auto_approvals_needed(rule, risk, rem.Policy(rollback_second_engineer=True)) == 2


def test_guest_findings_read_back_what_the_health_model_wrote() -> None:
    size = 10 * 2**30
    observation = SshObservation(cluster="pve", vmid=101, at=NOW, ok=True,
                                 mounts=(Mount("/", size, int(size * 0.97), size // 20), Mount("/srv", size, 0, size)),
                                 services={"nginx.service": "failed", "php8.2-fpm.service": "inactive",
                                           "cron.service": "active"},
                                 failed_units=("nginx.service",))
    verdict = assess_ssh(observation, ["nginx.service", "php8.2-fpm.service", "cron.service"], Thresholds())
    assert guest_findings(verdict.detail) == {
        Reason.SERVICE_INACTIVE: {"nginx.service", "php8.2-fpm.service"},
        Reason.FAILED_UNITS: {"nginx.service"},
        Reason.DISK_FULL: {"/"},
    }
    assert guest_findings("") == {}
