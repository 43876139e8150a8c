"""The web skeleton: health and readiness, refusal on an unmigrated database, both languages."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pdn_ops.app.factory import create_app
from pdn_ops.app.hooks import sync_inventory_at_start
from pdn_ops.app.runtime import build_runtime
from pdn_ops.core.db import migrate
from pdn_ops.core.errors import DatabaseNotReady
from pdn_ops.core.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app_client(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'app.sqlite3'}"
    migrate.upgrade(url)
    settings = load_settings(demo=True, database_url=url, inventory=ROOT / "inventory.example.yaml")
    app = create_app(build_runtime(settings), start_hooks=[sync_inventory_at_start])
    with TestClient(app) as client:
        yield client, app


def test_service_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    settings = load_settings(demo=True, database_url=f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with pytest.raises(DatabaseNotReady, match="run: pdn-ops db upgrade"):
        create_app(build_runtime(settings))


def test_healthz_and_readyz(app_client) -> None:
    client, app = app_client
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    migrate.downgrade(str(app.state.runtime.engine.url), "base")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "pdn-ops db upgrade" in response.json()["reason"]


def test_home_page_is_indonesian_first_with_english_on_request(app_client) -> None:
    client, _ = app_client
    page = client.get("/")
    assert page.status_code == 200
    assert '<html lang="id">' in page.text and "Selamat datang" in page.text
    assert "3 OPD, 3 VM, 2 situs" in page.text, "inventory was synced at start"
    english = client.get("/?lang=en")
    assert '<html lang="en">' in english.text and "Welcome" in english.text
    assert client.get("/").text.count("Welcome") == 1, "the choice is remembered in a cookie"
    client.cookies.clear()
    negotiated = client.get("/", headers={"Accept-Language": "en-US,en;q=0.9,id;q=0.5"})
    assert '<html lang="en">' in negotiated.text


def test_security_headers_and_error_pages_show_no_internals(app_client) -> None:
    client, _ = app_client
    missing = client.get("/no/such/page")
    assert missing.status_code == 404
    assert "Halaman tidak ditemukan" in missing.text
    assert missing.headers["x-content-type-options"] == "nosniff"
    assert client.get("/api/v1/nothing").json() == {"detail": "Not Found"}


def test_openapi_is_served(app_client) -> None:
    client, _ = app_client
    assert client.get("/api/v1/openapi.json").json()["info"]["title"] == "pdn-ops"
