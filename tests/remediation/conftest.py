"""Fixtures for remediation tests: a real sshd guest (session-wide), fakepve (from its pytest plugin) and
``labpve``: the lab's Proxmox API (fakepve plus the gaps pdn_ops/lab fills: disk resize, schema checks, PVE's
task list defaults), served the same way, for tests whose playbooks need what plain fakepve does not do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker
from remediation.executors.ssh import SshTarget
from tests.remediation.sshguest import SshGuest


@pytest.fixture
def sessions(fresh_db_url: str) -> Iterator[sessionmaker[Session]]:
    """A migrated throwaway database (SQLite or PostgreSQL, by the parametrised ``fresh_db_url``)."""
    migrate.upgrade(fresh_db_url)
    engine = make_engine(fresh_db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


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



@pytest.fixture
def labpve(_fakepve_pki: tuple[str, str]) -> Iterator[Any]:
    """A LabPve on 127.0.0.1 (time scale 0), with fakepve's certificate: use ``fakepve_cafile`` to verify it."""
    from fakepve.pytest_plugin import _Serving

    from pdn_ops.lab.pve import LabPve

    pve = LabPve(user="root@pam", password="secret", host="127.0.0.1", port=0)
    serving = _Serving(pve, *_fakepve_pki)
    try:
        yield pve
    finally:
        serving.stop()
