"""What nothing reads any more is deleted: finished job runs past two weeks, failed logins and ended sessions past
a day. What is still in use stays (a running job, a live session, a recent failed login)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from pdn_ops.accounts.model import Role
from pdn_ops.accounts.service import create_user, purge_stale
from pdn_ops.accounts.tables import LoginAttemptRow, WebSessionRow
from pdn_ops.core.db.tables import JobRunRow
from pdn_ops.core.jobs import purge_job_runs

# One clock for the whole test: every row and every purge uses NOW, never the process's clock.
NOW = datetime(2031, 3, 4, 5, 6, tzinfo=UTC)


def test_old_finished_job_runs_go_and_running_or_recent_ones_stay(session: Session) -> None:
    old, recent = NOW - timedelta(days=15), NOW - timedelta(days=13)
    session.add_all([
        JobRunRow(job="retention-probe", started_at=old, finished_at=old, outcome="succeeded"),
        JobRunRow(job="retention-probe", started_at=old, finished_at=None, outcome="running"),
        JobRunRow(job="retention-probe", started_at=recent, finished_at=recent, outcome="failed"),
    ])
    session.flush()
    assert purge_job_runs(session, now=NOW) >= 1  # the shared database may hold older runs of other tests
    left = session.execute(select(JobRunRow.outcome).where(JobRunRow.job == "retention-probe")).scalars().all()
    assert sorted(left) == ["failed", "running"]


def test_failed_logins_and_ended_sessions_go_after_a_day(session: Session) -> None:
    user = create_user(session, username="retention-probe", password="a-long-enough-password-1",
                       role=Role.ENGINEER)
    session.flush()
    day_ago, hour_ago = NOW - timedelta(days=1, minutes=1), NOW - timedelta(hours=1)
    session.add_all([
        LoginAttemptRow(username="retention-probe", client="127.0.0.9", at=day_ago),
        LoginAttemptRow(username="retention-probe", client="127.0.0.9", at=hour_ago),
        WebSessionRow(key_hash="a" * 64, user_id=user.id, csrf_token="x", created_at=day_ago, expires_at=day_ago),
        WebSessionRow(key_hash="b" * 64, user_id=user.id, csrf_token="x", created_at=day_ago,
                      expires_at=NOW + timedelta(hours=1), revoked_at=day_ago),
        WebSessionRow(key_hash="c" * 64, user_id=user.id, csrf_token="x", created_at=hour_ago,
                      expires_at=hour_ago),  # expired an hour ago: kept for a day
        WebSessionRow(key_hash="d" * 64, user_id=user.id, csrf_token="x", created_at=hour_ago,
                      expires_at=NOW + timedelta(hours=11)),  # live
    ])
    session.flush()
    purged = purge_stale(session, now=NOW)
    assert purged.login_attempts >= 1 and purged.sessions >= 2
    keys = session.execute(select(WebSessionRow.key_hash).where(WebSessionRow.user_id == user.id)).scalars().all()
    assert sorted(k[0] for k in keys) == ["c", "d"]
    attempts = session.execute(select(LoginAttemptRow.at).where(LoginAttemptRow.username == "retention-probe"))
    assert len(attempts.all()) == 1
