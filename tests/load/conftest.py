"""Fixtures of the load and fault tests: a real ``pdn-ops serve`` process over a fresh database on each engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import serverproc
from tests.support import throwaway_database

Prepared = tuple[str, Path, serverproc.World]


@pytest.fixture(params=["sqlite", "postgresql"])
def prepared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Prepared]:
    """A migrated database with the example inventory and a few accounts; the data directory beside it."""
    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'load.sqlite3'}"
        yield url, data_dir, serverproc.prepare(url, data_dir, admins_per_opd=3, engineers=2)
        return
    server_url: str = request.getfixturevalue("pg_server_url")
    with throwaway_database(server_url, "pdnops_load") as url:
        yield url, data_dir, serverproc.prepare(url, data_dir, admins_per_opd=3, engineers=2)


@pytest.fixture
def serve() -> Iterator[Callable[..., serverproc.Server]]:
    """Start servers; every one is stopped (by PID) at the end of the test, whatever happened."""
    started: list[serverproc.Server] = []

    def start(url: str, data_dir: Path, **kwargs: object) -> serverproc.Server:
        server = serverproc.start(url, data_dir, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def no_traceback(log: str) -> None:
    """A fault is answered with one log line, never a traceback; the failure shows the one that was written."""
    at = log.find("Traceback")
    assert at < 0, "a traceback in the server's log:\n" + log[max(0, at - 1500):at + 3000]
