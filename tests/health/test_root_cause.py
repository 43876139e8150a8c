"""The one root-cause rule (pdn_ops.health.model.attribute): causes from evidence, never from ignorance.

Examples are the issue's cases; the properties hold the rule over random fleets shaped like the real one
(cluster -> nodes -> VMs -> sites and guests). An alert "fires" for a target that is a problem and has no
observed cause (that is what pdn_*_dependency_down exports and the shipped rules follow)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from pdn_ops.health import model
from pdn_ops.health.model import Attribution, Cause, Reason, State, TargetState, Thresholds
from pdn_ops.health.observations import FailureClass, GuestObservation

CLUSTER = "cluster:pdn1"
NODE = "node:pdn1/pve1"
VM = "vm:pdn1/101"
SITE = "site:https://a/"
GUEST = "guest:pdn1/101"
PARENTS = {SITE: VM, GUEST: VM, VM: NODE, NODE: CLUSTER, CLUSTER: None}


def ts(key: str, state: State, reason: Reason = Reason.CHECK_FAILED, failure: FailureClass | None = None,
       degraded: tuple[Reason, ...] = ()) -> TargetState:
    return TargetState(key=key, state=state, reason=reason, failure=failure, degraded=degraded)


def attribute(*states: TargetState, alive: frozenset[str] = frozenset()) -> dict[str, Attribution]:
    return model.attribute({s.key: s for s in states}, PARENTS, alive=alive)


API_DOWN = ts(CLUSTER, State.DOWN, failure=FailureClass.AUTH)
VM_BLIND = ts(VM, State.UNKNOWN, Reason.SOURCE_FAILING)
NODE_BLIND = ts(NODE, State.UNKNOWN, Reason.SOURCE_FAILING)
SITE_REFUSED = ts(SITE, State.DOWN, failure=FailureClass.REFUSED)


def test_a_revoked_token_never_takes_the_blame_for_a_site_that_fails() -> None:
    found = attribute(API_DOWN, NODE_BLIND, VM_BLIND, SITE_REFUSED)
    assert found[SITE] == Attribution(cause=None, blind=CLUSTER), "its own incident, cause unknown"
    assert found[CLUSTER] == Attribution()


def test_a_site_failing_on_a_vm_whose_guest_answers_is_still_marked_cause_unknown_while_the_api_is_blind() -> None:
    found = attribute(API_DOWN, NODE_BLIND, VM_BLIND, SITE_REFUSED, alive=frozenset({VM}))
    assert found[SITE] == Attribution(cause=None, blind=CLUSTER)


def test_a_stopped_vm_seen_by_an_answering_api_is_the_cause() -> None:
    found = attribute(ts(VM, State.DOWN, Reason.VM_STOPPED), SITE_REFUSED)
    assert found[SITE].cause == Cause(VM, Reason.VM_STOPPED)


def test_a_vm_whose_guest_answers_is_not_a_cause() -> None:
    found = attribute(ts(VM, State.DOWN, Reason.VM_STOPPED), SITE_REFUSED, alive=frozenset({VM}))
    assert found[SITE].cause is None


def test_an_offline_node_explains_a_refused_site_but_not_an_expired_certificate() -> None:
    node = ts(NODE, State.DOWN, Reason.NODE_OFFLINE)
    vm = ts(VM, State.UNKNOWN, Reason.NODE_OFFLINE)
    assert attribute(node, vm, SITE_REFUSED)[SITE].cause == Cause(NODE, Reason.NODE_OFFLINE)
    assert attribute(node, vm)[VM].cause == Cause(NODE, Reason.NODE_OFFLINE)
    expired = ts(SITE, State.DOWN, failure=FailureClass.TLS)
    assert attribute(node, vm, expired)[SITE] == Attribution(), "it answered: the certificate is its own problem"


def test_a_node_offline_in_a_cluster_without_quorum_is_not_evidence() -> None:
    cluster = ts(CLUSTER, State.DEGRADED, Reason.NOT_QUORATE, degraded=(Reason.NOT_QUORATE,))
    found = attribute(cluster, ts(NODE, State.DOWN, Reason.NODE_OFFLINE), ts(VM, State.UNKNOWN, Reason.NODE_OFFLINE),
                      SITE_REFUSED)
    assert found[SITE].cause is None and found[SITE].blind == CLUSTER


def test_a_vm_on_an_offline_node_is_unknown_not_stopped() -> None:
    guest = GuestObservation(cluster="pdn1", vmid=101, node="pve1", name="web", type="qemu", status="unknown")
    verdict = model.assess_vm(guest, Thresholds())
    assert verdict.unknown and verdict.reason is Reason.NODE_OFFLINE
    running = GuestObservation(cluster="pdn1", vmid=101, node="pve1", name="web", type="qemu", status="running")
    assert model.assess_vm(running, Thresholds(), node_online=False).unknown
    state = model.step(ts(VM, State.UP, Reason.OK), verdict, datetime(2026, 11, 28, tzinfo=UTC), Thresholds())
    assert state.state is State.UNKNOWN and state.reason is Reason.NODE_OFFLINE


STORE = "storage:pdn1/pve1/local-lvm"
FROZEN = ts(VM, State.DOWN, Reason.IO_ERROR)
FULL = ts(STORE, State.DOWN, Reason.STORAGE_FULL)


def test_a_vm_in_io_error_on_a_full_storage_is_down_because_of_the_storage() -> None:
    found = model.attribute({s.key: s for s in (FROZEN, FULL, SITE_REFUSED)}, PARENTS, storages={VM: [STORE]})
    assert found[VM].cause == Cause(STORE, Reason.STORAGE_FULL)
    assert found[SITE].cause == Cause(STORE, Reason.STORAGE_FULL), "the root, not the VM in between"


def test_an_io_error_is_the_vms_own_without_evidence_of_a_full_storage() -> None:
    assert attribute(FROZEN, SITE_REFUSED)[VM] == Attribution(), "no storage observed full"
    assert attribute(FROZEN, SITE_REFUSED)[SITE].cause == Cause(VM, Reason.IO_ERROR), "the frozen VM is observed"
    other = "storage:pdn1/pve1/nas"
    found = model.attribute({s.key: s for s in (FROZEN, ts(other, State.DOWN, Reason.STORAGE_FULL))}, PARENTS,
                            storages={VM: [STORE]})
    assert found[VM].cause is None, "a full storage the VM's disks are not on explains nothing"
    stopped = ts(VM, State.DOWN, Reason.VM_STOPPED)
    found = model.attribute({s.key: s for s in (stopped, FULL)}, PARENTS, storages={VM: [STORE]})
    assert found[VM].cause is None, "a stopped VM was stopped, not frozen by its storage"


def test_a_full_storage_reported_by_a_failing_api_is_not_evidence() -> None:
    found = model.attribute({s.key: s for s in (API_DOWN, FROZEN, FULL)}, PARENTS, storages={VM: [STORE]})
    assert found[VM].cause is None


def test_an_io_error_vm_is_down_at_once_and_a_lock_left_long_enough_degrades_it() -> None:
    frozen = GuestObservation(cluster="pdn1", vmid=101, node="pve1", name="web", type="qemu", status="running",
                              qmpstatus="io-error", disk_storages=("local-lvm",))
    verdict = model.assess_vm(frozen, Thresholds())
    assert (verdict.ok, verdict.reason, verdict.definitive) == (False, Reason.IO_ERROR, True)
    locked = GuestObservation(cluster="pdn1", vmid=101, node="pve1", name="web", type="qemu", status="running",
                              lock="backup", lock_free_s=599.0)
    assert model.assess_vm(locked, Thresholds()).degraded == ()
    assert model.assess_vm(replace(locked, lock_free_s=600.0), Thresholds()).degraded == (Reason.STALE_LOCK,)
    assert model.assess_vm(replace(locked, lock_free_s=None), Thresholds()).degraded == (), "a task holds it"


# --- properties ----------------------------------------------------------------------------------------------

NODES = ["node:pdn1/pve1", "node:pdn1/pve2"]
VMS = ["vm:pdn1/101", "vm:pdn1/102", "vm:pdn1/103"]
SITES = ["site:https://a/", "site:https://b/", "site:https://c/", "site:https://d/"]
GUESTS = ["guest:pdn1/101", "guest:pdn1/102", "guest:pdn1/103"]
VM_STATES = st.sampled_from([ts("", State.UP, Reason.OK), ts("", State.DOWN, Reason.VM_STOPPED),
                             ts("", State.DOWN, Reason.VM_MISSING), ts("", State.UNKNOWN, Reason.NODE_OFFLINE),
                             ts("", State.UNKNOWN, Reason.SOURCE_FAILING), ts("", State.DEGRADED, Reason.DISK_FULL),
                             ts("", State.DOWN, Reason.IO_ERROR)])
STORAGE_STATES = st.sampled_from([ts("", State.UP, Reason.OK), ts("", State.DOWN, Reason.STORAGE_FULL)])
NODE_STATES = st.sampled_from([ts("", State.UP, Reason.OK), ts("", State.DOWN, Reason.NODE_OFFLINE),
                               ts("", State.UNKNOWN, Reason.SOURCE_FAILING)])
CLUSTER_STATES = st.sampled_from([ts("", State.UP, Reason.OK), ts("", State.DOWN, failure=FailureClass.AUTH),
                                  ts("", State.DEGRADED, Reason.NOT_QUORATE, degraded=(Reason.NOT_QUORATE,))])
LEAF_STATES = st.sampled_from([ts("", State.UP, Reason.OK)] + [ts("", State.DOWN, failure=f) for f in FailureClass]
                              + [ts("", State.DEGRADED, Reason.TLS_EXPIRING), ts("", State.UNKNOWN, Reason.STALE)])


@st.composite
def fleets(draw: st.DrawFn) -> tuple[dict[str, TargetState], dict[str, str | None]]:
    parents: dict[str, str | None] = {CLUSTER: None}
    states: dict[str, TargetState] = {}

    def put(key: str, strategy: st.SearchStrategy[TargetState]) -> None:
        state = draw(strategy)
        if state.state is not State.UP:
            states[key] = TargetState(key=key, state=state.state, reason=state.reason, failure=state.failure,
                                      degraded=state.degraded)

    put(CLUSTER, CLUSTER_STATES)
    for node in NODES:
        parents[node] = CLUSTER
        put(node, NODE_STATES)
        put(storage_of(node), STORAGE_STATES)
    for vm in VMS:
        parents[vm] = draw(st.sampled_from(NODES))
        put(vm, VM_STATES)
    for guest, vm in zip(GUESTS, VMS, strict=True):
        parents[guest] = vm
        put(guest, LEAF_STATES)
    for site in SITES:
        parents[site] = draw(st.sampled_from([*VMS, None]))
        put(site, LEAF_STATES)
    return states, parents


def storage_of(node: str) -> str:
    return "storage:" + node.removeprefix("node:") + "/local-lvm"


def disks(parents: dict[str, str | None]) -> dict[str, list[str]]:
    """Each VM's disks on the local storage of its node (where io-error finds its cause)."""
    return {vm: [storage_of(str(parents[vm]))] for vm in VMS}


