"""A named world for complaint tests: the example inventory, two OPDs with heads and admins, staff, photos."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from pdn_ops.accounts import service as accounts
from pdn_ops.accounts.model import Principal
from pdn_ops.accounts.tables import UserRow
from pdn_ops.app.factory import create_app
from pdn_ops.app.hooks import sync_inventory_at_start
from pdn_ops.app.runtime import Runtime, build_runtime
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import OpdRow, SiteRow, VmRow
from pdn_ops.core.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = accounts.DEMO_PASSWORD
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def jpeg(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30), exif: bytes | None = None
         ) -> bytes:
    out = io.BytesIO()
    image = Image.new("RGB", size, color)
    if exif is not None:
        image.save(out, "JPEG", exif=exif)
    else:
        image.save(out, "JPEG")
    return out.getvalue()


def png(size: tuple[int, int] = (32, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, (0, 100, 200, 255)).save(out, "PNG")
    return out.getvalue()


@dataclass
class World:
    app: FastAPI
    data_dir: Path
    opd: dict[str, int] = field(default_factory=dict)
    vm: dict[str, int] = field(default_factory=dict)
    site: dict[str, int] = field(default_factory=dict)

    @property
    def ctx(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    def client(self, username: str | None = None) -> TestClient:
        client = TestClient(self.app, follow_redirects=False)
        if username is not None:
            login(client, username)
        return client


def principal_named(session, username: str) -> Principal:
    user = session.scalar(select(UserRow).where(UserRow.username == username))
    assert user is not None, username
    return accounts.principal_of(user)


def csrf_of(client: TestClient, path: str = "/account") -> str:
    page = client.get(path)
    found = CSRF.search(page.text)
    assert found, f"no CSRF token on {path}: {page.status_code}"
    return found.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD) -> None:
    client.headers.pop("X-CSRF-Token", None)
    token = csrf_of(client, "/login")
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token,
                                           "next": "/complaints"})
    assert response.status_code == 303, response.text
    client.headers["X-CSRF-Token"] = csrf_of(client, "/account")


def build_world(url: str, data_dir: Path) -> World:
    migrate.upgrade(url)
    settings = load_settings(demo=True, database_url=url, inventory=ROOT / "inventory.example.yaml", data_dir=data_dir)
    ctx = build_runtime(settings)
    app = create_app(ctx)
    sync_inventory_at_start(ctx)
    world = World(app=app, data_dir=data_dir)
    with transaction(ctx.sessions) as session:
        accounts.ensure_demo_accounts(session)
        world.opd = {o.code: o.id for o in session.scalars(select(OpdRow))}
        world.vm = {v.name: v.id for v in session.scalars(select(VmRow))}
        world.site = {s.name or s.url: s.id for s in session.scalars(select(SiteRow))}
    return world


def file_complaint(client: TestClient, asset: str, description: str = "Situs tidak bisa dibuka sejak pagi",
                   photos: list[tuple[str, bytes, str]] | None = None, category: str = "site_down"):
    files = [("photo", p) for p in (photos if photos is not None else [("layar.jpg", jpeg(), "image/jpeg")])]
    return client.post("/complaints", data={"asset": asset, "category": category, "description": description},
                       files=files)
