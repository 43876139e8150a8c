"""Concurrency gates: a bounded queue in front of each expensive part (password hashing, photo processing, PDF
rendering).

A gate lets ``limit`` callers work at once and ``queue`` more wait at most ``wait_seconds``; anyone beyond that, or
anyone whose wait runs out, gets ``Overloaded`` at once, which the web shell answers 503 with Retry-After. Without
it, 200 logins each wanting half a second of argon2 on two cores would hold 200 worker threads (and their
database connections) for a minute and a half.

Blocking on purpose: gates are entered from worker threads (sync routes), never from the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pdn_ops.core.errors import Overloaded


class Gate:
    def __init__(self, name: str, *, limit: int, queue: int, wait_seconds: float, retry_after: int = 5) -> None:
        if limit < 1 or queue < 0 or wait_seconds < 0:
            raise ValueError("a gate needs limit >= 1, queue >= 0 and wait_seconds >= 0")
        self.name = name
        self.limit = limit
        self.queue = queue
        self.wait_seconds = wait_seconds
        self.retry_after = retry_after
        self._slots = threading.Semaphore(limit)
        self._lock = threading.Lock()
        self._waiting = 0
        self.refused = 0  # counted for /metrics and the load test's report

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            with self._lock:
                if self._waiting >= self.queue:
                    self.refused += 1
                    raise Overloaded(self.name, self.retry_after)
                self._waiting += 1
            try:
                got = self._slots.acquire(timeout=self.wait_seconds)
            finally:
                with self._lock:
                    self._waiting -= 1
            if not got:
                with self._lock:
                    self.refused += 1
                raise Overloaded(self.name, self.retry_after)
        try:
            yield
        finally:
            self._slots.release()