def firing(states: dict[str, TargetState], parents: dict[str, str | None],
           alive: frozenset[str] = frozenset()) -> set[str]:
    found = model.attribute(states, parents, alive=alive, storages=disks(parents))
    return {key for key, a in found.items() if a.cause is None and states[key].state is State.DOWN
            and not key.startswith(("vm:", "node:", "cluster:"))}


def blind(states: dict[str, TargetState]) -> dict[str, TargetState]:
    """What a failing Proxmox API does to the model: the cluster DOWN, everything it reports UNKNOWN."""
    out = dict(states)
    out[CLUSTER] = ts(CLUSTER, State.DOWN, failure=FailureClass.AUTH)
    for key in [*NODES, *VMS]:
        out[key] = ts(key, State.UNKNOWN, Reason.SOURCE_FAILING)
    return out


@settings(deadline=None, max_examples=300)
@given(fleets())
def test_removing_a_witness_never_turns_a_firing_alert_off(fleet: tuple[dict[str, TargetState],
                                                                        dict[str, str | None]]) -> None:
    states, parents = fleet
    before = firing(states, parents)
    assert before <= firing(blind(states), parents)


@settings(deadline=None, max_examples=300)
@given(fleets(), st.sampled_from(VMS + NODES))
def test_a_failing_upstream_never_hides_a_failure_another_witness_confirms(
        fleet: tuple[dict[str, TargetState], dict[str, str | None]], upstream: str) -> None:
    states, parents = fleet
    # Another witness confirms the downstream failure is its own: it answered (TLS, status, keyword...), or the
    # guest of its VM answers over SSH (the VM runs).
    alive = frozenset(vm for vm, guest in zip(VMS, GUESTS, strict=True)
                      if guest not in states or states[guest].state is State.DEGRADED)
    confirmed = {key for key in firing(states, parents, alive)
                 if states[key].failure in model.OWN_FAILURES or parents.get(key) in alive}
    failing = dict(states)
    failing[upstream] = (ts(upstream, State.DOWN, Reason.VM_STOPPED) if upstream.startswith("vm:")
                         else ts(upstream, State.DOWN, Reason.NODE_OFFLINE))
    assert confirmed <= firing(failing, parents, alive)


