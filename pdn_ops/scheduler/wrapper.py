"""The one wrapper every scheduled job runs through: its own sessions, a JobRun row, status for /metrics.

A run is written as ``running`` before the job starts, so a run whose process died stays visible as such.
``collect`` runs outside any transaction (network I/O must not hold database locks); ``record`` runs in one
transaction. An exception is recorded (run row, job status, log with traceback) and re-raised so APScheduler
reports it too: nothing is swallowed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

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

    def run(self, spec: JobSpec) -> None:
        started = utcnow()
        t0 = time.perf_counter()
        with transaction(self._sessions) as session:
            run = JobRunRow(job=spec.name, started_at=started, outcome="running", error="")
            session.add(run)
            status = self._status(session, spec)
            status.last_started_at = started
            session.flush()
            run_id = run.id
        error: BaseException | None = None
        try:
            result = spec.collect()
            with transaction(self._sessions) as session:
                spec.record(session, result)
        except Exception as exc:
            error = exc
        duration = time.perf_counter() - t0
        finished = utcnow()
        message = "" if error is None else f"{type(error).__name__}: {error}"[:ERROR_MAX]
        with transaction(self._sessions) as session:
            run_row = session.get(JobRunRow, run_id)
            if run_row is not None:
                run_row.finished_at = finished
                run_row.duration_s = duration
                run_row.outcome = "failed" if error else "succeeded"
                run_row.error = message
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
            self._after_run()
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
