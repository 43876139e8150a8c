"""The remediation worker: claims queued runs, executes them through the journal, recovers after a crash.

Claiming is atomic, so each run is executed exactly once whatever the number of workers: ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL; on SQLite a conditional UPDATE in a ``BEGIN IMMEDIATE`` transaction (claims queue for the
write lock). While a worker executes a run it holds a lock on the run that the operating system releases when the
worker dies, however it dies (``RunLocks``: a PostgreSQL session advisory lock, or an ``flock`` on a file next to
the SQLite database); a worker takes over only the ``running`` runs whose lock it can get (their worker died): it
marks them interrupted, then the runner reconciles their cut-off step. So several workers may run on SQLite too,
on the database's host (SQLite's own rule).

On SQLite every unit of work here that reads before it writes starts as the writer (``BEGIN IMMEDIATE``): in WAL
mode a reader that another process overtook cannot become a writer (SQLITE_BUSY_SNAPSHOT, not retried by the busy
timeout), which made a second worker fail with "database is locked".

Reconciling is itself crash-safe: a worker that dies while reconciling an ``interrupted`` run leaves it
interrupted, with its lock released by the operating system, and the next worker takes it over the same way (the
journal says which steps are done; a cut-off step is reconciled by its UPID, the node's task list or the guest's
state, never repeated blindly).

Test hooks (the SIGKILL tests): ``PDN_OPS_REMEDIATION_KILL_AT=k`` makes the worker SIGKILL itself at the k-th step
boundary of the runs it claims, so tests can cut it at every point of every playbook;
``PDN_OPS_REMEDIATION_KILL_ON=<phase>:<boundary>`` at one named boundary, ``phase`` being ``claimed`` or
``recovering`` (e.g. ``recovering:taken``, ``recovering:act:start:called``), so tests can cut a worker while it
reconciles another's run.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.faults import OutageLog, database_fault
from pdn_ops.core.db.tables import AuditRow, utcnow
from pdn_ops.core.errors import ConfigError
from pdn_ops.core.locks import RunLocks
from pdn_ops.runs import model as rem
from pdn_ops.runs.closure import Alert, ClosurePolicy, ComplaintLink, evaluate_closures
from pdn_ops.runs.model import Outcome, StepStatus, cap_output
from pdn_ops.runs.service import vm_target
from pdn_ops.runs.tables import RemediationRunRow, RemediationStepRow
from remediation import registry, runner
from remediation.executors.proxmox import ProxmoxExecutor
from remediation.executors.ssh import SshExecutor
from remediation.playbooks.base import RunContext, Step, StepRecord

log = logging.getLogger(__name__)
KILL_ENV = "PDN_OPS_REMEDIATION_KILL_AT"
KILL_SCOPE_ENV = "PDN_OPS_REMEDIATION_KILL_SCOPE"
KILL_ON_ENV = "PDN_OPS_REMEDIATION_KILL_ON"


@dataclass
class Clients:
    """How the worker reaches the world; built from the inventory in production, from the lab in tests."""

    proxmox: Callable[[str], ProxmoxExecutor]  # cluster name -> executor
    ssh: SshExecutor = field(default_factory=SshExecutor)


@dataclass
class WorkerConfig:
    worker_id: str
    policy: rem.Policy = field(default_factory=rem.Policy)
    base_dir: Any = None
    observe: Callable[[RemediationRunRow, float], None] | None = None  # metrics hook: run, seconds
    closure: ClosurePolicy | None = None  # None: no health-confirmed closure in this worker
    complaint_link: ComplaintLink | None = None
    alert: Alert | None = None
    # Called with the run's id once a run succeeded (its closure now waits for checks): the service wakes the
    # fast lane so the first confirming check starts at once instead of at the lane's next slot.
    on_succeeded: Callable[[int], None] | None = None


class _KillSwitch:
    """Counts step boundaries of runs this worker claimed (not of orphans it recovers); ``..._SCOPE=act`` counts
    only boundaries of side-effecting steps (reads are repeated by design). ``..._KILL_ON`` names one boundary of
    either phase instead."""

    def __init__(self) -> None:
        raw = os.environ.get(KILL_ENV, "")
        self.at = int(raw) if raw.isdigit() else 0
        self.only_acts = os.environ.get(KILL_SCOPE_ENV, "all") == "act"
        self.on = os.environ.get(KILL_ON_ENV, "")
        self.count = 0
        self.recovering = False  # reconciling a run another worker left behind

    def __call__(self, label: str) -> None:
        named = f"{'recovering' if self.recovering else 'claimed'}:{label}"
        if self.on and named == self.on:
            self._die(named)
        if self.recovering or (self.only_acts and not label.startswith("act:")):
            return
        self.count += 1
        if self.at and self.count == self.at:
            self._die(f"boundary {self.count} ({label})")

    @staticmethod
    def _die(where: str) -> None:
        log.warning("test hook: SIGKILL at %s", where)
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def writing(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A committed unit of work that starts as the writer on SQLite (BEGIN IMMEDIATE; nothing changes elsewhere)."""
    with transaction(sessions) as session:
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        yield session


