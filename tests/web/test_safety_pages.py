"""The safety net on the pages: the backups view per OPD and VM, the storage and node view, a VM's backups on its
page and on a complaint about it, backup coverage in the monthly report, and the menu entries that reach them."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from pdn_ops.accounts.auth import Authenticator
from pdn_ops.accounts.model import Principal, Role
from pdn_ops.core.db.tables import VmRow
from tests.health_world import record_safety_net, record_world, world_app

ENGINEER = Principal(user_id=1, username="eng", role=Role.ENGINEER, opd_id=None)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    with world_app(tmp_path_factory.mktemp("safety"), record_world, record_safety_net) as app:
        yield app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    app.state.runtime.accounts.authenticate = lambda request: ENGINEER
    with TestClient(app) as c:
        yield c
    app.state.runtime.accounts.authenticate = Authenticator(app.state.runtime.sessions)


def vm_ids(app: FastAPI) -> dict[int, int]:
    with app.state.runtime.sessions() as session:
        return {v.vmid: v.id for v in session.scalars(select(VmRow))}


def test_the_backups_view_shows_each_vms_state_age_and_lock_and_each_opds_coverage(client: TestClient) -> None:
    page = client.get("/fleet/backups", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    states = dict(re.findall(r'data-vm="pdn1/(\d+)" data-backup="(\w+)"', page.text))
    assert states == {"101": "ok", "102": "unprotected", "103": "failed"}
    assert "Newest good backup" in page.text and "VM locked with no task holding the lock" in page.text
    coverage = re.findall(r'data-coverage="(\d+/\d+)"', page.text)
    assert sorted(coverage) == ["0/1", "0/1", "1/1"], "one VM per OPD in the example: dinkes covered"
    assert 'aria-current="page"' in page.text.split('href="/fleet/backups"', 1)[1][:40]


def test_the_storage_view_shows_use_forecast_thin_pool_and_the_vms_of_a_pressed_node(client: TestClient) -> None:
    page = client.get("/fleet/storage", headers={"Accept-Language": "id"})
    assert page.status_code == 200
    levels = dict(re.findall(r'data-storage="pdn1/pve1/([\w-]+)" data-level="(\w+)"', page.text))
    assert levels == {"local-lvm": "full", "nas": "ok"}
    row = page.text.split('data-storage="pdn1/pve1/local-lvm"', 1)[1].split("</tr>", 1)[0]
    assert re.search(r"95\s?%", row) and re.search(r"40\s?%", row), "use, and the thin pool's metadata"
    pressed = re.search(r'data-node="pdn1/pve1" data-pressed="([\w,]*)"', page.text)
    assert pressed and pressed.group(1) == "memory,cpu"
    assert "web-dinkes" in page.text.split('data-node="pdn1/pve1"', 1)[1], "the VMs living on the pressed node"
    assert "Penyimpanan dan node" in page.text


def test_a_vm_page_shows_its_backups_and_the_failed_tasks_log(app: FastAPI, client: TestClient) -> None:
    page = client.get(f"/fleet/vm/{vm_ids(app)[103]}", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert "Last backup failed" in page.text and "interrupted by signal" in page.text
    assert "Backup age threshold: 26 hours" in page.text and "daily" in page.text
    assert "Locked: backup · no running task has held this lock for" in page.text
    ok = client.get(f"/fleet/vm/{vm_ids(app)[101]}", headers={"Accept-Language": "en"}).text
    assert "Recent backup" in ok and "(3" in ok.split("Newest good backup:", 1)[1][:60]


def test_the_backups_api_gives_the_same_states_and_coverage(client: TestClient) -> None:
    data = client.get("/api/v1/fleet/backups").json()
    vms = {vm["vmid"]: vm for opd in data["opds"] for vm in opd["vms"]}
    assert {vmid: vm["backup"]["state"] for vmid, vm in vms.items()} == {101: "ok", 102: "unprotected",
                                                                        103: "failed"}
    assert vms[101]["backup"]["max_age_h"] == 26.0 and 2.9 < vms[101]["backup"]["age_h"] < 3.1
    assert vms[103]["lock"] == "backup" and vms[103]["lock_stale"] is True
    assert sorted((o["covered"], o["watched"]) for o in data["opds"]) == [(0, 1), (0, 1), (1, 1)]
