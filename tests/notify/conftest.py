"""Fixtures for notification tests: migrated databases of their own (committed data, both engines), a named
world of OPD admins, the fake Graph API, and a runtime with a controllable clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.core.db.tables import OpdRow
from pdn_ops.notify.channels.whatsapp import MetaCloudProvider
from pdn_ops.notify.model import Channel
from pdn_ops.notify.policy import RetryPolicy
from pdn_ops.notify.tables import NotifyInboundRow, NotifyOutboxRow, NotifyPreferenceRow
from pdn_ops.notify.worker import NotifyRuntime
from tests.notify import intake_impl
from tests.notify.fake_graph import TOKEN, FakeGraph
from tests.support import throwaway_database

ADMIN_WA = "+6281200000001"
ADMIN_EMAIL = "admin@dinkes.example.go.id"
OTHER_WA = "+6281299999999"
ENGINEER_EMAIL = "engineer@diskominfo.example.go.id"
APP_SECRET = "test-app-secret-abcdef"
VERIFY_TOKEN = "test-verify-token"


@pytest.fixture(scope="session")
def _notify_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('notifydb') / 'notify.sqlite3'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def _notify_pg_url(pg_server_url: str) -> Iterator[str]:
    with throwaway_database(pg_server_url, "pdnops_notify") as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture
def notify_db_url(engine_name: str, request: pytest.FixtureRequest) -> str:
    fixture = "_notify_sqlite_url" if engine_name == "sqlite" else "_notify_pg_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def notify_engine(notify_db_url: str) -> Iterator[Engine]:
    engine = make_engine(notify_db_url)
    intake_impl.metadata.create_all(engine)
    _wipe(engine)
    with transaction(make_sessionmaker(engine)) as session:
        session.add(OpdRow(code="dinkes", name="Dinas Kesehatan", contacts=[
            {"name": "Admin Dinkes", "whatsapp": ADMIN_WA, "email": ADMIN_EMAIL}]))
        session.add(OpdRow(code="dinsos", name="Dinas Sosial", contacts=[
            {"name": "Admin Dinsos", "whatsapp": "+6281200000002", "language": "en"}]))
    try:
        yield engine
    finally:
        _wipe(engine)
        engine.dispose()


def _wipe(engine: Engine) -> None:
    with transaction(make_sessionmaker(engine)) as session:
        for table in (NotifyOutboxRow, NotifyInboundRow, NotifyPreferenceRow, OpdRow):
            session.execute(delete(table))
        session.execute(delete(intake_impl.drafts))


@pytest.fixture
def factory(notify_engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(notify_engine)


@pytest.fixture
def fake_graph() -> Iterator[FakeGraph]:
    server = FakeGraph().start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 30, 3, 0, tzinfo=UTC))  # 10:00 in Jakarta


@pytest.fixture
def meta(fake_graph: FakeGraph) -> MetaCloudProvider:
    from pydantic import SecretStr

    return MetaCloudProvider(fake_graph.url, "v21.0", "1234", SecretStr(TOKEN), timeout=2.0)


@pytest.fixture
def runtime(factory: sessionmaker[Session], meta: MetaCloudProvider, clock: Clock) -> NotifyRuntime:
    return NotifyRuntime(sessions=factory, senders={Channel.WHATSAPP: meta}, media=meta,
                         intake=intake_impl.ContactsIntake(), retry=RetryPolicy(5, 30, 600),
                         lease=timedelta(seconds=60), unknown_grace=timedelta(minutes=10), use_templates=False,
                         worker_id="test-worker", clock=clock)