class DbJournal:
    """The runner's journal over the database: every write is its own committed transaction.

    Each step row also records which worker wrote its intent and which its result (``rem.STEP_WORKERS`` in its
    facts), so the timeline can say who did what on a run taken over after a crash.
    """

    def __init__(self, sessions: sessionmaker[Session], run_id: int, worker_id: str | None = None) -> None:
        self._sessions = sessions
        self._run_id = run_id
        self._worker = worker_id

    def records(self) -> list[StepRecord]:
        with self._sessions() as session:
            rows = session.scalars(select(RemediationStepRow).where(RemediationStepRow.run_id == self._run_id)
                                   .order_by(RemediationStepRow.position))
            return [StepRecord(r.position, r.name, r.state, r.upid, r.intent_at,
                               {k: v for k, v in (r.facts or {}).items() if k != rem.STEP_WORKERS}) for r in rows]

    def intent(self, position: int, step: Step, text_: str) -> None:
        with writing(self._sessions) as session:
            session.add(RemediationStepRow(run_id=self._run_id, position=position, name=step.name, kind=step.kind,
                                           side_effect=step.side_effect, intent=text_, state=StepStatus.RUNNING.value,
                                           intent_at=utcnow(), facts=self._workers(intent=self._worker)))

    def upid(self, position: int, node: str, upid: str) -> None:
        with writing(self._sessions) as session:
            session.execute(update(RemediationStepRow).where(
                RemediationStepRow.run_id == self._run_id, RemediationStepRow.position == position)
                .values(upid=upid, node=node))

    def result(self, position: int, outcome: Outcome, facts: dict[str, Any], *, reconciled: bool = False) -> None:
        with writing(self._sessions) as session:
            journaled = session.scalar(select(RemediationStepRow.facts).where(
                RemediationStepRow.run_id == self._run_id, RemediationStepRow.position == position))
            intent_by, _ = rem.step_workers(journaled)
            values: dict[str, Any] = dict(
                state=outcome.status.value, exit_code=outcome.exit_code, stdout=cap_output(outcome.stdout),
                stderr=cap_output(outcome.stderr), detail=outcome.detail[:2000], reconciled=reconciled,
                facts={**facts, **self._workers(intent=intent_by, result=self._worker)}, finished_at=utcnow())
            if outcome.upid:
                values["upid"] = outcome.upid
            session.execute(update(RemediationStepRow).where(
                RemediationStepRow.run_id == self._run_id, RemediationStepRow.position == position).values(**values))
            if outcome.security_event:
                session.add(AuditRow(actor="pdn-ops", action="security.ssh_host_key", subject=f"remediation_run:"
                                     f"{self._run_id}", detail=outcome.detail[:2000]))

    @staticmethod
    def _workers(**names: str | None) -> dict[str, Any]:
        known = {k: v for k, v in names.items() if v is not None}
        return {rem.STEP_WORKERS: known} if known else {}


