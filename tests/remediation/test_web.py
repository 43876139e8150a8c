"""Remediation routes and pages: staff only, dry run, enqueue with idempotency, 409 naming the run, approval,
and the remediation series on /metrics (checked by promtool)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
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
from pdn_ops.core.settings import load_settings
from pdn_ops.runs.tables import RemediationRunRow
from tests.remediation.world import add_vms, inventory, write_inventory
from tests.support import missing

ENGINEER = Principal(user_id=1, username="eng1", role=Role.ENGINEER, opd_id=None)
SECOND = Principal(user_id=3, username="eng2", role=Role.ENGINEER, opd_id=None)
OPD_ADMIN = Principal(user_id=2, username="admin-dinkes", role=Role.OPD_ADMIN, opd_id=1)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, fakepve_session: Any, fakepve_cafile: str) -> Iterator[FastAPI]:
    directory = tmp_path_factory.mktemp("remweb")
    url = f"sqlite:///{directory / 'web.sqlite3'}"
    migrate.upgrade(url)
    add_vms(fakepve_session, range(101, 104))
    path = write_inventory(directory, fakepve_session, fakepve_cafile, opd_of={103: "disdik"})
    settings = load_settings(demo=True, database_url=url, inventory=path, run_scheduler=False, metrics_token="test")
    app = create_app(build_runtime(settings))
    app.state.runtime.inventory = inventory(path)
    yield app
    app.state.runtime.engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    app.state.runtime.accounts.authenticate = lambda request: ENGINEER
    # A bearer header makes csrf_guard treat the calls as a script's (the principal comes from "authenticate").
    with TestClient(app, headers={"Authorization": "Bearer test"}) as c:
        yield c
    app.state.runtime.accounts.authenticate = Authenticator(app.state.runtime.sessions)
    with transaction(app.state.runtime.sessions) as session:  # each test starts with no active run
        session.execute(update(RemediationRunRow).where(RemediationRunRow.outcome.is_(None))
                        .values(state="failed", outcome="failed"))


def as_user(app: FastAPI, principal: Principal) -> None:
    app.state.runtime.accounts.authenticate = lambda request: principal


def test_dry_run_shows_the_plan_and_opd_users_see_nothing(client: TestClient, app: FastAPI) -> None:
    body = {"playbook": "restart_vm", "target": "pve/101", "params": {}}
    answer = client.post("/api/v1/remediation/dry-run", json=body)
    assert answer.status_code == 200
    assert "[act] start: pve: POST /api2/json/nodes/{node}/qemu/101/status/start" in answer.json()["plan"]
    as_user(app, OPD_ADMIN)
    assert client.post("/api/v1/remediation/dry-run", json=body).status_code == 404
    assert client.get("/remediation").status_code == 404


def test_request_is_idempotent_and_a_second_one_gets_409_naming_the_first(client: TestClient) -> None:
    body = {"playbook": "restart_vm", "target": "pve/102", "params": {}}
    first = client.post("/api/v1/remediation/runs", json=body, headers={"Idempotency-Key": "a1"})
    assert first.status_code == 201 and first.json()["state"] == "awaiting_approval"
    again = client.post("/api/v1/remediation/runs", json=body, headers={"Idempotency-Key": "a1"})
    assert again.json()["id"] == first.json()["id"]
    clash = client.post("/api/v1/remediation/runs", json=body, headers={"Idempotency-Key": "a2"})
    assert clash.status_code == 409 and clash.json()["detail"]["run_id"] == first.json()["id"]
    assert client.post("/api/v1/remediation/runs", json=body).status_code == 422  # the key is required


def test_a_run_for_a_complaint_of_another_opd_or_about_another_vm_is_refused_before_it_is_queued(
        client: TestClient, app: FastAPI, tmp_path: Path) -> None:
    from pdn_ops.accounts import service as accounts
    from pdn_ops.complaints import service as complaints
    from pdn_ops.complaints.service import ComplaintConfig, Draft
    from pdn_ops.core.db.tables import VmRow
    from pdn_ops.core.inventory_sync import sync_inventory
    from tests.complaints.world import jpeg, principal_named

    with transaction(app.state.runtime.sessions) as session:
        sync_inventory(session, app.state.runtime.inventory)
        accounts.ensure_demo_accounts(session)
        vm103 = session.scalar(select(VmRow.id).where(VmRow.vmid == 103))
        disdik = complaints.submit(session, principal_named(session, "admin-disdik"),
                                   Draft(asset=f"vm:{vm103}", category="site_down",
                                         description="Aplikasi kepegawaian tidak bisa dibuka"),
                                   [("layar.jpg", jpeg())], config=ComplaintConfig(data_dir=tmp_path)).id
    for key, target, complaint_id, status, says in [
            ("scope-1", "pve/101", disdik, 422, "belongs to another OPD"),  # Dinas Kesehatan's VM
            ("scope-2", "pve/102", disdik, 422, "another OPD"),
            ("scope-3", "pve/103", 424242, 404, "no complaint #424242")]:
        body = {"playbook": "restart_vm", "target": target, "params": {}, "complaint_id": complaint_id}
        for path in ("/api/v1/remediation/dry-run", "/api/v1/remediation/runs"):
            answer = client.post(path, json=body, headers={"Idempotency-Key": key})
            assert (answer.status_code, says in answer.text) == (status, True), (path, answer.text)
        with app.state.runtime.sessions() as session:
            assert session.scalar(select(RemediationRunRow).where(RemediationRunRow.idempotency_key == key)) is None
    linked = client.post("/api/v1/remediation/runs", headers={"Idempotency-Key": "scope-ok"},
                         json={"playbook": "restart_vm", "target": "pve/103", "params": {}, "complaint_id": disdik})
    assert linked.status_code == 201 and linked.json()["complaint_id"] == disdik
    again = client.post("/api/v1/remediation/runs", headers={"Idempotency-Key": "scope-ok"},
                        json={"playbook": "restart_vm", "target": "pve/103", "params": {"shutdown_timeout": 90},
                              "complaint_id": disdik})
    assert again.status_code == 409 and "differs in parameters" in again.json()["detail"]


@pytest.mark.parametrize("params", [{"unit": "nginx.service; reboot"}, {"unit": "$(reboot)"}, {"unit": "sshd.service"},
                                    {"unit": "-x"}, {"unit": "nginx.service\n"}])
def test_bad_unit_is_refused_and_nothing_is_queued(client: TestClient, app: FastAPI, params: dict[str, str]) -> None:
    answer = client.post("/api/v1/remediation/runs", json={"playbook": "restart_service", "target": "pve/101",
                                                           "params": params}, headers={"Idempotency-Key": "bad"})
    assert answer.status_code == 422
    with app.state.runtime.sessions() as session:
        assert session.scalar(select(RemediationRunRow).where(RemediationRunRow.idempotency_key == "bad")) is None


def test_approval_by_an_engineer_through_the_pages(client: TestClient, app: FastAPI) -> None:
    page = client.get("/remediation")
    assert page.status_code == 200 and "Mulai ulang VM" in page.text
    plan = client.post("/remediation/dry-run", data={"playbook": "restart_vm", "target": "pve/103"})
    assert plan.status_code == 200 and "status/start" in plan.text
    key = plan.text.split('name="key" value="')[1].split('"')[0]
    created = client.post("/remediation/runs", data={"playbook": "restart_vm", "target": "pve/103", "key": key},
                          follow_redirects=False)
    assert created.status_code == 303
    run_url = created.headers["location"]
    # Four eyes: the requester is told someone else approves; a second engineer does.
    assert "Setujui pemulihan ini" not in client.get(run_url).text
    as_user(app, SECOND)
    assert "Setujui pemulihan ini" in client.get(run_url).text
    assert client.post(f"{run_url}/approve", follow_redirects=False).status_code == 303
    as_user(app, ENGINEER)
    assert "disetujui" in client.get(run_url).text
    refused = client.post("/remediation/dry-run", data={"playbook": "resize_vm", "target": "pve/103",
                                                        "param_name": "cores", "param_value": "-4"})
    assert refused.status_code == 422 and "Ditolak" in refused.text


def test_metrics_show_runs_by_playbook_and_outcome(client: TestClient, app: FastAPI, tmp_path: Path) -> None:
    client.post("/api/v1/remediation/runs", json={"playbook": "restart_vm", "target": "pve/101", "params": {}},
                headers={"Idempotency-Key": "m1"})
    with transaction(app.state.runtime.sessions) as session:
        run = session.scalar(select(RemediationRunRow).where(RemediationRunRow.idempotency_key == "m1"))
        assert run is not None
        run.state = run.outcome = "succeeded"
        run.started_at = run.created_at
        run.finished_at = run.created_at
    body = client.get("/metrics").text
    assert 'pdn_remediation_runs_total{outcome="succeeded",playbook="restart_vm"} 1.0' in body
    assert 'pdn_remediation_run_duration_seconds_count{playbook="restart_vm"} 1.0' in body
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(promtool).exists():
        missing("promtool", "install the Debian package prometheus")
    lines = [line for line in body.splitlines() if "remediation" in line]
    check = subprocess.run([promtool, "check", "metrics"], input="\n".join(lines) + "\n", text=True,
                           capture_output=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_route_enqueues_and_the_app_worker_executes(app: FastAPI, fakepve_session: Any) -> None:
    """The demo wiring: the start hook runs a worker thread; the route only enqueues, the thread executes."""
    import time

    from pdn_ops.app.hooks import remediation_worker as start_hook

    ctx = app.state.runtime
    fakepve_session.vm(101).status = "stopped"
    worker_app = create_app(build_runtime(ctx.settings, engine=ctx.engine), start_hooks=[
        lambda c: setattr(c, "inventory", ctx.inventory), start_hook])
    worker_app.state.runtime.accounts.authenticate = lambda request: ENGINEER
    with TestClient(worker_app, headers={"Authorization": "Bearer test"}) as c:
        created = c.post("/api/v1/remediation/runs", json={"playbook": "restart_vm", "target": "pve/101"},
                         headers={"Idempotency-Key": "thread-1"})
        assert created.status_code == 201
        run_id = created.json()["id"]
        worker_app.state.runtime.accounts.authenticate = lambda request: SECOND
        assert c.post(f"/api/v1/remediation/runs/{run_id}/approve").json()["state"] == "approved"
        deadline = time.monotonic() + 60
        while (state := c.get(f"/api/v1/remediation/runs/{run_id}").json()["state"]) in ("approved", "running"):
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
    assert state == "succeeded"
    assert fakepve_session.vm(101).status == "running"


def test_snapshot_chooser_reads_proxmox_off_the_request_and_feeds_the_restore_form(
        client: TestClient, app: FastAPI, fakepve_session: Any, fakepve_cafile: str) -> None:
    import time

    from remediation.executors.proxmox import ApiCall
    from tests.remediation.pve_support import executor

    pve = fakepve_session
    api = executor(pve, fakepve_cafile)
    try:
        for name in ("monday", "tuesday"):
            made = api.start(ApiCall("POST", f"/nodes/{pve.vm(102).node}/qemu/102/snapshot", {"snapname": name}),
                             lambda _upid: None)
            assert made.ok, made.detail
    finally:
        api.close()
    pve.vm(102).snapshots["monday"]["snaptime"] -= 86400
    first = client.get("/api/v1/remediation/snapshots/pve/102")
    assert first.status_code == 200 and first.json()["state"] == "reading", "the request does not wait for Proxmox"
    assert first.json()["snapshots"] == []
    deadline = time.monotonic() + 20
    while (body := client.get("/api/v1/remediation/snapshots/pve/102").json())["state"] != "fresh":
        assert time.monotonic() < deadline and body["state"] != "failed", body
        time.sleep(0.05)
    assert [s["name"] for s in body["snapshots"]] == ["tuesday", "monday"]
    assert body["suggested"] == "tuesday" and body["problem_at"] is None, "no problem on record: the newest"
    page = client.get("/remediation/snapshots/pve/102")
    assert page.status_code == 200 and 'data-suggested="tuesday"' in page.text
    assert 'name="param_name" value="snapshot"' in page.text and 'http-equiv="refresh"' not in page.text
    plan = client.post("/remediation/dry-run", data={"playbook": "restore_snapshot", "target": "pve/102",
                                                     "param_name": "snapshot", "param_value": "tuesday"})
    assert plan.status_code == 200 and "snapshot/tuesday/rollback" in plan.text
    reading = client.get("/remediation/snapshots/pve/103")
    assert reading.status_code == 200 and 'http-equiv="refresh"' in reading.text, "reloads itself while reading"
    # Another VM's snapshot is refused at the dry run and at the request, not only later by the worker.
    for path, headers in (("/api/v1/remediation/dry-run", {}),
                          ("/api/v1/remediation/runs", {"Idempotency-Key": "other-vms-snapshot"})):
        other = client.post(path, json={"playbook": "restore_snapshot", "target": "pve/103",
                                        "params": {"snapshot": "tuesday"}}, headers=headers)
        assert other.status_code in (400, 422) and "no snapshot named" in other.text, (path, other.text)
    other_page = client.post("/remediation/dry-run", data={"playbook": "restore_snapshot", "target": "pve/103",
                                                           "param_name": "snapshot", "param_value": "tuesday"})
    assert other_page.status_code in (400, 422) and "snapshot/tuesday/rollback" not in other_page.text
    assert client.get("/api/v1/remediation/snapshots/pve/999").status_code == 404
    assert client.get("/api/v1/remediation/snapshots/pve/102?complaint_id=0").status_code == 422
    assert client.get("/api/v1/remediation/snapshots/p%20ve/102").status_code == 422
    assert client.get("/remediation/snapshots/pve/102?complaint_id=424242").status_code == 404
    as_user(app, OPD_ADMIN)
    assert client.get("/api/v1/remediation/snapshots/pve/102").status_code == 404
    assert client.get("/remediation/snapshots/pve/102").status_code == 404
