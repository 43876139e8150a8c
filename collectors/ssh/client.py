"""SSH to a guest with paramiko: the host key pinned from the inventory, bounded in time and output.

The pinned key is the only entry of the client's HostKeys and the policy is RejectPolicy: a server that
shows any other key (changed, or of a type we did not pin) is refused before authentication, and the refusal
is a HostKeyMismatch, a security event. Error mapping:

    changed / unknown host key        -> HostKeyMismatch     (host_key)
    key refused by the server         -> AuthFailed          (auth)
    connect, banner, auth or command
      not answered in time            -> TargetUnreachable   (timeout)
    refused / no route                -> TargetUnreachable   (refused)
    name does not resolve             -> TargetUnreachable   (dns)
    other SSH protocol errors         -> UnexpectedResponse  (protocol)

Every bound holds whatever the server does: paramiko's ``exec_command`` waits for the reply to the exec request
with no timeout, so a guest that authenticates and then never answers would hold the collector's thread for good.
A watchdog closes the connection at the command's deadline (a timeout, like any other unanswered step).

Connections may be kept open between checks (``KeptConnections``: a bound on how many, and a number of checks and
a maximum age after which the next check connects afresh). A kept connection is the one that was verified against
the pin when it was made; connecting afresh every few checks verifies the pinned host key and the client key again
(a guest that revoked pdn-ops' key, or whose key changed behind a session that outlived its sshd, is seen within
those checks, not at the next restart); keepalives (every ``KEEPALIVE_SECONDS``) notice a guest that went away.
"""

from __future__ import annotations

import base64
import binascii
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import paramiko

from pdn_ops.core.errors import AuthFailed, CollectorError, HostKeyMismatch, TargetUnreachable, UnexpectedResponse
from pdn_ops.core.inventory import Ssh, resolve_secret_path
from pdn_ops.health.observations import FailureClass

DEFAULT_MAX_OUTPUT = 256 * 1024
_READ_CHUNK = 32 * 1024
KEEPALIVE_SECONDS = 15
# How often an open connection's transport thread wakes up when nothing arrives: paramiko's default, 0.1 s, is ten
# wake-ups a second per connection, which made holding connections open cost more than it saved (bench/ssh_scale.py).
# The keepalive is sent from these wake-ups, so they come at its own period. Set once connected: the handshake
# keeps paramiko's timing, and data wakes the thread at once whatever this is.
IDLE_WAKEUP_SECONDS = float(KEEPALIVE_SECONDS)
# The watchdog closes the connection this long after a command's deadline: the read loop's own checks normally end
# the command first; the watchdog is for calls that block inside paramiko with no timeout.
WATCHDOG_GRACE = 0.5


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_status: int | None  # None: the command was cut off before it reported one
    stdout: str
    stderr: str
    truncated: bool = False


def pinned_key(host_key: str) -> paramiko.PKey:
    """The inventory's 'TYPE BASE64' public key as a paramiko key."""
    try:
        key_type, data = host_key.split()[:2]
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(data, validate=True))
    except (ValueError, binascii.Error, paramiko.SSHException) as exc:
        raise CollectorError("the pinned host key cannot be read", failure=FailureClass.ERROR) from exc


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def translate(exc: BaseException, target: str) -> CollectorError:
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyMismatch(f"{target}: host key changed (expected the pinned {exc.expected_key.get_name()} "
                               f"key, got {exc.key.get_name()} {exc.key.fingerprint})", failure=FailureClass.HOST_KEY)
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthFailed(f"{target}: the SSH key was not accepted", failure=FailureClass.AUTH)
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return TargetUnreachable(f"{target}: connection refused", failure=FailureClass.REFUSED)
    if isinstance(exc, socket.gaierror):
        return TargetUnreachable(f"{target}: name does not resolve", failure=FailureClass.DNS)
    if isinstance(exc, TimeoutError | socket.timeout):
        return TargetUnreachable(f"{target}: no answer in time", failure=FailureClass.TIMEOUT)
    if isinstance(exc, ConnectionRefusedError):
        return TargetUnreachable(f"{target}: connection refused", failure=FailureClass.REFUSED)
    if isinstance(exc, paramiko.SSHException):
        text = str(exc)
        # RejectPolicy's refusal of an unknown key, and negotiation failing because the server no longer
        # has a key of the pinned type: both mean "not the host we pinned".
        if "not found in known_hosts" in text or "no acceptable host key" in text:
            return HostKeyMismatch(f"{target}: host key is not the pinned one", failure=FailureClass.HOST_KEY)
        if "banner" in text.lower() or "timeout" in text.lower() or "timed out" in text.lower():
            return TargetUnreachable(f"{target}: no SSH answer in time", failure=FailureClass.TIMEOUT)
        if "No existing session" in text:
            # connect() stopped waiting for the key exchange at its timeout and went on to authenticate
            return TargetUnreachable(f"{target}: SSH negotiation did not finish in time", failure=FailureClass.TIMEOUT)
        return UnexpectedResponse(f"{target}: SSH protocol error", failure=FailureClass.PROTOCOL)
    if isinstance(exc, OSError):
        return TargetUnreachable(f"{target}: cannot connect ({exc.strerror or type(exc).__name__})",
                                 failure=FailureClass.REFUSED)
    return CollectorError(f"{target}: {type(exc).__name__}", failure=FailureClass.ERROR)


