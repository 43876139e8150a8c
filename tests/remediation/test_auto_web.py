"""The automatic remediation page and /api/v1 (rules, windows, the global switch), and the remediation pages'
refusals: in the reader's language, the form re-rendered with the values as typed, JSON only under /api/v1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from pdn_ops.accounts.auth import Authenticator
from pdn_ops.accounts.model import Principal, Role
from pdn_ops.app.factory import create_app
from pdn_ops.app.runtime import build_runtime
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import AuditRow
from pdn_ops.core.settings import load_settings
from pdn_ops.runs.tables import AutoRuleRow, RemediationRunRow
from tests.remediation.world import add_vms, inventory, write_inventory

ENGINEER = Principal(user_id=1, username="eng1", role=Role.ENGINEER, opd_id=None)
OPD_ADMIN = Principal(user_id=2, username="admin-dinkes", role=Role.OPD_ADMIN, opd_id=1)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, fakepve_session: Any, fakepve_cafile: str,
        ssh_guest_server: Any) -> Iterator[FastAPI]:
    directory = tmp_path_factory.mktemp("autoweb")
    url = f"sqlite:///{directory / 'web.sqlite3'}"
    migrate.upgrade(url)
    add_vms(fakepve_session, range(101, 104))
    path = write_inventory(directory, fakepve_session, fakepve_cafile, ssh_guest_server)
    settings = load_settings(demo=True, database_url=url, inventory=path, run_scheduler=False)
    app = create_app(build_runtime(settings))
    app.state.runtime.inventory = inventory(path)
    yield app
    app.state.runtime.engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    app.state.runtime.accounts.authenticate = lambda request: ENGINEER
    with TestClient(app, headers={"Authorization": "Bearer test"}) as c:
        yield c
    app.state.runtime.accounts.authenticate = Authenticator(app.state.runtime.sessions)
    with transaction(app.state.runtime.sessions) as session:
        session.execute(update(RemediationRunRow).where(RemediationRunRow.outcome.is_(None))
                        .values(state="failed", outcome="failed"))


def audits(app: FastAPI, action: str) -> list[AuditRow]:
    with app.state.runtime.sessions() as session:
        return list(session.scalars(select(AuditRow).where(AuditRow.action == action)))


def test_the_page_shows_the_switch_and_turning_it_off_is_audited(client: TestClient, app: FastAPI) -> None:
    page = client.get("/remediation/automation")
    assert page.status_code == 200 and "Pemulihan otomatis HIDUP" in page.text
    assert "Aturan otomatis dan jendela pemeliharaan" in client.get("/remediation").text
    off = client.post("/remediation/automation/switch", data={"enabled": "off"}, follow_redirects=False)
    assert off.status_code == 303
    page = client.get(off.headers["location"])
    assert "Pemulihan otomatis MATI" in page.text and "Sakelar global diubah." in page.text
    assert client.get("/api/v1/remediation/auto").json() == {"enabled": False}
    assert client.put("/api/v1/remediation/auto", json={"enabled": True}).json() == {"enabled": True}
    assert [a.detail for a in audits(app, "remediation.auto_switch")][-2:] == ["off", "on"]
    english = client.get("/remediation/automation", headers={"Accept-Language": "en"})
    assert "Automatic remediation is ON" in english.text


def test_a_refused_rule_form_comes_back_with_the_reasons_and_the_values(client: TestClient, app: FastAPI) -> None:
    form = {"target": "pve/102", "playbook": "restart_service", "min_failed_checks": "0", "vm_status": "running",
            "params": "unit=nginx.service"}
    page = client.post("/remediation/rules", data=form)
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert "Aturan tidak disimpan" in page.text and "Isi bilangan bulat dari 1 sampai 100." in page.text
    assert 'value="unit=nginx.service"' in page.text and '<option value="pve/102" selected>' in page.text
    # VM 102 declares no SSH: the playbook's own refusal, in Indonesian, on the parameters field.
    page = client.post("/remediation/rules", data={**form, "min_failed_checks": "3"})
    assert page.status_code == 422 and "VM ini tidak punya akses SSH di inventaris." in page.text
    page = client.post("/remediation/rules", data={**form, "target": "pve/101", "min_failed_checks": "3",
                                                   "params": "unit=$(reboot)"})
    assert page.status_code == 422 and "Nama layanan tidak sah" in page.text and "$(reboot)" in page.text
    page = client.post("/remediation/rules", data={**form, "params": "unit nginx"}, headers={"Accept-Language": "en"})
    assert page.status_code == 422 and "Write parameters as name=value" in page.text
    with app.state.runtime.sessions() as session:
        assert session.scalar(select(AutoRuleRow.id).where(AutoRuleRow.target == "pve/102")) is None


def test_rules_are_created_disabled_enabled_and_retired_never_deleted(client: TestClient, app: FastAPI) -> None:
    created = client.post("/remediation/rules", data={"target": "pve/101", "playbook": "restart_service",
                                                      "min_failed_checks": "3", "vm_status": "running",
                                                      "params": "unit=nginx.service"}, follow_redirects=False)
    assert created.status_code == 303
    page = client.get(created.headers["location"])
    assert "Aturan disimpan." in page.text and "layanan tidak aktif pada 3 pemeriksaan berturut-turut" in page.text
    [rule] = [r for r in client.get("/api/v1/remediation/rules").json() if r["playbook"] == "restart_service"]
    assert rule["symptom"] == "service_inactive" and not rule["needs_approval"] and rule["enabled"]
    again = client.post("/remediation/rules", data={"target": "pve/101", "playbook": "restart_service",
                                                    "min_failed_checks": "5", "params": "unit=nginx.service"})
    assert again.status_code == 422 and "VM ini sudah punya aturan untuk prosedur ini." in again.text
    assert client.post(f"/remediation/rules/{rule['id']}/disable", follow_redirects=False).status_code == 303
    assert client.get(f"/api/v1/remediation/rules/{rule['id']}").json()["enabled"] is False
    assert client.patch(f"/api/v1/remediation/rules/{rule['id']}", json={"enabled": True}).json()["enabled"]
    assert client.post(f"/remediation/rules/{rule['id']}/retire", follow_redirects=False).status_code == 303
    assert client.delete(f"/api/v1/remediation/rules/{rule['id']}").status_code == 204  # idempotent
    assert rule["id"] not in [r["id"] for r in client.get("/api/v1/remediation/rules").json()]
    shown = client.get(f"/api/v1/remediation/rules/{rule['id']}").json()
    assert shown["retired"] is True and shown["enabled"] is False
    refused = client.patch(f"/api/v1/remediation/rules/{rule['id']}", json={"enabled": True})
    assert refused.status_code == 409 and refused.json()["detail"]["message"] == "Aturan ini sudah dihapus; buat aturan baru."
    assert client.post("/remediation/rules/999999/disable").status_code == 404
    assert client.post(f"/remediation/rules/{rule['id']}/explode").status_code == 404
    # Created again: the same row comes back (its runs keep naming it).
    restored = client.post("/api/v1/remediation/rules", json={"target": "pve/101", "playbook": "restart_service",
                                                              "vm_status": "running", "params": {"unit": "nginx.service"}})
    assert restored.status_code == 201 and restored.json()["id"] == rule["id"]
    subject = f"remediation_rule:{rule['id']}"
    with app.state.runtime.sessions() as session:
        trail = list(session.scalars(select(AuditRow.action).where(AuditRow.subject == subject).order_by(AuditRow.id)))
    assert trail == ["remediation.rule_created", "remediation.rule_disabled", "remediation.rule_enabled",
                     "remediation.rule_retired", "remediation.rule_restored"]


def test_the_rules_api_refuses_with_every_problem_and_marks_rules_that_wait_for_approval(client: TestClient) -> None:
    bad = client.post("/api/v1/remediation/rules", json={"target": "pve/999", "playbook": "nuke", "min_failed_checks": 0,
                                                         "vm_status": "paused"})
    assert bad.status_code == 422
    assert set(bad.json()["detail"]["errors"]) == {"target", "playbook", "min_failed_checks", "vm_status"}
    resize = client.post("/api/v1/remediation/rules", json={"target": "pve/103", "playbook": "resize_vm",
                                                            "vm_status": None, "params": {"memory_mib": 4096}})
    assert resize.status_code == 201 and resize.json()["needs_approval"] is True
    start = client.post("/api/v1/remediation/rules", json={"target": "pve/103", "playbook": "restart_vm"})
    assert start.status_code == 201 and start.json()["needs_approval"] is False  # stopped VM: a start
    page = client.get("/remediation/automation")
    assert "menunggu persetujuan teknisi" in page.text and "berjalan sendiri" in page.text


def test_maintenance_windows_are_declared_listed_and_ended_early(client: TestClient, app: FastAPI) -> None:
    tz = app.state.runtime.settings.tz
    start = (datetime.now(tz) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    before = (datetime.now(tz) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    page = client.post("/remediation/windows", data={"target": "pve/101", "starts_at": start, "ends_at": before,
                                                     "reason": "kernel"})
    assert page.status_code == 422 and "Jendela harus selesai setelah mulai." in page.text
    assert f'value="{before}"' in page.text and 'value="kernel"' in page.text
    page = client.post("/remediation/windows", data={"starts_at": "tomorrow", "ends_at": ""})
    assert page.status_code == 422 and "Isi tanggal dan jam yang sah." in page.text
    end = (datetime.now(tz) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    done = client.post("/remediation/windows", data={"target": "pve/101", "starts_at": start, "ends_at": end,
                                                     "reason": "kernel"}, follow_redirects=False)
    assert done.status_code == 303
    [window] = [w for w in client.get("/api/v1/remediation/windows").json() if w["reason"] == "kernel"]
    assert window["status"] == "active" and window["target"] == "pve/101"
    assert "berlangsung" in client.get("/remediation/automation").text
    assert client.post(f"/remediation/windows/{window['id']}/end", follow_redirects=False).status_code == 303
    over = client.post(f"/remediation/windows/{window['id']}/end")
    assert over.status_code == 409 and "Jendela ini sudah berakhir." in over.text
    later = datetime.now(UTC) + timedelta(days=1)
    api = client.post("/api/v1/remediation/windows", json={"starts_at": later.isoformat(),
                                                           "ends_at": (later + timedelta(hours=1)).isoformat(),
                                                           "reason": "UPS"})
    assert api.status_code == 201 and api.json()["status"] == "upcoming" and api.json()["target"] is None
    cancelled = client.delete(f"/api/v1/remediation/windows/{api.json()['id']}")
    assert cancelled.json()["status"] == "cancelled"
    assert client.delete(f"/api/v1/remediation/windows/{api.json()['id']}").status_code == 409
    long = client.post("/api/v1/remediation/windows", json={"starts_at": later.isoformat(),
                                                            "ends_at": (later + timedelta(days=15)).isoformat()})
    assert long.status_code == 422 and long.json()["detail"]["errors"] == {"ends_at": "Jendela paling lama 14 hari."}
    actions = [a.action for a in audits(app, "remediation.window_created")] + [
        a.action for a in audits(app, "remediation.window_ended")] + [
        a.action for a in audits(app, "remediation.window_cancelled")]
    assert len(actions) >= 3


def test_a_refused_run_form_is_the_page_again_in_the_readers_language(client: TestClient, app: FastAPI) -> None:
    page = client.post("/remediation/dry-run", data={"playbook": "resize_vm", "target": "pve/103",
                                                     "param_name": "cores", "param_value": "-4"})
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert "Ditolak: Nilai harus bilangan bulat." in page.text
    assert 'value="-4"' in page.text and '<option value="resize_vm" selected>' in page.text
    english = client.post("/remediation/dry-run?lang=en", data={"playbook": "restart_service", "target": "pve/101",
                                                                "param_name": "unit", "param_value": "sshd.service"})
    assert "This service is not declared for this VM in the inventory." in english.text
    client.cookies.clear()  # ?lang=en is remembered in a cookie: back to the default language
    # The request form too (a stale plan whose target got a run meanwhile: not JSON any more).
    refused = client.post("/remediation/runs", data={"playbook": "restart_service", "target": "pve/101", "key": "r1",
                                                     "param_name": "unit", "param_value": "nginx.service\n"})
    assert refused.status_code == 422 and refused.headers["content-type"].startswith("text/html")
    assert "Nama layanan tidak sah" in refused.text


def test_the_requester_cannot_approve_their_own_run_and_the_page_says_why(client: TestClient) -> None:
    created = client.post("/api/v1/remediation/runs", json={"playbook": "restart_vm", "target": "pve/102"},
                          headers={"Idempotency-Key": "approve-twice"})
    run_id = created.json()["id"]
    page = client.get(f"/remediation/runs/{run_id}")
    assert "Setujui" not in page.text  # no approve button for the requester
    assert "selain" in page.text.split('id="approvers"', 1)[1].split("</span>", 1)[0]  # who may approve instead
    again = client.post(f"/remediation/runs/{run_id}/approve")
    assert again.status_code == 409 and again.headers["content-type"].startswith("text/html")
    assert "Anda yang meminta pemulihan ini; teknisi lain harus menyetujuinya." in again.text
    assert client.get(f"/api/v1/remediation/runs/{run_id}").json()["state"] == "awaiting_approval"
    assert client.post("/remediation/runs/999999/approve").status_code == 404


def test_opd_users_see_none_of_it(client: TestClient, app: FastAPI) -> None:
    app.state.runtime.accounts.authenticate = lambda request: OPD_ADMIN
    assert client.get("/remediation/automation").status_code == 404
    assert client.get("/api/v1/remediation/rules").status_code == 404
    assert client.post("/remediation/windows", data={}).status_code == 404
