"""pdn-ops' Alertmanager receiver: authenticated, records the alert on the fleet and incident pages, tells the
engineers once per alert and state change (retries and concurrent deliveries included), on both engines."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from pdn_ops.accounts.model import Role
from pdn_ops.accounts.service import create_user
from pdn_ops.app.factory import create_app
from pdn_ops.app.runtime import build_runtime
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import SiteRow
from pdn_ops.core.settings import load_settings
from pdn_ops.health.tables import HealthAlertRow
from pdn_ops.notify.tables import NotifyOutboxRow
from tests.health_world import ROOT, SITE_B, record_world
from tests.support import serve_in_thread

TOKEN = "am-token-0123456789abcdef"


@pytest.fixture
def app(fresh_db_url: str) -> Iterator[FastAPI]:
    migrate.upgrade(fresh_db_url)
    settings = load_settings(demo=True, database_url=fresh_db_url, inventory=ROOT / "inventory.example.yaml",
                             run_scheduler=False, alertmanager_token=TOKEN, notify_worker=False,
                             public_url="https://pdn.example.go.id")
    app = create_app(build_runtime(settings))
    with transaction(app.state.runtime.sessions) as session:
        record_world(session)
        eng_a = create_user(session, username="eng-a", password="x" * 12, role=Role.ENGINEER, language="id")
        eng_a.phone, eng_a.email = "+6281234567001", "a@diskominfo.example.go.id"
        eng_b = create_user(session, username="eng-b", password="x" * 12, role=Role.ENGINEER, language="en")
        eng_b.email = "b@diskominfo.example.go.id"
    yield app
    app.state.runtime.engine.dispose()


def site_id(app: FastAPI) -> int:
    with app.state.runtime.sessions() as session:
        found = session.scalar(select(SiteRow.id).where(SiteRow.url == SITE_B))
    assert found is not None
    return int(found)


def payload(status: str, labels: dict[str, str], *, starts: str = "2026-12-07T10:00:00Z",
            fingerprint: str = "8c2a3b5d9e0f1a2b") -> dict[str, Any]:
    return {"version": "4", "status": status, "receiver": "pdn-ops-critical", "groupKey": "{}:{}",
            "groupLabels": {}, "commonLabels": labels, "commonAnnotations": {}, "externalURL": "http://am",
            "truncatedAlerts": 0,
            "alerts": [{"status": status, "labels": labels, "fingerprint": fingerprint, "startsAt": starts,
                        "endsAt": "2026-12-07T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prometheus/graph",
                        "annotations": {"summary": f"Site {labels.get('site_id')} of OPD disdik is down"}}]}


def outbox(app: FastAPI) -> list[NotifyOutboxRow]:
    with app.state.runtime.sessions() as session:
        return list(session.scalars(select(NotifyOutboxRow).where(NotifyOutboxRow.event == "health_alert")
                                    .order_by(NotifyOutboxRow.id)))


def test_posts_need_the_bearer_token_and_a_real_payload(app: FastAPI) -> None:
    body = payload("firing", {"alertname": "PdnSiteDown", "site_id": str(site_id(app)), "severity": "critical"})
    with TestClient(app) as client:
        assert client.post("/webhooks/alertmanager", json=body).status_code == 401
        wrong = client.post("/webhooks/alertmanager", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and TOKEN not in wrong.text
        auth = {"Authorization": f"Bearer {TOKEN}"}
        bad = client.post("/webhooks/alertmanager", json={"version": "3", "alerts": []}, headers=auth)
        assert bad.status_code == 400 and "version 4" in bad.json()["detail"]
        bad = client.post("/webhooks/alertmanager", content=b"{not json", headers=auth)
        assert bad.status_code == 400
        broken = dict(body, alerts=[dict(body["alerts"][0], fingerprint="../../etc")])
        assert client.post("/webhooks/alertmanager", json=broken, headers=auth).status_code == 400
    with app.state.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(HealthAlertRow)) == 0, "nothing half-recorded"


def post(base: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(f"{base}/webhooks/alertmanager", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


def test_an_alert_is_recorded_and_told_once_per_state_change_even_when_delivered_concurrently(
        app: FastAPI) -> None:
    sid = site_id(app)
    labels = {"alertname": "PdnSiteDown", "site_id": str(sid), "opd": "disdik", "severity": "critical"}
    with serve_in_thread(app) as base, ThreadPoolExecutor(max_workers=6) as pool:
        firing = list(pool.map(lambda _: post(base, payload("firing", labels)), range(6)))
        assert sum(r["notified"] for r in firing) == 3, "eng-a by WhatsApp and e-mail, eng-b by e-mail: once"
        assert post(base, payload("firing", labels))["notified"] == 0, "Alertmanager's repeat is not news"
        resolved = list(pool.map(lambda _: post(base, payload("resolved", labels)), range(6)))
        assert sum(r["notified"] for r in resolved) == 3
        late = post(base, payload("firing", labels))  # an out-of-order retry of the earlier state
        assert late["notified"] == 0
        again = post(base, payload("firing", labels, starts="2026-12-07T11:00:00Z"))
        assert again["notified"] == 3, "the same alert firing again later is a new episode"
    messages = outbox(app)
    assert len(messages) == 9 and len({m.idempotency_key for m in messages}) == 9
    first = messages[0].params
    assert first["link"] == f"https://pdn.example.go.id/fleet/site/{sid}"
    assert "remediation?target=pdn1%2F102&playbook=restart_service" in str(first["playbooks"])
    with app.state.runtime.sessions() as session:
        rows = list(session.scalars(select(HealthAlertRow).order_by(HealthAlertRow.starts_at)))
    assert [(r.status, r.notified_status, r.target_key) for r in rows] == [
        ("resolved", "resolved", f"site:{SITE_B}"), ("firing", "firing", f"site:{SITE_B}")]


def test_the_fleet_and_incident_pages_show_what_alertmanager_reported(app: FastAPI) -> None:
    from pdn_ops.accounts.model import Principal

    sid = site_id(app)
    labels = {"alertname": "PdnSiteDown", "site_id": str(sid), "opd": "disdik", "severity": "critical"}
    with TestClient(app) as client:
        answer = client.post("/webhooks/alertmanager", json=payload("firing", labels),
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200
        app.state.runtime.accounts.authenticate = lambda request: Principal(user_id=1, username="eng",
                                                                             role=Role.ENGINEER, opd_id=None)
        fleet = client.get("/fleet?lang=en").text
        assert "Alerts from Alertmanager" in fleet and "PdnSiteDown" in fleet
        assert f"Site {sid} of OPD disdik is down" in fleet
        detail = client.get(f"/fleet/site/{sid}?lang=id").text
        assert "Peringatan dari Alertmanager" in detail and "PdnSiteDown" in detail and "aktif" in detail
