"""One guest per check: one batch of fixed read-only commands over one connection, one observation.

The connection is made for the check, or (given ``KeptConnections``) kept open for the next checks: then a check
costs one exec on an open connection instead of a TCP handshake, a key exchange and a public-key authentication.
A kept connection that broke since (the guest restarted sshd or rebooted) is not evidence against the guest: the
check is made once more on a fresh connection, unless the failure was a timeout (that is the check's answer, and a
retry would double its bound) or the host key or client key (never retried).

The commands are fixed; the only inventory values in the line are unit names, which the inventory has
validated as systemd unit names and which are quoted with shlex.quote all the same. The batch is a single
command line (one round trip, one guest process), its sections separated by marker lines with a fresh nonce,
so a command's output can never pass itself off as another section.
"""

from __future__ import annotations

import secrets
import shlex
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from collectors.ssh import parse
from collectors.ssh.client import CommandResult, KeptConnections, SshClient
from pdn_ops.core.errors import CollectorError, ConfigError
from pdn_ops.core.inventory import UNIT_NAME, Vm
from pdn_ops.health.observations import FailureClass, SshObservation

# (section name, argv); ``units`` is added per guest from its declared services.
FIXED_COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("df", ("df", "-P")),
    ("free", ("free", "-b")),
    ("loadavg", ("cat", "/proc/loadavg")),
    ("uptime", ("cat", "/proc/uptime")),
    ("failed", ("systemctl", "--failed", "--no-legend", "--plain")),
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def build_batch(services: Sequence[str], marker: str) -> str:
    """The single command line for one check: ``echo MARKER df; df -P; echo MARKER free; ...``."""
    for unit in services:
        if not UNIT_NAME.match(unit):
            raise ConfigError(f"{unit!r} is not a valid systemd unit name")
    commands = list(FIXED_COMMANDS)
    if services:
        commands.insert(4, ("units", ("systemctl", "is-active", *services)))
    parts = []
    for name, argv in commands:
        parts.append(shlex.join(["echo", f"{marker} {name}"]))
        parts.append(shlex.join(argv))
    return "; ".join(parts)


class SshCollector:
    kind = "ssh"

    def __init__(
        self,
        client: SshClient,
        *,
        cluster: str,
        vmid: int,
        services: Sequence[str] = (),
        clock: Callable[[], datetime] = _utcnow,
        kept: KeptConnections | None = None,
    ) -> None:
        self.client = client
        self.kept = kept
        self._lock = threading.Lock()  # the regular job and the fast lane may check the same guest
        self.cluster = cluster
        self.vmid = vmid
        self.services = tuple(services)
        self._clock = clock

    @staticmethod
    def kept_connections(*, limit: int, max_age: float, max_uses: int) -> KeptConnections:
        """The bound shared by the collectors of one process on the connections they keep open."""
        return KeptConnections(limit=limit, max_age=max_age, max_uses=max_uses)

    @classmethod
    def from_inventory(cls, vm: Vm, *, base_dir: Path | None = None,
                       kept: KeptConnections | None = None) -> SshCollector:
        if vm.ssh is None:
            raise ConfigError(f"VM {vm.key} has no ssh section")
        return cls(SshClient.for_ssh(vm.ssh, base_dir=base_dir), cluster=vm.cluster, vmid=vm.vmid,
                   services=vm.services, kept=kept)

    def collect(self) -> SshObservation:
        """One check; failures (host key, auth, timeout, ...) become ``ok=False`` observations."""
        now = self._clock()
        marker = f"@@pdn-ops:{secrets.token_hex(4)}@@"
        try:
            with self._lock:
                result = self._run(build_batch(self.services, marker))
        except CollectorError as exc:
            return SshObservation(cluster=self.cluster, vmid=self.vmid, at=now, ok=False,
                                  failure=FailureClass(exc.failure), detail=str(exc))
        return parse.observe(self.cluster, self.vmid, now, result.stdout, marker, self.services,
                             truncated=result.truncated)

    def _run(self, batch: str) -> CommandResult:
        if self.kept is None:
            with self.client:
                return self.client.run(batch)
        reused = self.client.is_open(self.kept.max_age, self.kept.max_uses)
        try:
            if not reused:
                self.client.close()
                self.client.connect()
            try:
                result = self.client.run(batch)
            except CollectorError as exc:
                self.client.close()
                if not reused or exc.failure in _NOT_RETRIED:
                    raise
                self.client.connect()  # the kept connection broke: a fresh one decides
                result = self.client.run(batch)
        except BaseException:
            self.client.close()
            self.kept.discard(self.client)
            raise
        if not self.kept.admit(self.client):
            self.client.close()  # over the bound: this guest is checked with a connection per check
        return result


_NOT_RETRIED = frozenset({FailureClass.TIMEOUT.value, FailureClass.HOST_KEY.value, FailureClass.AUTH.value})