class Worker:
    def __init__(self, engine: Engine, sessions: sessionmaker[Session], inventory: Any, clients: Clients,
                 config: WorkerConfig) -> None:
        self.engine = engine
        self.sessions = sessions
        self.inventory = inventory
        self.clients = clients
        self.config = config
        self.locks = RunLocks(engine)
        self.kill = _KillSwitch()

    def close(self) -> None:
        self.locks.close()

    # -- claiming -------------------------------------------------------------------------------------------------

    def claim(self) -> int | None:
        """Take one queued run, or None. Holds the run's lock from before the claim commits."""
        claimable = [s.value for s in rem.CLAIMABLE_STATES]
        locked: int | None = None
        try:
            with writing(self.sessions) as session:
                stmt = (select(RemediationRunRow.id).where(RemediationRunRow.state.in_(claimable))
                        .order_by(RemediationRunRow.id).limit(1))
                if self.engine.dialect.name == "postgresql":
                    stmt = stmt.with_for_update(skip_locked=True)
                # On SQLite, BEGIN IMMEDIATE made this transaction the only writer: no other claim can slip in.
                run_id = session.scalar(stmt)
                if run_id is None or not self.locks.try_lock(run_id):
                    return None
                locked = run_id
                claimed = session.execute(update(RemediationRunRow).where(
                    RemediationRunRow.id == run_id, RemediationRunRow.state.in_(claimable)).values(
                    state=rem.State.RUNNING.value, claimed_by=self.config.worker_id, started_at=utcnow(),
                    attempt=RemediationRunRow.attempt + 1))
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    return None
                # Who started it, for the timeline: after a takeover the run names only its last worker.
                session.add(AuditRow(actor=self.config.worker_id, action="remediation.started",
                                     subject=f"remediation_run:{run_id}"))
            locked = None  # committed: the lock now guards the run until its outcome
            return run_id
        finally:
            if locked is not None:  # not claimed after all (or the commit failed): the run stays claimable
                self.locks.unlock(locked)

    def take_orphan(self) -> int | None:
        """One run whose worker died, marked interrupted and its lock taken by this worker; or None.

        Orphans are ``running`` runs (their worker died executing them) and ``interrupted`` runs (the worker that
        was reconciling them died too). Whichever the state, a live worker holds the run's lock from its claim or
        takeover until the outcome is committed, so a run whose lock is free has nobody working on it.
        """
        orphaned = [rem.State.RUNNING.value, rem.State.INTERRUPTED.value]
        with self.sessions() as session:
            candidates = list(session.scalars(select(RemediationRunRow.id).where(
                RemediationRunRow.state.in_(orphaned)).order_by(RemediationRunRow.id)))
        for run_id in candidates:
            if not self.locks.try_lock(run_id):
                continue  # a live worker holds it
            taken = moved_here = False
            try:
                with writing(self.sessions) as session:
                    # Read again under the lock: the run may have finished since the list was read.
                    row = session.execute(select(RemediationRunRow.state, RemediationRunRow.claimed_by).where(
                        RemediationRunRow.id == run_id)).one_or_none()
                    moved = session.execute(update(RemediationRunRow).where(
                        RemediationRunRow.id == run_id, RemediationRunRow.state.in_(orphaned)).values(
                        state=rem.State.INTERRUPTED.value, claimed_by=self.config.worker_id,
                        attempt=RemediationRunRow.attempt + 1))
                    if row is not None and moved.rowcount == 1:  # type: ignore[attr-defined]
                        before, previous = row
                        detail = (f"worker {previous or '?'} died; reconciling" if before == rem.State.RUNNING.value
                                  else f"worker {previous or '?'} died while reconciling; reconciling again")
                        session.add(AuditRow(actor=self.config.worker_id, action="remediation.interrupted",
                                             subject=f"remediation_run:{run_id}", detail=detail))
                        moved_here = True
                taken = moved_here  # committed
            finally:
                if not taken:  # finished meanwhile (or the commit failed): not ours
                    self.locks.unlock(run_id)
            if taken:
                self.kill("taken")
                return run_id
        return None

    # -- executing ------------------------------------------------------------------------------------------------

    def execute(self, run_id: int) -> str:
        started = time.monotonic()
        try:
            with self.sessions() as session:
                row = session.get(RemediationRunRow, run_id)
                assert row is not None
                playbook, target_key, params = row.playbook, row.target, dict(row.params)
            book = registry.playbook(playbook)
            target = vm_target(self.inventory, target_key, self.config.base_dir)
            proxmox = self.clients.proxmox(target.cluster) if book.needs == "api" else None
            ctx = RunContext(run_id=run_id, target=target, params=params, policy=self.config.policy,
                             proxmox=proxmox, ssh=self.clients.ssh)
            try:
                result = runner.run(book, ctx, DbJournal(self.sessions, run_id, self.config.worker_id),
                                    boundary=self.kill)
            finally:
                if proxmox is not None:
                    proxmox.close()
            outcome, summary = result.status.value, result.summary
        except Exception as exc:  # the run must end with a recorded outcome whatever broke
            log.exception("run %s broke", run_id)
            outcome, summary = rem.State.UNKNOWN.value, f"the worker hit an internal error ({type(exc).__name__})"
        with writing(self.sessions) as session:
            row = session.get(RemediationRunRow, run_id)
            assert row is not None
            row.state = outcome
            row.outcome = outcome
            row.summary = summary[:4000]
            row.finished_at = utcnow()
            session.add(AuditRow(actor=self.config.worker_id, action=f"remediation.{outcome}",
                                 subject=f"remediation_run:{run_id}", detail=summary[:2000]))
        self.locks.unlock(run_id, finished=True)
        if outcome == rem.State.SUCCEEDED.value and self.config.on_succeeded is not None:
            try:
                self.config.on_succeeded(run_id)
            except Exception:  # only a wake-up: the fast lane's own cadence checks the run's targets anyway
                log.exception("run %s: waking the fast lane failed", run_id)
        if self.config.observe is not None:
            with self.sessions() as session:
                finished = session.get(RemediationRunRow, run_id)
                if finished is not None:
                    self.config.observe(finished, time.monotonic() - started)
        return outcome

    def run_pending(self, *, max_runs: int | None = None) -> int:
        """Recover orphans, then execute queued runs until none is left; returns how many were executed."""
        done = 0
        self.kill.recovering = True
        try:
            while (orphan := self.take_orphan()) is not None:
                self.execute(orphan)
                done += 1
        finally:
            self.kill.recovering = False
        while max_runs is None or done < max_runs:
            run_id = self.claim()
            if run_id is None:
                break
            self.execute(run_id)
            done += 1
        return done

    def close_runs(self) -> list[tuple[int, str]]:
        """Health-confirmed closure of succeeded runs (needs the health checks the collectors record)."""
        if self.config.closure is None:
            return []
        with writing(self.sessions) as session:
            return evaluate_closures(session, policy=self.config.closure, complaint_link=self.config.complaint_link,
                                     alert=self.config.alert)

    def loop(self, stop: Callable[[], bool], idle: float = 1.0) -> None:
        """Until ``stop()``: execute, then close. An unexpected error (a database hiccup, a bug) is logged and the
        loop goes on after a pause: in the app this thread is the only worker. A run's own failures are recorded
        on it (``execute``: unknown; a closure that breaks: ``error``), so no run is retried blindly."""
        outages = OutageLog(log, f"remediation worker {self.config.worker_id} waits")
        while not stop():
            executed = 0
            ok = True
            try:
                executed = self.run_pending()
            except Exception as exc:
                ok = False
                if (kind := database_fault(exc)) is not None:
                    outages.failed(kind, exc)  # one line per outage, not a traceback a second
                else:
                    log.exception("remediation worker %s: executing runs failed; going on", self.config.worker_id)
            try:
                self.close_runs()
            except Exception as exc:
                ok = False
                if (kind := database_fault(exc)) is not None:
                    outages.failed(kind, exc)
                else:
                    log.exception("remediation worker %s: closing runs failed; going on", self.config.worker_id)
            if ok:
                outages.succeeded()
            if executed == 0:
                time.sleep(idle)


