"""Monthly report, CSV safe against formula injection, the metrics collector, the migration up and down."""

from __future__ import annotations

import csv
import io
import subprocess
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import inspect

from pdn_ops.complaints import reports as complaint_reports
from pdn_ops.complaints import service as complaints
from pdn_ops.complaints import stats as complaint_stats
from pdn_ops.complaints.metrics import ComplaintCollector
from pdn_ops.complaints.model import Action
from pdn_ops.complaints.service import ComplaintConfig, Draft
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine
from pdn_ops.runs.timeline_facts import linked_runs
from tests.complaints.test_complaint_service import Named
from tests.complaints.world import jpeg
from tests.support import require_binary

WIB = ZoneInfo("Asia/Jakarta")
T0 = datetime(2026, 10, 5, 2, 0, tzinfo=UTC)


def test_csv_cells_cannot_become_formulas() -> None:
    for evil in ("=HYPERLINK(\"http://x\")", "+1+1", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert complaint_reports.safe_cell(evil) == "'" + evil
    assert complaint_reports.safe_cell("Portal mati") == "Portal mati"
    assert complaint_reports.safe_cell(None) == ""


def test_percentile_and_month_bounds() -> None:
    assert complaint_reports.percentile([], 0.9) is None
    assert complaint_reports.percentile([float(i) for i in range(1, 11)], 0.9) == 9.0
    start, end = complaint_reports.month_bounds("2026-12", WIB)
    assert (start.month, end.year, end.month) == (12, 2027, 1) and start.utcoffset() == timedelta(hours=7)


def test_monthly_report_counts_times_and_sla_compliance(session, tmp_path) -> None:
    named = Named(session)
    config = ComplaintConfig(data_dir=tmp_path)
    admin, eng = named.users["admin-dinkes"], named.users["engineer"]
    hours = []
    for i, (category, fix_after) in enumerate((("site_down", 2), ("slow", 30), ("disk_full", 200))):
        draft = Draft(asset=f"vm:{named.vm['web-dinkes']}", category=category,
                      description=f"=cmd|' /C calc'!A0 masalah {i}")
        row = complaints.submit(session, admin, draft, [("a.jpg", jpeg())], config=config,
                                now=T0 + timedelta(hours=i))
        complaints.act(session, eng, row.id, Action.VERIFY, config=config, now=T0 + timedelta(hours=i + 1))
        complaints.act(session, eng, row.id, Action.FIX, config=config,
                       now=T0 + timedelta(hours=i + fix_after))
        hours.append(fix_after)
    report = complaint_reports.monthly(session, eng, month="2026-10", tz=WIB)
    assert report.received == 3 and report.resolved == 3 and report.within_sla == 2
    assert report.by_category == {"site_down": 1, "slow": 1, "disk_full": 1}
    assert report.median_hours == 30 and report.p90_hours == 200
    assert report.compliance == 2 / 3
    scoped = complaint_reports.monthly(session, named.users["admin-disdik"], month="2026-10", tz=WIB,
                                       opd_id=named.users["admin-dinkes"].opd_id)
    assert scoped.received == 0, "an OPD user's report covers only their OPD"
    rows = list(csv.reader(io.StringIO(complaint_reports.to_csv(report, WIB))))
    assert rows[0] == complaint_reports.CSV_HEADER
    assert all(r[-1].startswith("'=cmd") for r in rows[1:])


def test_the_sla_column_tells_running_from_breached_before_resolution(session, tmp_path) -> None:
    named = Named(session)
    config = ComplaintConfig(data_dir=tmp_path)
    admin, eng = named.users["admin-dinkes"], named.users["engineer"]
    draft = Draft(asset=f"vm:{named.vm['web-dinkes']}", category="slow", description="Lambat sejak pagi ini")
    late = complaints.submit(session, admin, draft, [("a.jpg", jpeg())], config=config, now=T0)
    fresh = complaints.submit(session, admin, draft, [("a.jpg", jpeg())], config=config,
                              now=T0 + timedelta(days=6))
    fixed = complaints.submit(session, admin, draft, [("a.jpg", jpeg())], config=config, now=T0)
    complaints.act(session, eng, fixed.id, Action.VERIFY, config=config, now=T0 + timedelta(hours=1))
    complaints.act(session, eng, fixed.id, Action.FIX, config=config, now=T0 + timedelta(days=1))
    now = T0 + timedelta(days=8)
    report = complaint_reports.monthly(session, eng, month="2026-10", tz=WIB, policy=config.policy, now=now)
    # Still open but past its 7 days: breached now, not "met" because the clock has not stopped yet.
    assert report.sla == {late.id: "breached", fresh.id: "running", fixed.id: "met"}
    rows = {int(r[0]): r for r in csv.reader(io.StringIO(complaint_reports.to_csv(report, WIB))) if r[0].isdigit()}
    assert rows[late.id][complaint_reports.CSV_HEADER.index("sla")] == "breached"
    single = complaint_reports.resolution(session, eng, late.id, runs=linked_runs, policy=config.policy, now=now)
    assert single.sla == "breached"


def test_metrics_collector_reports_open_complaints_and_sla_levels(session, tmp_path) -> None:
    named = Named(session)
    config = ComplaintConfig(data_dir=tmp_path)
    admin = named.users["admin-dinkes"]
    draft = Draft(asset=f"vm:{named.vm['web-dinkes']}", category="slow", description="Lambat sejak pagi ini")
    complaints.submit(session, admin, draft, [("a.jpg", jpeg())], config=config, now=T0)
    complaints.submit(session, admin, draft, [("a.jpg", jpeg())], config=config, now=T0 + timedelta(days=5))
    session.flush()
    registry = CollectorRegistry()
    # This test's transaction is never committed, so the collector reads through the test's session.
    registry.register(ComplaintCollector(lambda: complaint_stats.snapshot(session, T0 + timedelta(days=6))))
    text = generate_latest(registry).decode()
    assert 'pdn_complaints_open{opd="dinkes",state="submitted"} 2.0' in text
    assert 'pdn_complaints_sla{level="at_risk_80",opd="dinkes"} 1.0' in text
    assert 'level="at_risk_50"' not in text and "ok" not in text.split("pdn_complaints_sla")[-1]
    promtool = require_binary("promtool", "/usr/bin/promtool")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                             timeout=30, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_migration_0002_goes_up_and_down(fresh_db_url) -> None:
    migrate.upgrade(fresh_db_url)
    engine = make_engine(fresh_db_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"users", "web_sessions", "api_tokens", "complaints", "complaint_versions", "complaint_attachments",
                "notifications", "dispositions", "login_attempts", "complaint_notes"} <= tables
        indexes = {i["name"] for i in inspect(engine).get_indexes("complaints")}
        assert {"ix_complaints_opd_id_id", "ix_complaints_sla_due_at_id"} <= indexes
        migrate.downgrade(fresh_db_url, "0001")
        assert "complaints" not in set(inspect(engine).get_table_names())
        assert "opds" in set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_metrics_reader_opens_its_own_session(db_engine) -> None:
    from pdn_ops.core.db.engine import make_sessionmaker

    read = complaint_stats.reader(make_sessionmaker(db_engine))
    assert isinstance(read(), complaint_stats.ComplaintSnapshot)
