"""Helpers for tests that need real components: skip locally, fail in CI (PDN_OPS_STRICT_TESTS=1)."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

STRICT = os.environ.get("PDN_OPS_STRICT_TESTS", "") not in ("", "0", "false", "no")


def missing(component: str, reason: str) -> NoReturn:
    """A real component is not available: fail under strict mode, skip otherwise, always saying why."""
    message = f"{component} is not available: {reason}"
    if STRICT:
        pytest.fail(f"strict mode (PDN_OPS_STRICT_TESTS=1): {message}", pytrace=False)
    pytest.skip(message)


def require_binary(name: str, *candidates: str) -> str:
    for path in (*candidates, shutil.which(name)):
        if path and Path(path).exists() and os.access(path, os.X_OK):
            return path
    missing(name, f"install the Debian package that provides {name}")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def throwaway_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of ``server_url``; dropped (even with connections) after."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any, *, lifespan: str = "off", start_timeout: float = 10.0) -> Iterator[str]:
    """A real uvicorn server for ``app`` on a free loopback port, in a thread; yields its base URL."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan=lifespan))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# The future-clock run (make pytest-future) moves the clock of this process and, through the environment, of every
# process it starts: a subprocess started with a hand-made environment must carry these too, or it would live on
# another day than the certificates and rows the tests made.
MACHINE_CLOCK_VARS = ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC")


def machine_clock_env() -> dict[str, str]:
    return {name: os.environ[name] for name in MACHINE_CLOCK_VARS if name in os.environ}
