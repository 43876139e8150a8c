"""A scheduled job's spec, and the one wrapper every scheduled job runs through: its own sessions,
a JobRun row, status for /metrics."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.faults import OutageLog, database_fault
from pdn_ops.core.db.tables import JobRunRow, JobStatusRow, utcnow


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One scheduled job: ``collect`` does the I/O (no session), ``record`` stores its result in one transaction."""

    name: str  # bounded and stable: it is the ``collector`` label of the metrics
    kind: str  # proxmox | sites | ssh | maintenance
    interval_s: float
    collect: Callable[[], Any]
    record: Callable[[Session, Any], object]
    misfire_grace_s: float = 0.0  # 0 means: half the interval

    @property
    def misfire_grace(self) -> int:
        # A run that missed its slot by more than half an interval is dropped; the next one is due soon anyway.
        return max(1, int(self.misfire_grace_s or self.interval_s / 2))


@dataclass(frozen=True, slots=True)
class RunFailure:
    """What a ``record`` step returns when the run's data is not usable (the API refused our token, the answer was
    empty): what it did record is kept, and the run counts as failed with this bounded class (e.g. "auth"), for
    ``job_status`` and ``pdn_collector_failing``."""

    failure: str
    detail: str = ""


def collect_nothing() -> None:
    """The collect step of a maintenance job: everything it does happens in ``record``."""
    return None


log = logging.getLogger(__name__)


ERROR_MAX = 1000
# Every job meets the same database outage: one line when it starts and one when it ends, for all of them.
JOB_OUTAGES = OutageLog(logging.getLogger(__name__), what="job runs fail")


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
        """Run one job and record it. A database fault (locked past the busy timeout, unreachable, pool
        exhausted, disk full) is not a bug: it is counted as the run's failure where it can still be recorded,
        logged once per outage for all jobs (no traceback), and the next run tries again. Anything else raises."""
        try:
            self._run(spec)
        except Exception as exc:
            kind = database_fault(exc)
            if kind is None:
                raise
            JOB_OUTAGES.failed(kind, exc)
            return
        JOB_OUTAGES.succeeded()

    def _run(self, spec: JobSpec) -> None:
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
        refused: RunFailure | None = None
        try:
            result = spec.collect()
            with self._writing() as session:
                session.execute(update(JobStatusRow).where(JobStatusRow.job == spec.name)
                                .values(last_started_at=started))
                recorded = spec.record(session, result)
            refused = recorded if isinstance(recorded, RunFailure) else None
        except Exception as exc:
            error = exc
        duration = time.perf_counter() - t0
        finished = utcnow()
        failed = error is not None or refused is not None
        if error is not None:
            message = f"{type(error).__name__}: {error}"[:ERROR_MAX]
            failure = database_fault(error) or "error"
        elif refused is not None:
            message, failure = f"{refused.failure}: {refused.detail}"[:ERROR_MAX], refused.failure[:32]
        else:
            message, failure = "", None
        with self._writing() as session:
            session.execute(update(JobRunRow).where(JobRunRow.id == run_id).values(
                finished_at=finished, duration_s=duration, outcome="failed" if failed else "succeeded",
                error=message))
            status = self._status(session, spec)
            status.runs_total += 1
            status.interval_s = spec.interval_s
            status.last_finished_at = finished
            status.last_duration_s = duration
            status.last_ok = not failed
            status.last_error = message
            status.last_failure = failure
            if not failed:
                status.last_success_at = finished
            else:
                status.errors_total += 1
        if self._after_run is not None:
            try:
                self._after_run()
            except Exception as exc:
                # A stale metrics snapshot must not turn a successful run into a failed one; it is logged (a
                # database fault once per outage, like the runs').
                if database_fault(exc) is not None:
                    JOB_OUTAGES.failed(database_fault(exc) or "", exc)
                else:
                    log.exception("after-run hook of job %s failed", spec.name)
        if refused is not None:
            log.warning("job %s failed after %.3f s: %s", spec.name, duration, message)
        if error is not None:
            if database_fault(error) is None:
                log.error("job %s failed after %.3f s: %s", spec.name, duration, message, exc_info=error)
            raise error

    @staticmethod
    def _status(session: Session, spec: JobSpec) -> JobStatusRow:
        status = session.get(JobStatusRow, spec.name)
        if status is None:
            status = JobStatusRow(job=spec.name, kind=spec.kind, runs_total=0, errors_total=0, last_error="")
            session.add(status)
        return status


# A job run is evidence for "why did the collector stop?" questions; two weeks cover any such question, and at
# about 10,000 runs a day (the automatic rules alone run every 15 s) the table would otherwise grow without end.
JOB_RUNS_RETENTION = timedelta(days=14)
RETENTION_INTERVAL_S = 3600.0


def purge_job_runs(session: Session, *, keep: timedelta = JOB_RUNS_RETENTION, now: datetime | None = None) -> int:
    """Delete finished job runs older than ``keep``; a run still marked running is kept (its process may have died,
    and that is worth seeing). Returns how many rows went."""
    cutoff = (now or utcnow()) - keep
    result = session.execute(delete(JobRunRow).where(JobRunRow.finished_at.is_not(None),
                                                     JobRunRow.started_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


def retention_jobs(keep: timedelta = JOB_RUNS_RETENTION) -> list[JobSpec]:
    """The core's own upkeep: old job runs go."""

    def purge(session: Session, _: object) -> object:
        return purge_job_runs(session, keep=keep)

    return [JobSpec("core:job-runs-retention", "maintenance", RETENTION_INTERVAL_S, collect_nothing, purge)]
