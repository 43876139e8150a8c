"""Fixtures for remediation tests: a real sshd guest (session-wide) and fakepve (from its pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from remediation.executors.ssh import SshTarget
from tests.remediation.sshguest import SshGuest


@pytest.fixture(scope="session")
def ssh_guest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshGuest]:
    guest = SshGuest(tmp_path_factory.mktemp("sshguest"))
    try:
        yield guest
    finally:
        guest.stop()


@pytest.fixture
def ssh_guest(ssh_guest_server: SshGuest) -> Iterator[SshGuest]:
    ssh_guest_server.reset(units={"nginx.service": "failed", "php8.2-fpm.service": "active"})
    yield ssh_guest_server
    ssh_guest_server.hang(False)  # let a hanging ForceCommand end with the test


@pytest.fixture
def ssh_target(ssh_guest: SshGuest) -> SshTarget:
    return SshTarget(host=ssh_guest.host, port=ssh_guest.port, user=ssh_guest.user, key_path=ssh_guest.client_key,
                     host_key=ssh_guest.host_key, timeout=5)

