"""SSH client bounds that need no guest: a listener that never says a word, and unusable pins or keys."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.ssh.client import SshClient
from collectors.ssh.collector import SshCollector
from pdn_ops.health.observations import FailureClass

PIN = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExsb8vy5ugPab3iXeIEHpRTHG3N1vzQuSWY8Eyv8Y0u"


@pytest.fixture
def silent_listener() -> Iterator[tuple[str, int]]:
    """Accepts TCP connections and never sends the SSH banner."""
    server = socket.socket()
    server.bind(("127.0.33.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def collector(host: str, port: int, key_file: Path, *, host_key: str = PIN, timeout: float = 0.5) -> SshCollector:
    client = SshClient(host=host, port=port, user="root", key_file=key_file, host_key=host_key, timeout=timeout)
    return SshCollector(client, cluster="lab", vmid=101)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = tmp_path / "id_ed25519"
    path.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def test_server_that_accepts_and_never_sends_a_banner_times_out_within_the_bound(silent_listener, key_file):
    host, port = silent_listener
    started = time.monotonic()
    obs = collector(host, port, key_file).collect()
    assert (obs.ok, obs.failure) == (False, FailureClass.TIMEOUT)
    assert time.monotonic() - started < 3


def test_unreadable_pin_or_key_is_a_clear_error_before_any_connection(silent_listener, key_file, tmp_path):
    host, port = silent_listener
    bad_pin = collector(host, port, key_file, host_key="ssh-ed25519 not-base64!").collect()
    assert (bad_pin.ok, bad_pin.failure) == (False, FailureClass.ERROR)
    assert "pinned host key" in bad_pin.detail
    no_key = collector(host, port, tmp_path / "missing").collect()
    assert (no_key.ok, no_key.failure) == (False, FailureClass.ERROR)
    assert "key file" in no_key.detail


def test_name_that_does_not_resolve_is_a_dns_failure(key_file):
    obs = collector("no-such-guest.invalid", 22, key_file, timeout=5).collect()
    assert (obs.ok, obs.failure) == (False, FailureClass.DNS)


def test_guest_that_never_answers_the_exec_request_times_out_within_the_bound(tmp_path):
    """Authenticated, then the exec request is never answered (paramiko's exec_command has no timeout of its own):
    the check ends at its deadline as a timeout instead of holding the collector's thread for good."""
    from tests.hung_ssh import HungSshServer, write_client_key

    with HungSshServer(host="127.0.33.2") as server:
        key = write_client_key(tmp_path / "client_key")
        observations = []
        check = threading.Thread(target=lambda: observations.append(
            collector(server.host, server.port, key, host_key=server.host_key, timeout=1.0).collect()), daemon=True)
        check.start()
        check.join(30)  # a bound for the test only: without the watchdog the check never ends
        assert not check.is_alive(), "the collector is stuck on the unanswered exec request"
        assert server.exec_asked.is_set()
    [obs] = observations
    assert (obs.ok, obs.failure) == (False, FailureClass.TIMEOUT), obs.detail
