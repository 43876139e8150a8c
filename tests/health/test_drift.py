"""Drift between the inventory and a cluster, both ways."""

from __future__ import annotations

from datetime import UTC, datetime

from pdn_ops.health.drift import guest_drift
from pdn_ops.health.observations import ClusterObservation, FailureClass, GuestObservation

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def guest(vmid: int, template: bool = False) -> GuestObservation:
    return GuestObservation(cluster="pve-a", vmid=vmid, node="pve1", name=f"vm{vmid}", type="qemu",
                            status="running", template=template)


def test_drift_reports_unlisted_guests_and_missing_inventory_vms():
    obs = ClusterObservation(cluster="pve-a", at=NOW, ok=True, guests=(guest(100), guest(101), guest(300)))
    drift = guest_drift(obs, [100, 101, 102])
    assert drift is not None
    assert [g.vmid for g in drift.unlisted] == [300]
    assert drift.missing == (102,)
    assert not drift.clean


def test_matching_inventory_has_no_drift_and_templates_are_not_unlisted():
    obs = ClusterObservation(cluster="pve-a", at=NOW, ok=True, guests=(guest(100), guest(9000, template=True)))
    drift = guest_drift(obs, [100])
    assert drift is not None and drift.clean


def test_failed_or_empty_cycle_says_nothing_about_drift():
    empty = ClusterObservation(cluster="pve-a", at=NOW, ok=False, failure=FailureClass.EMPTY)
    assert guest_drift(empty, [100, 101]) is None
