"""The one wrapper every scheduled job runs through: its own sessions, a JobRun row, status for /metrics.

A run is written as ``running`` before the job starts, so a run whose process died stays visible as such.
``collect`` runs outside any transaction (network I/O must not hold database locks); ``record`` runs in one
transaction. An exception is recorded (run row, job status, log with traceback) and re-raised so APScheduler
reports it too: nothing is swallowed.

SQLite allows one writer at a time, and a deferred transaction that read before another connection committed
cannot upgrade to a writer (SQLITE_BUSY_SNAPSHOT, which no busy timeout retries). So on SQLite the jobs' write
transactions take turns on a lock (collection, the slow part, still runs in parallel) and each one begins with a
write, which the busy timeout does retry.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.db.engine import transaction
from pdn_ops.db.health_tables import JobRunRow, JobStatusRow
from pdn_ops.db.tables import utcnow
from pdn_ops.scheduler.jobs import JobSpec

log = logging.getLogger(__name__)
ERROR_MAX = 1000


class JobWrapper:
    def __init__(self, sessions: sessionmaker[Session], *, after_run: Callable[[], None] | None = None) -> None:
        self._sessions = sessions
        self._after_run = after_run
        bind = sessions.kw.get("bind")
        self._serialise = getattr(getattr(bind, "dialect", None), "name", "") == "sqlite"
        self._write_lock = threading.Lock()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Session]:
        with self._write_lock if self._serialise else contextlib.nullcontext(), transaction(self._sessions) as s:
            yield s

    def run(self, spec: JobSpec) -> None:
        started = utcnow()
        t0 = time.perf_counter()
        with self._writing() as session:
            run = JobRunRow(job=spec.name, started_at=started, outcome="running", error="")
            session.add(run)
            session.flush()
            run_id = run.id
            status = self._status(session, spec)
            status.last_started_at = started
        error: BaseException | None = None
        try:
            result = spec.collect()
            with self._writing() as session:
                session.execute(update(JobStatusRow).where(JobStatusRow.job == spec.name)
                                .values(last_started_at=started))
                spec.record(session, result)
        except Exception as exc:
            error = exc
        duration = time.perf_counter() - t0
        finished = utcnow()
        message = "" if error is None else f"{type(error).__name__}: {error}"[:ERROR_MAX]
        with self._writing() as session:
            session.execute(update(JobRunRow).where(JobRunRow.id == run_id).values(
                finished_at=finished, duration_s=duration, outcome="failed" if error else "succeeded",
                error=message))
            status = self._status(session, spec)
            status.runs_total += 1
            status.last_finished_at = finished
            status.last_duration_s = duration
            status.last_ok = error is None
            status.last_error = message
            if error is None:
                status.last_success_at = finished
            else:
                status.errors_total += 1
        if self._after_run is not None:
            try:
                self._after_run()
            except Exception:
                # A stale metrics snapshot must not turn a successful run into a failed one; it is logged.
                log.exception("after-run hook of job %s failed", spec.name)
        if error is not None:
            log.error("job %s failed after %.3f s: %s", spec.name, duration, message, exc_info=error)
            raise error

    @staticmethod
    def _status(session: Session, spec: JobSpec) -> JobStatusRow:
        status = session.get(JobStatusRow, spec.name)
        if status is None:
            status = JobStatusRow(job=spec.name, kind=spec.kind, runs_total=0, errors_total=0, last_error="")
            session.add(status)
        return status
