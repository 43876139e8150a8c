"""Commands on a guest over SSH, handed a connection factory that pins the host key.

A command is always an argv list; it is joined with ``shlex.quote`` so no parameter reaches the remote shell
unquoted. The host key is pinned from the inventory and unknown or changed keys are refused (``RejectPolicy``):
a mismatch is returned as a failed outcome flagged ``security_event``. Every command has a deadline; on timeout the
partial output is kept and the outcome is unknown (the command may still be running on the guest).

The deadline holds whatever the server does: paramiko's ``exec_command`` waits for the server's reply to the exec
request with no timeout at all, so a server that authenticates and then never answers would block the worker for
good. A watchdog closes the connection at the deadline, which wakes every blocked call; the outcome is unknown
(the server may have started the command) and the step is reconciled by checking the guest. Keepalives keep an
idle connection (a long command without output) from being dropped by a firewall on the way.
"""

from __future__ import annotations

import base64
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko

from pdn_ops.core.errors import HostKeyRefused
from pdn_ops.runs.model import Outcome, StepStatus, cap_output


@dataclass(frozen=True, slots=True)
class SshTarget:
    host: str
    user: str
    key_path: Path
    host_key: str  # "ssh-ed25519 AAAA..."
    port: int = 22
    timeout: float = 10.0


ConnectionFactory = Callable[[SshTarget], paramiko.SSHClient]
KEEPALIVE_SECONDS = 15
# The watchdog fires this long after the command's deadline: normally the read loop's own deadline check ends the
# command first (keeping its partial output); the watchdog is for calls that block inside paramiko.
WATCHDOG_GRACE = 1.0



def pinned_connection(target: SshTarget) -> paramiko.SSHClient:
    """Connect with only the pinned host key known and RejectPolicy for anything else."""
    key_type, _, data = target.host_key.partition(" ")
    pinned = paramiko.PKey.from_type_string(key_type, base64.b64decode(data.split()[0]))
    client = paramiko.SSHClient()
    name = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
    client.get_host_keys().add(name, key_type, pinned)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(target.host, port=target.port, username=target.user, key_filename=str(target.key_path),
                       timeout=target.timeout, banner_timeout=target.timeout, auth_timeout=target.timeout,
                       channel_timeout=target.timeout, look_for_keys=False, allow_agent=False)
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyRefused(f"host key of {target.host}:{target.port} is not the pinned one") from exc
    except paramiko.SSHException as exc:
        client.close()
        if "known_hosts" in str(exc):  # RejectPolicy: the server offered a key type we have not pinned
            raise HostKeyRefused(f"host key of {target.host}:{target.port} is not the pinned one") from exc
        raise
    except BaseException:
        client.close()
        raise
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(KEEPALIVE_SECONDS)
    return client


class SshExecutor:
    def __init__(self, connect: ConnectionFactory = pinned_connection, *, output_cap: int = 16_384,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._connect = connect
        self.output_cap = output_cap
        self._clock = clock

    @staticmethod
    def command_line(argv: Sequence[str]) -> str:
        return " ".join(shlex.quote(arg) for arg in argv)

    def run(self, target: SshTarget, argv: Sequence[str], timeout: float = 60.0) -> Outcome:
        command = self.command_line(argv)
        try:
            client = self._connect(target)
        except HostKeyRefused as exc:
            return Outcome(StepStatus.FAILED, detail=str(exc), security_event=True)
        except paramiko.AuthenticationException:
            return Outcome(StepStatus.FAILED, detail=f"SSH key refused by {target.host}:{target.port}")
        except (paramiko.SSHException, OSError) as exc:
            # Nothing was sent: the command certainly did not run.
            return Outcome(StepStatus.FAILED, detail=f"SSH connection failed ({type(exc).__name__})")
        try:
            return self._exec(client, command, timeout)
        finally:
            client.close()

    def _exec(self, client: paramiko.SSHClient, command: str, timeout: float) -> Outcome:
        deadline = self._clock() + timeout
        out: list[bytes] = []
        err: list[bytes] = []
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            return Outcome(StepStatus.FAILED, detail="SSH connection closed before the command was sent")
        watchdog = Watchdog(transport, timeout + WATCHDOG_GRACE)
        try:
            channel = transport.open_session(timeout=timeout)
            channel.settimeout(0.2)
            channel.exec_command(command)
            while True:
                _drain(channel, out, err)
                if channel.exit_status_ready():
                    _drain(channel, out, err)
                    code = channel.recv_exit_status()
                    stdout, stderr = self._text(out), self._text(err)
                    status = StepStatus.SUCCEEDED if code == 0 else StepStatus.FAILED
                    return Outcome(status, stdout=stdout, stderr=stderr, exit_code=code)
                if self._clock() >= deadline or watchdog.fired:
                    channel.close()
                    return Outcome(StepStatus.UNKNOWN, stdout=self._text(out), stderr=self._text(err),
                                   detail=f"no exit status within {timeout:g}s; the command may still run")
                time.sleep(0.02)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if watchdog.fired:
                return Outcome(StepStatus.UNKNOWN, stdout=self._text(out), stderr=self._text(err),
                               detail=f"the server gave no answer within {timeout:g}s; connection closed; "
                                      "the command may have run")
            return Outcome(StepStatus.UNKNOWN, stdout=self._text(out), stderr=self._text(err),
                           detail=f"SSH session broke ({type(exc).__name__}); the command may have run")
        finally:
            watchdog.cancel()

    def _text(self, chunks: list[bytes]) -> str:
        return cap_output(b"".join(chunks).decode("utf-8", "replace"), self.output_cap)


class Watchdog:
    """Closes an SSH transport ``seconds`` from now unless cancelled: closing it wakes any call blocked on it
    (paramiko's ``exec_command``, ``recv_exit_status`` and channel opens wait on events with no timeout)."""

    def __init__(self, transport: paramiko.Transport, seconds: float) -> None:
        self.fired = False
        self._transport = transport
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        self._transport.close()

    def cancel(self) -> None:
        self._timer.cancel()


def _drain(channel: paramiko.Channel, out: list[bytes], err: list[bytes]) -> None:
    try:
        while channel.recv_ready():
            out.append(channel.recv(65536))
        while channel.recv_stderr_ready():
            err.append(channel.recv_stderr(65536))
    except TimeoutError:
        pass
    except socket.timeout:  # noqa: UP041 - paramiko raises the socket alias on older Pythons
        pass
