"""Faults that are not bugs get a shape (503/507 + Retry-After); gates refuse instead of queueing without end."""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time

import pytest
from sqlalchemy import exc as sa_exc

from pdn_ops.core.db.faults import OutageLog
from pdn_ops.core.errors import Overloaded
from pdn_ops.core.gates import Gate
from pdn_ops.web.overload import classify


def _dbapi(message: str, cls: type[sa_exc.DBAPIError] = sa_exc.OperationalError) -> sa_exc.DBAPIError:
    return cls("SELECT 1", {}, sqlite3.OperationalError(message))


@pytest.mark.parametrize(("exc", "status", "kind"), [
    (sa_exc.TimeoutError("QueuePool limit of size 1 overflow 0 reached"), 503, "busy"),
    (_dbapi("database is locked"), 503, "locked"),
    (_dbapi("connection refused"), 503, "database"),
    (_dbapi("database or disk is full"), 507, "disk_full"),
    (_dbapi('could not extend file "base/1/2": No space left on device'), 507, "disk_full"),
    (OSError(errno.ENOSPC, "No space left on device"), 507, "disk_full"),
    (Overloaded("password checks", 7), 503, "password checks"),
])
def test_faults_that_are_not_bugs_answer_503_or_507(exc: BaseException, status: int, kind: str) -> None:
    found = classify(exc)
    assert found is not None
    assert (found.status, found.kind) == (status, kind)
    assert found.retry_after > 0


def test_a_bug_stays_a_bug() -> None:
    assert classify(ValueError("boom")) is None
    assert classify(OSError(errno.EACCES, "denied")) is None
    assert classify(_dbapi("syntax error", sa_exc.ProgrammingError)) is None


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    outages = OutageLog(logging.getLogger("pdn_ops.web.overload"), quiet_seconds=0.05)
    with caplog.at_level(logging.WARNING, logger="pdn_ops.web.overload"):
        for _ in range(500):
            outages.failed("database", _dbapi("connection refused"))
        outages.succeeded()  # too soon after the last failure: still the same outage
        time.sleep(0.06)
        outages.succeeded()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "database unreachable" in lines[0] and "Traceback" not in caplog.text
    assert "500 time(s)" in lines[1]
    assert not outages.open_kinds


def test_a_full_gate_refuses_at_once_and_a_slow_one_after_its_wait() -> None:
    gate = Gate("password checks", limit=1, queue=1, wait_seconds=0.2, retry_after=3)
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with gate.slot():
            holding.set()
            release.wait(5)

    worker = threading.Thread(target=hold)
    worker.start()
    holding.wait(5)
    waited: list[float] = []

    def wait_in_queue() -> None:
        started = time.monotonic()
        with pytest.raises(Overloaded), gate.slot():
            pass
        waited.append(time.monotonic() - started)

    queued = threading.Thread(target=wait_in_queue)
    queued.start()
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(Overloaded) as refused, gate.slot():  # the queue (1) is taken: refused at once
        pass
    assert time.monotonic() - started < 0.1
    assert refused.value.retry_after == 3
    queued.join(5)
    assert waited and 0.15 < waited[0] < 2
    release.set()
    worker.join(5)
    with gate.slot():  # free again
        pass
    assert gate.refused == 2
