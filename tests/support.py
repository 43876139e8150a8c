"""Helpers for tests that need real components: skip locally, fail in CI (PDN_OPS_STRICT_TESTS=1)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import NoReturn

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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