def proxmox_executor_for(inventory: Any, cluster_name: str, base_dir: Path | None) -> ProxmoxExecutor:
    """A Proxmox executor for an inventory cluster: token auth, TLS verified by CA file or pinned fingerprint."""
    from collectors.proxmox.client import PinnedFingerprintAdapter
    from pdn_ops.core.inventory import resolve_secret
    from remediation.executors.proxmox import connect

    cluster = inventory.cluster(cluster_name)
    if cluster is None:
        raise ConfigError(f"no cluster {cluster_name!r} in the inventory")
    verify: str | bool = True
    if cluster.tls.ca_file is not None:
        ca = Path(cluster.tls.ca_file)
        verify = str(ca if ca.is_absolute() or base_dir is None else base_dir / ca)
    api = connect(cluster.api_url, token_id=cluster.token_id,
                  token_secret=resolve_secret(cluster.token_secret, base_dir).get_secret_value(),
                  verify=verify, timeout=cluster.timeout)
    if cluster.tls.fingerprint is not None:
        api._store["session"].mount("https://", PinnedFingerprintAdapter(cluster.tls.fingerprint))
    return ProxmoxExecutor(api, poll_interval=0.2)


def inventory_clients(inventory: Any, base_dir: Path | None) -> Clients:
    """The production clients: Proxmox executors built from the inventory's clusters and secret references."""
    return Clients(proxmox=lambda name: proxmox_executor_for(inventory, name, base_dir))


def run_in_thread(worker: Worker) -> Callable[[], None]:
    """One worker thread inside the service (the demo, small sites); returns how to stop it.

    Larger sites run ``pdn-ops remediation worker`` processes instead (several on PostgreSQL).
    """
    import threading

    stopping = threading.Event()
    thread = threading.Thread(target=worker.loop, args=(stopping.is_set,), name="remediation-worker", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(10)
        worker.close()
    return stop
