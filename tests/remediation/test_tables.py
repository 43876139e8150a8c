"""Remediation tables on SQLite and PostgreSQL: migration 0005 both ways, one active run per target."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine
from pdn_ops.runs.tables import RemediationRunRow


def make_run(target: str, key: str, state: str = "pending") -> RemediationRunRow:
    return RemediationRunRow(playbook="restart_vm", target=target, opd_code="dinkes", risk="medium",
                             requested_by="eng1", idempotency_key=key, state=state)


def test_migration_0005_upgrades_and_downgrades(fresh_db_url: str) -> None:
    engine = make_engine(fresh_db_url)
    try:
        migrate.upgrade(fresh_db_url)
        names = set(inspect(engine).get_table_names())
        assert {"remediation_runs", "remediation_steps", "maintenance_windows", "remediation_auto_rules",
                "remediation_switches"} <= names
        indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("remediation_runs")}
        assert indexes["uq_remediation_runs_active_target"]["unique"]
        migrate.downgrade(fresh_db_url, "0004")
        assert "remediation_runs" not in set(inspect(engine).get_table_names())
        migrate.upgrade(fresh_db_url)
    finally:
        engine.dispose()


def test_database_refuses_a_second_active_run_on_a_target(session: Session) -> None:
    session.add(make_run("pve/101", "k1"))
    session.flush()
    with pytest.raises(IntegrityError), session.begin_nested():
        session.add(make_run("pve/101", "k2", state="awaiting_approval"))
        session.flush()


def test_finished_runs_do_not_hold_the_target(session: Session) -> None:
    session.add_all([make_run("pve/102", "a", "succeeded"), make_run("pve/102", "b", "failed"),
                     make_run("pve/102", "c", "running")])
    session.flush()
    with pytest.raises(IntegrityError), session.begin_nested():
        session.add(make_run("pve/103", "c"))  # the idempotency key is unique too
        session.flush()
