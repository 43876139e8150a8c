"""Pure remediation rules: states, approvals, policy and bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pdn_ops.core.errors import Refused
from pdn_ops.runs import model as rem

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
DECLARED = ["nginx.service", "php8.2-fpm.service", "app@1.service"]


@pytest.mark.parametrize("unit", [
    "nginx.service; rm -rf /", "nginx.service && reboot", "$(reboot)", "`reboot`", "nginx.service\n",
    "nginx.service\nreboot", "-nginx.service", "--help", "nginx service", "nginx|cat", "nginx>x", "", "a" * 300,
    "sshd.service",  # valid name, but not declared for this VM
])
def test_bad_unit_names_are_refused(unit: str) -> None:
    with pytest.raises(Refused):
        rem.validate_unit(unit, DECLARED)


def test_declared_unit_names_pass() -> None:
    for unit in DECLARED:
        assert rem.validate_unit(unit, DECLARED) == unit


@pytest.mark.parametrize("value", [None, 3, ["nginx.service"]])
def test_unit_name_must_be_text(value: object) -> None:
    with pytest.raises(Refused):
        rem.validate_unit(value, DECLARED)


@pytest.mark.parametrize("name", ["1snap", "a", "snap shot", "snap;rm", "snap\n", "-snap", "x" * 41, "current",
                                  "snap.1", "$(id)", "ünï"])
def test_bad_snapshot_names_are_refused(name: str) -> None:
    with pytest.raises(Refused):
        rem.validate_snapshot_name(name)


def test_snapshot_name_must_belong_to_the_vm() -> None:
    assert rem.validate_snapshot_name("before_update-2", ["before_update-2"]) == "before_update-2"
    assert rem.validate_snapshot_name("x" * 40) == "x" * 40
    with pytest.raises(Refused, match="no snapshot"):
        rem.validate_snapshot_name("other_vms_snap", ["before_update-2"])


@pytest.mark.parametrize("params", [
    {"cores": -2}, {"cores": 0}, {"cores": "0"}, {"cores": 10_000}, {"cores": "four"}, {"cores": "2.5"},
    {"cores": True}, {"memory_mib": "-1024"}, {"memory_mib": 10**9}, {"disk_grow_gib": "1e3"},
    {"disk_grow_gib": 0}, {"disk_grow_gib": 100_000}, {"disk_grow_gib": 5, "disk": "sda; reboot"}, {},
    {"swap": 1},
])
def test_bad_sizes_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(Refused):
        rem.parse_resize(params, rem.Policy())


SHAPE = rem.VmShape(cores=2, memory_mib=2048, disk_gib={"scsi0": 10.0}, hotplug=frozenset({"disk"}))
NODE = rem.NodeCapacity(cpus=8, memory_free_mib=8192, storage_free_gib=100.0)


@pytest.mark.parametrize(("params", "message"), [
    ({"cores": 1}, "shrinking"), ({"memory_mib": 1024}, "shrinking"), ({"cores": 16}, "node"),
    ({"memory_mib": 65536}, "node has only"), ({"disk_grow_gib": 200}, "storage"),
    ({"disk_grow_gib": 5, "disk": "virtio1"}, "no disk"), ({"cores": 2}, "nothing to change"),
])
def test_resize_is_checked_against_the_vm_and_the_node(params: dict[str, object], message: str) -> None:
    with pytest.raises(Refused, match=message):
        rem.plan_resize(rem.parse_resize(params, rem.Policy()), SHAPE, NODE, rem.Policy())


def test_resize_plan_says_what_needs_a_reboot() -> None:
    plan = rem.plan_resize(rem.parse_resize({"cores": "4", "memory_mib": 4096, "disk_grow_gib": 5}, rem.Policy()),
                           SHAPE, NODE, rem.Policy())
    assert plan.config == {"cores": 4, "memory": 4096}
    assert plan.live == ("disk",) and set(plan.needs_reboot) == {"cores", "memory"}
    hot = rem.VmShape(cores=2, memory_mib=2048, hotplug=frozenset({"memory", "cpu"}), numa=True)
    assert rem.plan_resize(rem.ResizeRequest(memory_mib=4096), hot, NODE, rem.Policy()).live == ("memory",)
    stopped = rem.VmShape(cores=2, memory_mib=2048, running=False)
    assert rem.plan_resize(rem.ResizeRequest(cores=4), stopped, NODE, rem.Policy()).needs_reboot == ()


def test_resize_counts_the_vcpus_the_guest_gets_over_sockets_and_offline_vcpus() -> None:
    two_sockets = rem.VmShape(cores=4, memory_mib=2048, sockets=2)  # cores: 2 per socket
    plan = rem.plan_resize(rem.ResizeRequest(cores=8), two_sockets, NODE, rem.Policy())
    assert plan.config == {"cores": 4} and plan.needs_reboot == ("cores",), "4 per socket: 8 vCPUs, not 16"
    with pytest.raises(Refused, match="2 sockets"):
        rem.plan_resize(rem.ResizeRequest(cores=7), two_sockets, NODE, rem.Policy())
    hot = rem.VmShape(cores=4, memory_mib=2048, vcpus=2, hotplug=frozenset({"cpu", "memory"}), numa=True)
    plan = rem.plan_resize(rem.ResizeRequest(cores=3), hot, NODE, rem.Policy())
    assert plan.config == {"vcpus": 3} and plan.live == ("vcpus",) and plan.needs_reboot == ()
    cold = rem.VmShape(cores=4, memory_mib=2048, vcpus=2)
    assert rem.plan_resize(rem.ResizeRequest(cores=4), cold, NODE, rem.Policy()).needs_reboot == ("vcpus",)
    grown = rem.plan_resize(rem.ResizeRequest(cores=6), hot, NODE, rem.Policy())
    assert grown.config == {"cores": 6, "vcpus": 6} and grown.needs_reboot == ("cores",)
    with pytest.raises(Refused, match="shrinking cores from 2 to 1"):
        rem.plan_resize(rem.ResizeRequest(cores=1), hot, NODE, rem.Policy())


def test_cleanup_must_be_declared() -> None:
    assert rem.validate_cleanup("journal", ["journal"]) == "journal"
    for bad in ("tmp", "journal; rm -rf /", "-x", "journal\n"):
        with pytest.raises(Refused):
            rem.validate_cleanup(bad, ["journal"])


def test_life_cycle_allows_only_forward_moves() -> None:
    assert rem.check_transition("approved", "running") is rem.State.RUNNING
    assert rem.check_transition("interrupted", "unknown") is rem.State.UNKNOWN
    for current, new in [("succeeded", "running"), ("awaiting_approval", "running"), ("failed", "succeeded")]:
        with pytest.raises(Refused):
            rem.check_transition(current, new)


def test_approvals_by_risk_and_second_engineer_for_rollback() -> None:
    policy = rem.Policy(rollback_second_engineer=True)
    assert rem.approvals_needed(rem.Risk.LOW, policy) == 0
    assert rem.approvals_needed(rem.Risk.MEDIUM, policy) == 1
    assert rem.approvals_needed(rem.Risk.HIGH, policy) == 2
    assert rem.approvals_needed(rem.Risk.HIGH, rem.Policy()) == 1
    approvers, done = rem.add_approval([], "eng1", 2)
    assert not done
    with pytest.raises(Refused, match="another engineer"):
        rem.add_approval(approvers, "eng1", 2)
    assert rem.add_approval(approvers, "eng2", 2) == (["eng1", "eng2"], True)


RULE = rem.AutoRule(target="pve/101", playbook="restart_vm")
DOWN = rem.Signals(consecutive_failed_checks=3, vm_status="stopped")


def test_auto_rule_fires_when_site_down_three_checks_and_vm_stopped() -> None:
    decision = rem.auto_decision(RULE, DOWN, rem.Policy(), now=NOW, recent_runs=[], windows=[])
    assert decision.allowed, decision.reason


@pytest.mark.parametrize(("signals", "policy", "recent", "windows", "reason"), [
    (DOWN, rem.Policy(auto_enabled=False), [], [], "switched off"),
    (rem.Signals(2, "stopped"), rem.Policy(), [], [], "needs 3"),
    (rem.Signals(5, "running"), rem.Policy(), [], [], "needs stopped"),
    (DOWN, rem.Policy(), [NOW - timedelta(minutes=2)], [], "cooldown"),
    (DOWN, rem.Policy(cooldown=timedelta(0)), [NOW - timedelta(minutes=m) for m in (5, 20, 40)], [], "last hour"),
    (DOWN, rem.Policy(), [], [rem.MaintenanceWindow(NOW - timedelta(hours=1), NOW + timedelta(hours=1))],
     "maintenance"),
    (DOWN, rem.Policy(), [], [rem.MaintenanceWindow(NOW, NOW + timedelta(hours=1), target="pve/101")],
     "maintenance"),
])
def test_auto_rule_holds_back(signals: rem.Signals, policy: rem.Policy, recent: list[datetime],
                              windows: list[rem.MaintenanceWindow], reason: str) -> None:
    decision = rem.auto_decision(RULE, signals, policy, now=NOW, recent_runs=recent, windows=windows)
    assert not decision.allowed
    assert reason in decision.reason


def test_window_for_another_target_or_past_does_not_hold_back() -> None:
    windows = [rem.MaintenanceWindow(NOW, NOW + timedelta(hours=1), target="pve/999"),
               rem.MaintenanceWindow(NOW - timedelta(hours=2), NOW - timedelta(hours=1))]
    assert rem.auto_decision(RULE, DOWN, rem.Policy(), now=NOW, recent_runs=[], windows=windows).allowed
    with pytest.raises(Refused):
        rem.validate_window(NOW, NOW - timedelta(minutes=1))


def test_sizes_snapshots_output_and_confirmation_helpers() -> None:
    assert rem.drive_size_gib("local-lvm:vm-101-disk-0,size=32G,ssd=1") == 32.0
    assert rem.parse_size_gib("512M") == 0.5
    assert rem.parse_hotplug("0") == frozenset() and "memory" in rem.parse_hotplug("disk,memory")
    snaps = [("daily1", NOW - timedelta(days=2)), ("daily2", NOW - timedelta(hours=1)), ("current", None)]
    assert rem.suggest_snapshot(snaps, NOW - timedelta(hours=3)) == "daily1"
    assert rem.suggest_snapshot(snaps, None) == "daily2"
    capped = rem.cap_output("a" * 100 + "b" * 100, limit=50)
    assert capped.startswith("a" * 25) and capped.endswith("b" * 25) and "cut" in capped
    assert rem.confirmation_passed([False, True, True, True], 3)
    assert not rem.confirmation_passed([True, False, True], 2)


def test_every_state_playbook_and_risk_has_a_label_in_both_languages() -> None:
    from pdn_ops.core.i18n import catalogue
    from pdn_ops.core.registry import PLAYBOOKS

    keys = set(catalogue())
    wanted = {f"remediation.state.{s.value}" for s in rem.State}
    wanted |= {f"remediation.step_state.{s.value}" for s in rem.StepStatus}
    wanted |= {f"remediation.risk.{r.value}" for r in rem.Risk} | {f"remediation.playbook.{p}" for p in PLAYBOOKS}
    assert wanted <= keys, sorted(wanted - keys)


@pytest.mark.parametrize("kind", ["restart_vm", "resize_vm", "restore_snapshot", "restart_service", "free_disk"])
def test_every_playbook_refuses_a_parameter_it_does_not_declare(kind: str) -> None:
    from pdn_ops.core.errors import PolicyRefused
    from pdn_ops.core.registry import PLAYBOOKS, playbook_class
    from remediation.playbooks.base import VmTarget

    assert kind in PLAYBOOKS
    target = VmTarget(cluster="pve", vmid=101, opd="dinkes")
    with pytest.raises(PolicyRefused, match=r"unknown (resize )?parameters: rm_rf"):
        playbook_class(kind)().validate({"rm_rf": "/"}, target, rem.Policy())