class KeptConnections:
    """Which clients may keep their connection open between checks: at most ``limit`` at once (first come), each
    for at most ``max_uses`` checks and ``max_age`` seconds. Shared by the collectors of one process; thread-safe."""

    def __init__(self, limit: int = 2000, max_age: float = 600.0, max_uses: int = 4) -> None:
        self.limit = limit
        self.max_age = max_age
        self.max_uses = max_uses
        self._lock = threading.Lock()
        self._open: set[SshClient] = set()

    def admit(self, client: SshClient) -> bool:
        with self._lock:
            if client in self._open:
                return True
            if len(self._open) >= self.limit:
                return False
            self._open.add(client)
            return True

    def discard(self, client: SshClient) -> None:
        with self._lock:
            self._open.discard(client)

    def __len__(self) -> int:
        return len(self._open)

    def close_all(self) -> None:
        with self._lock:
            clients, self._open = list(self._open), set()
        for client in clients:
            client.close()


class SshClient:
    """One guest. ``with client: client.run("...")``; each ``with`` is one connection (or ``connect``, then
    ``run`` as often as needed while ``is_open``, then ``close``)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str,
        key_file: Path,
        host_key: str,
        timeout: float,
        max_output: int = DEFAULT_MAX_OUTPUT,
    ) -> None:
        self.host, self.port, self.user = host, port, user
        self.key_file = key_file
        self.host_key = host_key
        self.timeout = timeout
        self.max_output = max_output
        self._client: paramiko.SSHClient | None = None
        self._connected_at = 0.0
        self.uses = 0  # commands run on this connection

    @classmethod
    def for_ssh(cls, ssh: Ssh, *, base_dir: Path | None = None) -> SshClient:
        return cls(host=ssh.host, port=ssh.port, user=ssh.user, key_file=resolve_secret_path(ssh.key, base_dir),
                   host_key=ssh.host_key, timeout=ssh.timeout)

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def connect(self) -> None:
        pin = pinned_key(self.host_key)
        try:
            key = paramiko.PKey.from_path(self.key_file)
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise CollectorError(f"{self.target}: the SSH key file cannot be used", failure=FailureClass.ERROR) from exc
        client = paramiko.SSHClient()
        client.get_host_keys().add(known_hosts_name(self.host, self.port), pin.get_name(), pin)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                hostname=self.host, port=self.port, username=self.user, pkey=key,
                timeout=self.timeout, banner_timeout=self.timeout, auth_timeout=self.timeout,
                channel_timeout=self.timeout, look_for_keys=False, allow_agent=False,
            )
        except Exception as exc:
            transport = client.get_transport()
            # When negotiation dies in paramiko's transport thread (no banner in time), connect() may only say
            # "No existing session"; the thread's own error says why.
            saved = getattr(transport, "saved_exception", None) if transport is not None else None
            client.close()
            cause = saved if isinstance(saved, Exception) and type(exc) is paramiko.SSHException else exc
            raise translate(cause, self.target) from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(KEEPALIVE_SECONDS)
            transport.sock.settimeout(IDLE_WAKEUP_SECONDS)
        self._client = client
        self._connected_at = time.monotonic()
        self.uses = 0

    def is_open(self, max_age: float | None = None, max_uses: int | None = None) -> bool:
        """Connected, the transport alive, and (given them) made less than ``max_age`` seconds ago and used for
        fewer than ``max_uses`` commands."""
        transport = self._client.get_transport() if self._client is not None else None
        if transport is None or not transport.is_active():
            return False
        if max_uses is not None and self.uses >= max_uses:
            return False
        return max_age is None or time.monotonic() - self._connected_at < max_age

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> SshClient:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def run(self, command: str, *, timeout: float | None = None) -> CommandResult:
        """Run one command line; the whole exchange (channel, output, exit status) ends within ``timeout``.

        A guest that accepts the command and then says nothing raises TargetUnreachable (timeout); output beyond
        ``max_output`` bytes is cut and the command is not waited for.
        """
        transport = self._client.get_transport() if self._client is not None else None
        if transport is None or not transport.is_active():
            raise TargetUnreachable(f"{self.target}: not connected", failure=FailureClass.REFUSED)
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        self.uses += 1
        fired = threading.Event()

        def expire() -> None:
            fired.set()
            transport.close()

        watchdog = threading.Timer(limit + WATCHDOG_GRACE, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            return self._run(transport, command, limit, deadline)
        except CollectorError:
            if fired.is_set():
                raise TargetUnreachable(f"{self.target}: no answer in time; connection closed",
                                        failure=FailureClass.TIMEOUT) from None
            raise
        finally:
            watchdog.cancel()

    def _run(self, transport: paramiko.Transport, command: str, limit: float, deadline: float) -> CommandResult:
        try:
            channel = transport.open_session(timeout=limit)
        except Exception as exc:
            raise translate(exc, self.target) from exc
        try:
            channel.settimeout(max(0.01, deadline - time.monotonic()))
            channel.exec_command(command)
            channel.shutdown_write()
            stdout, truncated = self._read(channel, deadline)
            stderr = channel.recv_stderr(4096) if channel.recv_stderr_ready() else b""
            status: int | None = None
            if not truncated:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not channel.status_event.wait(remaining):
                    raise TargetUnreachable(f"{self.target}: command did not finish in time",
                                            failure=FailureClass.TIMEOUT)
                status = channel.recv_exit_status()
        except CollectorError:
            raise
        except Exception as exc:
            raise translate(exc, self.target) from exc
        finally:
            channel.close()
        return CommandResult(
            exit_status=status,
            stdout=stdout.decode("utf-8", errors="replace"),
            stderr=stderr.decode("utf-8", errors="replace"),
            truncated=truncated,
        )

    def _read(self, channel: paramiko.Channel, deadline: float) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TargetUnreachable(f"{self.target}: command output did not end in time",
                                        failure=FailureClass.TIMEOUT)
            channel.settimeout(remaining)
            data = channel.recv(min(_READ_CHUNK, self.max_output - size))
            if not data:
                return b"".join(chunks), False
            chunks.append(data)
            size += len(data)
            if size >= self.max_output:
                return b"".join(chunks), True