@settings(deadline=None, max_examples=300)
@given(fleets())
def test_a_cause_is_an_observed_down_ancestor_and_a_root(fleet: tuple[dict[str, TargetState],
                                                                      dict[str, str | None]]) -> None:
    states, parents = fleet
    found = model.attribute(states, parents, storages=disks(parents))
    assert set(found) == set(states)
    for key, attribution in found.items():
        if attribution.cause is None:
            continue
        cause = states[attribution.cause.key]
        assert cause.state is State.DOWN and cause.reason in (Reason.VM_STOPPED, Reason.VM_MISSING,
                                                              Reason.NODE_OFFLINE, Reason.IO_ERROR,
                                                              Reason.STORAGE_FULL)
        assert found[cause.key].cause is None, "a cause is a root: it has no cause itself"
        assert states.get(CLUSTER, ts(CLUSTER, State.UP)).state is State.UP or \
            states[CLUSTER].state is State.DEGRADED, "only a working witness's observation is evidence"
        ancestor, chain = parents.get(key), []
        while ancestor is not None:
            chain.append(ancestor)
            ancestor = parents.get(ancestor)
        if cause.reason is Reason.STORAGE_FULL:
            # Only through a VM frozen in io-error whose disks are on it: the target itself or an upstream VM.
            frozen = [vm for vm in (key, *chain) if vm in VMS and vm in states
                      and states[vm].reason is Reason.IO_ERROR and states[vm].state is State.DOWN]
            assert frozen and attribution.cause.key in disks(parents)[frozen[0]]
        else:
            assert attribution.cause.key in chain


@settings(deadline=None, max_examples=300)
@given(fleets())
def test_a_full_storage_explains_only_vms_frozen_in_io_error(fleet: tuple[dict[str, TargetState],
                                                                          dict[str, str | None]]) -> None:
    states, parents = fleet
    found = model.attribute(states, parents, storages=disks(parents))
    for vm in VMS:
        cause = found[vm].cause if vm in states else None
        if vm in states and states[vm].reason is not Reason.IO_ERROR:
            assert cause is None or not cause.key.startswith("storage:")
    # Without the storage evidence the same fleet blames nothing on a storage.
    bare = model.attribute({k: v for k, v in states.items() if not k.startswith("storage:")}, parents,
                           storages=disks(parents))
    assert all(a.cause is None or not a.cause.key.startswith("storage:") for a in bare.values())
