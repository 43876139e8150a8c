"""Which snapshot to roll back to, on SQLite and PostgreSQL: the last one before the problem began, as the checks
and the complaint tell; and the cache that keeps Proxmox reads off the request path.

The snapshot lists here are recorded answers of the lab's ``GET .../snapshot`` (the route tests in test_web.py
and the end-to-end test read them from a live API).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from pdn_ops.complaints import service as complaints
from pdn_ops.complaints.model import Action
from pdn_ops.complaints.service import ComplaintConfig
from pdn_ops.core.errors import NotFound, PolicyRefused, TargetUnreachable
from pdn_ops.core.inventory import load_inventory
from pdn_ops.health import service as health
from pdn_ops.health.model import Thresholds
from pdn_ops.health.observations import FailureClass, SiteCheck
from pdn_ops.runs.snapshots import SnapshotCache, parse_snapshots, problem_started_at, suggest, suggestion_view
from tests.complaints.test_complaint_service import Named, _file
from tests.complaints.world import ROOT

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
SITE = "http://127.0.10.1/"  # Portal Dinkes, on pdn1/101


def _ts(when: datetime) -> int:
    return int(when.timestamp())


RECORDED = [
    {"name": "weekly", "snaptime": _ts(T0 - timedelta(days=7)), "vmstate": 0, "description": "weekly"},
    {"name": "before_update", "snaptime": _ts(T0 - timedelta(hours=1)), "vmstate": 0, "description": "",
     "parent": "weekly"},
    {"name": "pdn_safety_9", "snaptime": _ts(T0 + timedelta(hours=2)), "vmstate": 0,
     "description": "pdn-ops safety snapshot", "parent": "before_update"},
    {"name": "current", "digest": "x", "running": 1, "description": "You are here!", "parent": "pdn_safety_9"},
]


def _recorded_cache() -> SnapshotCache:
    return SnapshotCache(fetch=lambda _target: parse_snapshots(RECORDED))


def _site(session: Session, at: datetime, ok: bool) -> None:
    check = SiteCheck(url=SITE, at=at, ok=ok, status_code=200 if ok else 500,
                      failure=None if ok else FailureClass.STATUS, detail="" if ok else "HTTP 500")
    health.record_site_checks(session, [check], thresholds=Thresholds(), now=at)


def test_parse_skips_the_current_entry_and_orders_by_time() -> None:
    names = [s.name for s in parse_snapshots(list(reversed(RECORDED)))]
    assert names == ["weekly", "before_update", "pdn_safety_9"]
    assert parse_snapshots({"errors": "x"}) == [] and parse_snapshots([{"name": "x", "snaptime": "?"}])[0].taken_at is None


def test_the_last_snapshot_before_the_first_failed_check_is_suggested(session: Session) -> None:
    inventory = load_inventory(ROOT / "inventory.example.yaml")
    Named(session)  # the example inventory, synced, and its accounts
    for minutes, ok in ((-120, True), (-30, True), (10, False), (20, False)):
        _site(session, T0 + timedelta(minutes=minutes), ok)
    assert problem_started_at(session, "pdn1/101") == T0 + timedelta(minutes=10)
    assert problem_started_at(session, "pdn1/102") is None, "nothing wrong on record for another VM"
    cache = _recorded_cache()
    first = suggest(session, cache, inventory, target="pdn1/101")
    assert first.listing.state == "reading" and first.suggested is None  # nothing read yet; the read is under way
    assert cache.wait("pdn1/101", 5).state == "fresh"
    found = suggest(session, cache, inventory, target="pdn1/101")
    assert found.suggested == "before_update", "not the safety snapshot taken after the problem began"
    view = suggestion_view(found)
    assert [s["name"] for s in view["snapshots"]] == ["pdn_safety_9", "before_update", "weekly"]
    assert [s["name"] for s in view["snapshots"] if s["suggested"]] == ["before_update"]
    with pytest.raises(NotFound):
        suggest(session, cache, inventory, target="pdn1/999")


def test_a_complaint_filed_before_the_checks_failed_moves_the_problem_earlier(session: Session,
                                                                              tmp_path: Path) -> None:
    inventory = load_inventory(ROOT / "inventory.example.yaml")
    named = Named(session)
    config = ComplaintConfig(data_dir=tmp_path)
    complaint_id = _file(session, named, config, now=T0 - timedelta(hours=3))  # about web-dinkes (pdn1/101)
    complaints.act(session, named.users["engineer"], complaint_id, Action.VERIFY, config=config)
    _site(session, T0 + timedelta(minutes=10), False)
    cache = _recorded_cache()
    cache.get("pdn1/101")
    cache.wait("pdn1/101", 5)
    found = suggest(session, cache, inventory, target="pdn1/101", complaint_id=complaint_id)
    assert found.problem_at == T0 - timedelta(hours=3) and found.suggested == "weekly"
    with pytest.raises(PolicyRefused):  # the complaint is Dinas Kesehatan's, pdn1/102 is Dinas Pendidikan's
        suggest(session, cache, inventory, target="pdn1/102", complaint_id=complaint_id)
    with pytest.raises(NotFound):
        suggest(session, cache, inventory, target="pdn1/101", complaint_id=complaint_id + 1000)


def test_a_failed_read_is_shown_and_read_again_only_when_stale_or_asked() -> None:
    now = [T0]
    calls: list[str] = []
    gate = threading.Event()

    def unreachable(target: str) -> list:
        calls.append(target)
        gate.wait(5)
        raise TargetUnreachable("Proxmox API unreachable (ConnectTimeout)")

    cache = SnapshotCache(fetch=unreachable, max_age=timedelta(seconds=30), clock=lambda: now[0])
    assert cache.get("pdn1/101").state == "reading"
    assert cache.get("pdn1/101").state == "reading" and len(calls) <= 1, "one read at a time per VM"
    gate.set()
    failed = cache.wait("pdn1/101", 5)
    assert failed.state == "failed" and "unreachable" in (failed.error or "") and calls == ["pdn1/101"]
    assert cache.get("pdn1/101").state == "failed", "a page that reloads itself does not hammer the cluster"
    assert cache.get("pdn1/101", refresh=True).refreshing
    cache.wait("pdn1/101", 5)
    now[0] = T0 + timedelta(seconds=31)
    assert cache.get("pdn1/101").refreshing, "stale: read again"
    cache.wait("pdn1/101", 5)
    assert len(calls) == 3
