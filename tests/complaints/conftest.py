"""Complaint-area fixtures: one migrated database and app per engine, shared by a module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text

from pdn_ops.accounts import service as accounts
from tests.complaints.world import World, build_world


@pytest.fixture(scope="session", autouse=True)
def _cheap_argon2() -> Iterator[None]:
    """Real argon2, with the low-memory cost: production parameters take ~0.5 s a hash on this machine."""
    with pytest.MonkeyPatch.context() as patch:
        cheap = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
        patch.setattr(accounts, "_hasher", cheap)
        patch.setattr(accounts, "_DUMMY_HASH", cheap.hash("not-a-real-password"))
        accounts._demo_hash.cache_clear()
        yield
        accounts._demo_hash.cache_clear()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("complaints")
    if request.param == "sqlite":
        world = build_world(f"sqlite:///{data_dir / 'app.sqlite3'}", data_dir)
        yield world
        world.ctx.engine.dispose()
        return
    server_url: str = request.getfixturevalue("pg_server_url")
    name = f"pdnops_c_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        world = build_world(server_url.rsplit("/", 1)[0] + f"/{name}", data_dir)
        yield world
        world.ctx.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
