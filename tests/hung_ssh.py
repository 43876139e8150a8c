"""An SSH server on loopback that authenticates, opens the session channel, then never answers the exec request.

OpenSSH's sshd cannot be made to do this: it answers the exec request as soon as it has forked the command, so a
hanging command (the lab's ``ssh_hang`` fault, ``SshGuest.hang``) hangs *after* the client's ``exec_command``
returned. Here the server is paramiko's own ServerInterface: its ``check_channel_exec_request`` blocks until the
test ends, so the client's exec request waits for a reply that never comes, as with a stuck sshd or a server
whose session process wedged. Real sockets, a real SSH handshake and real key authentication.
"""

from __future__ import annotations

import io
import socket
import threading
from pathlib import Path
from types import TracebackType

import paramiko
from paramiko.common import AUTH_SUCCESSFUL, OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED, OPEN_SUCCEEDED

from tests.support import free_port


def _ed25519_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())


def write_client_key(path: Path) -> Path:
    """A fresh Ed25519 private key file (mode 600) for the client."""
    path.write_bytes(_ed25519_pem())
    path.chmod(0o600)
    return path


class _Hanging(paramiko.ServerInterface):
    def __init__(self, release: threading.Event, asked: threading.Event) -> None:
        self.release = release
        self.asked = asked

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return OPEN_SUCCEEDED if kind == "session" else OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.asked.set()
        self.release.wait()  # never answers while the test runs: the transport's thread is stuck here
        return False


class HungSshServer:
    """``with HungSshServer() as server:`` listens on ``server.host:server.port``; ``server.host_key`` is its
    public key as the inventory pins it (``ssh-ed25519 AAAA...``); ``server.exec_asked`` is set once a client's
    exec request arrived."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, free_port(host)
        self._key = paramiko.Ed25519Key.from_private_key(io.StringIO(_ed25519_pem().decode()))
        self.host_key = f"{self._key.get_name()} {self._key.get_base64()}"
        self.exec_asked = threading.Event()
        self._release = threading.Event()
        self._transports: list[paramiko.Transport] = []
        self._listener = socket.socket()
        self._listener.bind((self.host, self.port))
        self._listener.listen()
        self._listener.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept, name="hung-ssh", daemon=True)

    def __enter__(self) -> HungSshServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._release.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(self._key)
            self._transports.append(transport)
            try:
                transport.start_server(server=_Hanging(self._release, self.exec_asked))
            except (paramiko.SSHException, EOFError, OSError):
                transport.close()

    def close(self) -> None:
        self._release.set()
        self._thread.join(5)
        self._listener.close()
        for transport in self._transports:
            transport.close()
            transport.join(5)
