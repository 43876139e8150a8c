"""The pure health model: thresholds, degraded rules, root causes, events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdn_ops.health import model
from pdn_ops.health.model import Cause, Reason, State, TargetState, Thresholds, Verdict
from pdn_ops.health.observations import (
    ClusterObservation,
    FailureClass,
    GuestObservation,
    Mount,
    NodeObservation,
    SiteCheck,
    SshObservation,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OK = Verdict(ok=True)
FAIL = Verdict(ok=False, reason=Reason.CHECK_FAILED, failure=FailureClass.TIMEOUT)


def run(verdicts: list[Verdict], thresholds: Thresholds, start: TargetState | None = None):
    state = start or TargetState(key="site:http://x/")
    changes = []
    for i, verdict in enumerate(verdicts):
        at = T0 + timedelta(minutes=i)
        new = model.step(state, verdict, at, thresholds)
        change = model.change_of(state, new, at)
        if change is not None:
            changes.append(change)
        state = new
    return state, changes


def test_a_site_goes_down_only_after_n_consecutive_failures() -> None:
    th = Thresholds(down_after=3, up_after=2)
    state, _ = run([OK, FAIL, FAIL], th)
    assert state.state is State.UP and state.failures == 2
    state, changes = run([OK, FAIL, FAIL, FAIL], th)
    assert state.state is State.DOWN and state.reason is Reason.CHECK_FAILED and state.failure is FailureClass.TIMEOUT
    assert [(c.old, c.new) for c in changes] == [(State.UNKNOWN, State.UP), (State.UP, State.DOWN)]
    assert changes[-1].at == T0 + timedelta(minutes=3)


def test_a_down_target_comes_back_only_after_m_successes() -> None:
    th = Thresholds(down_after=1, up_after=3)
    state, _ = run([FAIL, OK, OK], th)
    assert state.state is State.DOWN, "two successes are not enough"
    state, changes = run([FAIL, OK, OK, OK], th)
    assert state.state is State.UP and changes[-1].old is State.DOWN


def test_a_definitive_failure_needs_no_second_opinion() -> None:
    stopped = GuestObservation(cluster="pdn1", vmid=101, node="pve1", name="web", type="qemu", status="stopped")
    state, changes = run([OK, model.assess_vm(stopped, Thresholds())], Thresholds(down_after=5))
    assert state.state is State.DOWN and state.reason is Reason.VM_STOPPED
    assert changes[-1].reason is Reason.VM_STOPPED


@settings(deadline=None)  # a busy CI host must not turn a slow example into a failure
@given(st.lists(st.booleans(), max_size=40), st.integers(1, 5), st.integers(1, 5))
def test_properties_of_the_thresholds(outcomes: list[bool], down_after: int, up_after: int) -> None:
    th = Thresholds(down_after=down_after, up_after=up_after)
    state, changes = run([OK if ok else FAIL for ok in outcomes], th)
    trailing_failures = len(outcomes) - len("".join("1" if o else "0" for o in outcomes).rstrip("0"))
    if trailing_failures >= down_after:
        assert state.state is State.DOWN
    if state.state is State.DOWN and outcomes and outcomes[-1]:
        assert state.successes < up_after, "DOWN with enough successes must have recovered"
    for change in changes:
        assert change.old is not change.new
    for before, after in pairwise(changes):
        assert before.new is after.old, "events chain: each starts where the previous ended"
    if not outcomes:
        assert state.state is State.UNKNOWN and not changes


def test_slow_response_and_expiring_certificate_degrade_a_site() -> None:
    th = Thresholds(slow_response_s=2.0, tls_warning_days=14)
    slow = SiteCheck(url="https://x/", at=T0, ok=True, status_code=200, total_s=2.5, tls_days_left=60)
    assert model.assess_site(slow, th).degraded == (Reason.SLOW_RESPONSE,)
    expiring = SiteCheck(url="https://x/", at=T0, ok=True, status_code=200, total_s=0.1, tls_days_left=10)
    verdict = model.assess_site(expiring, th)
    assert verdict.degraded == (Reason.TLS_EXPIRING,)
    assert model.assess_site(expiring, th, tls_warning_days=7).degraded == (), "the site's own warning days win"
    state, _ = run([verdict], th)
    assert state.state is State.DEGRADED and state.reason is Reason.TLS_EXPIRING
    failed = SiteCheck(url="https://x/", at=T0, ok=False, failure=FailureClass.KEYWORD, detail="keyword missing")
    assert model.assess_site(failed, th) == Verdict(ok=False, reason=Reason.CHECK_FAILED,
                                                    failure=FailureClass.KEYWORD, detail="keyword missing")


def test_guest_rules_disk_services_failed_units_memory() -> None:
    th = Thresholds(disk_used_ratio=0.9, memory_available_ratio=0.05)
    obs = SshObservation(
        cluster="pdn1", vmid=101, at=T0, ok=True,
        mounts=(Mount("/", 100, 95, 5), Mount("/var", 100, 10, 90)),
        mem_total_bytes=1000, mem_available_bytes=10,
        services={"nginx.service": "active", "php8.2-fpm.service": "failed"},
        failed_units=("php8.2-fpm.service",),
    )
    verdict = model.assess_ssh(obs, ["nginx.service", "php8.2-fpm.service", "cron.service"], th)
    assert verdict.ok
    assert verdict.degraded == (Reason.SERVICE_INACTIVE, Reason.FAILED_UNITS, Reason.DISK_FULL, Reason.MEMORY_LOW)
    assert "cron.service" in verdict.detail and "php8.2-fpm.service" in verdict.detail and "/" in verdict.detail
    healthy = SshObservation(cluster="pdn1", vmid=101, at=T0, ok=True, mounts=(Mount("/", 100, 50, 50),),
                             services={"nginx.service": "active"})
    assert model.assess_ssh(healthy, ["nginx.service"], th) == Verdict(ok=True)
    changed = SshObservation(cluster="pdn1", vmid=101, at=T0, ok=False, failure=FailureClass.HOST_KEY)
    assert model.assess_ssh(changed, [], th).reason is Reason.HOST_KEY


def test_vm_node_and_cluster_verdicts() -> None:
    th = Thresholds(disk_used_ratio=0.8)
    running = GuestObservation(cluster="c", vmid=1, node="n", name="v", type="qemu", status="running",
                               disk=90, maxdisk=100)
    assert model.assess_vm(running, th).degraded == (Reason.DISK_FULL,)
    missing = model.assess_vm(None, th)
    assert not missing.ok and missing.reason is Reason.VM_MISSING and missing.definitive
    assert model.assess_node(NodeObservation("c", "n", online=False)).reason is Reason.NODE_OFFLINE
    assert model.assess_node(NodeObservation("c", "n", online=True)).ok
    bad = ClusterObservation(cluster="c", at=T0, ok=False, failure=FailureClass.AUTH, detail="401")
    assert model.assess_cluster(bad).failure is FailureClass.AUTH
    assert model.assess_cluster(ClusterObservation(cluster="c", at=T0, ok=True, quorate=False)).degraded == (
        Reason.NOT_QUORATE,)


def test_a_site_whose_vm_is_stopped_carries_the_vm_as_its_cause() -> None:
    site = TargetState(key="site:http://a/", state=State.DOWN, reason=Reason.CHECK_FAILED)
    vm = TargetState(key="vm:pdn1/101", state=State.DOWN, reason=Reason.VM_STOPPED)
    other = TargetState(key="site:http://b/", state=State.DOWN, reason=Reason.CHECK_FAILED)
    parents = {"site:http://a/": "vm:pdn1/101", "vm:pdn1/101": "node:pdn1/pve1", "site:http://b/": "vm:pdn1/102"}
    causes = model.root_causes({s.key: s for s in (site, vm, other)}, parents)
    assert causes == {"site:http://a/": Cause("vm:pdn1/101", Reason.VM_STOPPED), "vm:pdn1/101": None,
                      "site:http://b/": None}


def test_the_root_cause_is_the_furthest_down_ancestor() -> None:
    states = {
        "site:s": TargetState(key="site:s", state=State.DOWN),
        "guest:pdn1/1": TargetState(key="guest:pdn1/1", state=State.UNKNOWN),
        "vm:pdn1/1": TargetState(key="vm:pdn1/1", state=State.DOWN, reason=Reason.VM_STOPPED),
        "node:pdn1/pve1": TargetState(key="node:pdn1/pve1", state=State.DOWN, reason=Reason.NODE_OFFLINE),
    }
    parents = {"site:s": "vm:pdn1/1", "guest:pdn1/1": "vm:pdn1/1", "vm:pdn1/1": "node:pdn1/pve1",
               "node:pdn1/pve1": "cluster:pdn1"}
    causes = model.root_causes(states, parents)
    node = Cause("node:pdn1/pve1", Reason.NODE_OFFLINE)
    assert causes == {"site:s": node, "guest:pdn1/1": node, "vm:pdn1/1": node, "node:pdn1/pve1": None}


def test_cycles_in_dependencies_are_cut() -> None:
    states = {"site:a": TargetState(key="site:a", state=State.DOWN),
              "vm:b": TargetState(key="vm:b", state=State.DOWN, reason=Reason.VM_STOPPED)}
    causes = model.root_causes(states, {"site:a": "vm:b", "vm:b": "site:a"})
    assert causes["site:a"] == Cause("vm:b", Reason.VM_STOPPED)


def test_unknown_resets_counters_and_thresholds_validate() -> None:
    state = TargetState(key="vm:c/1", state=State.UP, failures=0, successes=5, since=T0)
    later = T0 + timedelta(minutes=5)
    gone = model.unknown(state, later, Reason.SOURCE_FAILING, "401")
    assert gone.state is State.UNKNOWN and gone.successes == 0 and gone.since == later
    assert model.change_of(state, gone, later) is not None
    with pytest.raises(ValueError):
        Thresholds(down_after=0)
    with pytest.raises(ValueError):
        Thresholds(disk_used_ratio=1.5)
    assert model.split_key(model.target_key(model.Kind.SITE, "https://a:1/")) == (model.Kind.SITE, "https://a:1/")
    assert model.uptime_ratio(1800, 3600) == 0.5 and model.uptime_ratio(0, 0) is None
# The properties of root causes: tests/health/test_root_cause.py.
