"""APScheduler setup and the leader loop that runs it in exactly one process; the app's start hook.

Every job gets its own single-thread executor: a slow or hung collector can only delay itself, never another
job. ``coalesce=True`` folds missed runs into one, ``max_instances=1`` forbids overlap of a job with itself, and
``misfire_grace_time`` is explicit per job (half its interval)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db.faults import OutageLog, database_fault
from pdn_ops.core.jobs import JobSpec, JobWrapper
from pdn_ops.core.locks import LeaderLock

log = logging.getLogger(__name__)


LEADER_RETRY_S = 10.0


def build_scheduler(specs: Sequence[JobSpec], wrapper: JobWrapper, *, start_now: bool = True) -> BackgroundScheduler:
    executors = {spec.name: ThreadPoolExecutor(max_workers=1) for spec in specs}
    scheduler = BackgroundScheduler(executors=executors, timezone=UTC,
                                    job_defaults={"coalesce": True, "max_instances": 1})
    for spec in specs:
        scheduler.add_job(
            wrapper.run, IntervalTrigger(seconds=spec.interval_s, timezone=UTC), args=[spec], id=spec.name,
            name=spec.name, executor=spec.name, coalesce=True, max_instances=1,
            misfire_grace_time=spec.misfire_grace,
            # Collectors run once at start so states appear within one interval of a restart, not two.
            next_run_time=datetime.now(UTC) if start_now else None,
        )
    return scheduler


class SchedulerService:
    """Tries the leader lock until it wins, then runs the scheduler; steps down if the lock is lost."""

    def __init__(self, lock: LeaderLock, make_scheduler: Callable[[], BackgroundScheduler], *,
                 retry_s: float = LEADER_RETRY_S) -> None:
        self._lock = lock
        self._make = make_scheduler
        self._retry_s = retry_s
        self._outages = OutageLog(log, "scheduler leader election waits")
        self._stop = threading.Event()
        self.became_leader = threading.Event()
        self._scheduler: BackgroundScheduler | None = None
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        return self._scheduler is not None

    @property
    def scheduler(self) -> BackgroundScheduler | None:
        return self._scheduler

    def wake(self, job_id: str) -> bool:
        """Run the job ``job_id`` now rather than at its next slot (an event calls for it); False when this process
        does not run the scheduler or has no such job. A run already in progress is not doubled
        (``max_instances=1``): the woken slot is then skipped and the job keeps its cadence."""
        scheduler = self._scheduler
        if scheduler is None:
            return False
        try:
            scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))
        except JobLookupError:
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pdn-ops-leader", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:
                # The election must survive a database hiccup (logged once per outage); a bug's traceback is logged.
                if (kind := database_fault(exc)) is not None:
                    self._outages.failed(kind, exc)
                else:
                    log.exception("scheduler leader election failed; retrying in %.0f s", self._retry_s)
            else:
                self._outages.succeeded()
            self._stop.wait(self._retry_s)

    def _tick(self) -> None:
        if self._scheduler is None:
            if self._lock.try_acquire():
                scheduler = self._make()
                scheduler.start()
                self._scheduler = scheduler
                self.became_leader.set()
                log.info("this process runs the scheduler (%d jobs)", len(scheduler.get_jobs()))
        elif not self._lock.held():
            log.warning("scheduler lock lost: stopping this process's scheduler")
            self._shutdown()

    def _shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
            self.became_leader.clear()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._retry_s + 5)
        self._shutdown()
        self._lock.release()


def start_scheduler(sessions: sessionmaker[Session], lock: LeaderLock, specs: Sequence[JobSpec], *,
                    after_run: Callable[[], None] | None = None, retry_s: float = LEADER_RETRY_S) -> SchedulerService:
    wrapper = JobWrapper(sessions, after_run=after_run)
    service = SchedulerService(lock, lambda: build_scheduler(specs, wrapper), retry_s=retry_s)
    service.start()
    return service
