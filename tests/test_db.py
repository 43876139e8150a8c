"""Migrations and inventory sync on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine
from pdn_ops.core.db.tables import AuditRow, OpdRow, SiteRow, VmRow
from pdn_ops.core.errors import DatabaseNotReady
from pdn_ops.core.inventory import parse_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from tests.test_inventory import VALID


def test_migrations_upgrade_and_downgrade(fresh_db_url: str) -> None:
    engine = make_engine(fresh_db_url)
    try:
        with pytest.raises(DatabaseNotReady, match="run: pdn-ops db upgrade"):
            migrate.require_current(engine)
        migrate.upgrade(fresh_db_url)
        assert migrate.current_revision(engine) == migrate.head_revision()
        migrate.require_current(engine)
        tables = set(inspect(engine).get_table_names())
        assert {"opds", "vms", "sites", "audit_log", "alembic_version"} <= tables
        migrate.downgrade(fresh_db_url, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        assert migrate.current_revision(engine) is None
        migrate.upgrade(fresh_db_url)  # and back up again: downgrades really undo
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_sqlite_engine_uses_wal_and_foreign_keys(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    engine.dispose()


T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def test_inventory_sync_creates_then_is_idempotent(session: Session) -> None:
    inv = parse_inventory(VALID)
    first = sync_inventory(session, inv, now=T0)
    assert first.created == {"opds": 1, "vms": 1, "sites": 1}
    second = sync_inventory(session, inv, now=T1)
    assert not second.changed, second.summary()
    vm = session.scalars(select(VmRow)).one()
    assert (vm.key, vm.opd.code, vm.services, vm.updated_at) == ("pdn1/101", "dinkes", ["nginx.service"], T0)
    site = session.scalars(select(SiteRow)).one()
    assert site.vm is vm and site.settings["expect_status"] == 200


def test_inventory_sync_retires_instead_of_deleting(session: Session) -> None:
    sync_inventory(session, parse_inventory(VALID), now=T0)
    without_vm = VALID.split("vms:")[0] + "vms: []\nsites: []\n"
    report = sync_inventory(session, parse_inventory(without_vm), now=T1)
    assert report.retired == {"opds": 0, "vms": 1, "sites": 1}
    vm = session.scalars(select(VmRow)).one()
    assert vm.retired_at == T1, "the row and its history stay"
    assert session.scalars(select(SiteRow)).one().retired_at == T1
    # Coming back restores the same row, keeping its id.
    vm_id = vm.id
    again = sync_inventory(session, parse_inventory(VALID), now=T1)
    assert again.restored == {"opds": 0, "vms": 1, "sites": 1}
    assert session.scalars(select(VmRow)).one().id == vm_id
    assert session.scalars(select(VmRow)).one().retired_at is None
    actions = [a.detail for a in session.scalars(select(AuditRow).order_by(AuditRow.id))]
    assert actions[-1] == "restored 1 vms, 1 sites"


def test_inventory_sync_updates_changed_fields(session: Session) -> None:
    sync_inventory(session, parse_inventory(VALID), now=T0)
    renamed = VALID.replace("name: Dinas Kesehatan", "name: Dinas Kesehatan Kab.")
    report = sync_inventory(session, parse_inventory(renamed), now=T1)
    assert report.updated["opds"] == 1
    opd = session.scalars(select(OpdRow)).one()
    assert (opd.name, opd.updated_at, opd.created_at) == ("Dinas Kesehatan Kab.", T1, T0)
