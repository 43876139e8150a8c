"""The lab for every area's tests (registered in tests/conftest.py with ``pytest_plugins``).

Fixtures:
- ``lab``: one lab per test module (1 node, 3 VMs with real sshd guests, 2 with sites, time scale 0.02). Tests
  that break a guest must leave it as they found it, or use ``make_lab``.
- ``make_lab``: ``make_lab(vms=2, sites=1, ...)`` starts a private lab, stopped at the end of the test.
Helpers: ``lab_proxmox(lab)`` (proxmoxer, token auth, TLS verified against the lab CA), ``lab_ssh(lab, vmid)``
(paramiko with the pinned host key and RejectPolicy) and ``lab_run(lab, vmid, command)``.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from tests.support import missing

SSHD = "/usr/sbin/sshd"


def require_lab() -> None:
    """The lab's guests need OpenSSH's sshd (Debian package openssh-server) and fakepve (extra `lab`)."""
    if not (Path(SSHD).exists() and os.access(SSHD, os.X_OK)):
        missing("OpenSSH sshd", f"{SSHD} not found; install the Debian package openssh-server")
    try:
        import fakepve  # noqa: F401
    except ImportError:
        missing("fakepve", "install pdn-ops with the lab extra: pip install -e '.[lab]'")


def _start(directory: Path, **options: Any) -> Any:
    from pdn_ops.lab import Lab

    defaults: dict[str, Any] = {"nodes": 1, "vms": 3, "sites": 2, "time_scale": 0.02}
    return Lab.start(directory, **{**defaults, **options})


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_lab()
    instance = _start(tmp_path_factory.mktemp("lab"))
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def make_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    require_lab()
    started: list[Any] = []

    def factory(**options: Any) -> Any:
        instance = _start(tmp_path_factory.mktemp("lab"), **options)
        started.append(instance)
        return instance

    try:
        yield factory
    finally:
        for instance in started:
            instance.stop()
        _collect_dropped_guest_sockets()


def _collect_dropped_guest_sockets() -> None:
    """A lab guest that powers off drops its connections as a real one would, including a TLS handshake still in
    progress, whose server-side socket only Python's garbage collector closes. Collect them here, where that
    warning is known to be about the simulated guest and not about pdn-ops, instead of in whichever test runs next.
    """
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def lab_proxmox(lab: Any, ticket: bool = False, **options: Any) -> Any:
    from proxmoxer import ProxmoxAPI

    host = lab.api_url.removeprefix("https://")
    if ticket:
        return ProxmoxAPI(host, user="root@pam", password=lab.password, verify_ssl=str(lab.ca_file), **options)
    user, token = lab.token_id.split("!")
    return ProxmoxAPI(host, user=user, token_name=token, token_value=lab.token_secret,
                      verify_ssl=str(lab.ca_file), **options)


@contextlib.contextmanager
def lab_ssh(lab: Any, vmid: int, host_key: str | None = None, timeout: float = 5.0) -> Iterator[paramiko.SSHClient]:
    """An SSH connection to a lab guest that trusts only the pinned host key (default: the guest's current one)."""
    guest = lab.guest(vmid)
    kind, b64 = (host_key or guest.host_key).split()[:2]
    client = paramiko.SSHClient()
    name = guest.address if guest.ssh_port == 22 else f"[{guest.address}]:{guest.ssh_port}"
    client.get_host_keys().add(name, kind, paramiko.PKey.from_type_string(kind, base64.b64decode(b64)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(guest.address, port=guest.ssh_port, username=lab.user, key_filename=str(lab.client_key_path),
                       look_for_keys=False, allow_agent=False, timeout=timeout, banner_timeout=timeout,
                       auth_timeout=timeout)
        yield client
    finally:
        client.close()


def lab_run(lab: Any, vmid: int, command: str, timeout: float = 10.0) -> tuple[int, str, str]:
    """Run one command on a lab guest: (exit status, stdout, stderr)."""
    with lab_ssh(lab, vmid) as client:
        _stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
        status = stdout.channel.recv_exit_status()
        return status, stdout.read().decode(), stderr.read().decode()
