"""One guest per check: one connection, one batch of fixed read-only commands, one observation.

The commands are fixed; the only inventory values in the line are unit names, which the inventory has
validated as systemd unit names and which are quoted with shlex.quote all the same. The batch is a single
command line (one round trip, one guest process), its sections separated by marker lines with a fresh nonce,
so a command's output can never pass itself off as another section.
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from collectors.ssh import parse
from collectors.ssh.client import SshClient
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
    ) -> None:
        self.client = client
        self.cluster = cluster
        self.vmid = vmid
        self.services = tuple(services)
        self._clock = clock

    @classmethod
    def from_inventory(cls, vm: Vm, *, base_dir: Path | None = None) -> SshCollector:
        if vm.ssh is None:
            raise ConfigError(f"VM {vm.key} has no ssh section")
        return cls(SshClient.for_ssh(vm.ssh, base_dir=base_dir), cluster=vm.cluster, vmid=vm.vmid,
                   services=vm.services)

    def collect(self) -> SshObservation:
        """One check; failures (host key, auth, timeout, ...) become ``ok=False`` observations."""
        now = self._clock()
        marker = f"@@pdn-ops:{secrets.token_hex(4)}@@"
        try:
            with self.client:
                result = self.client.run(build_batch(self.services, marker))
        except CollectorError as exc:
            return SshObservation(cluster=self.cluster, vmid=self.vmid, at=now, ok=False,
                                  failure=FailureClass(exc.failure), detail=str(exc))
        return parse.observe(self.cluster, self.vmid, now, result.stdout, marker, self.services,
                             truncated=result.truncated)
