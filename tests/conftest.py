"""Shared fixtures: databases on both engines, a named world of OPDs, users and targets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine
from tests.support import missing, port_open, throwaway_database

pytest_plugins = ["tests.lab_fixtures", "tests.browser_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("PDN_OPS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A throwaway database on the real PostgreSQL server, dropped at the end of the session."""
    if not port_open("127.0.0.1", 5432):
        missing("PostgreSQL", "nothing listens on 127.0.0.1:5432")
    with throwaway_database(PG_ADMIN_URL, "pdnops_test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fresh_db_url(engine_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database (no tables) on the parametrised engine."""
    if engine_name == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    server_url: str = request.getfixturevalue("pg_server_url")
    with throwaway_database(server_url, "pdnops_t") as url:
        yield url


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'migrated.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def _migrated_pg(pg_server_url: str) -> Iterator[Engine]:
    migrate.upgrade(pg_server_url)
    engine = make_engine(pg_server_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db_engine(engine_name: str, request: pytest.FixtureRequest) -> Engine:
    """A migrated engine on the parametrised database (shared by the session; use ``session`` to isolate)."""
    fixture = "_migrated_sqlite" if engine_name == "sqlite" else "_migrated_pg"
    engine: Engine = request.getfixturevalue(fixture)
    return engine


@pytest.fixture
def session(db_engine: Engine) -> Iterator[Session]:
    """One transaction per test, rolled back at the end, on SQLite and on PostgreSQL."""
    connection = db_engine.connect()
    outer = connection.begin()
    db = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield db
    finally:
        db.close()
        outer.rollback()
        connection.close()
