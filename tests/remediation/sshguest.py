"""A real OpenSSH sshd as a test guest, with a ForceCommand that emulates the few commands playbooks use."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.support import free_port, missing, port_open, require_binary

HERE = Path(__file__).resolve().parent


class SshGuest:
    def __init__(self, directory: Path, host: str = "127.0.0.1") -> None:
        sshd = require_binary("sshd", "/usr/sbin/sshd")
        keygen = require_binary("ssh-keygen", "/usr/bin/ssh-keygen")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        self.state = self.dir / "state"
        self.state.mkdir(exist_ok=True)
        self.host, self.port = host, free_port(host)
        self.client_key = self.dir / "client_key"
        for path in (self.dir / "host_key", self.dir / "other_host_key", self.client_key):
            if not path.exists():
                subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        (self.dir / "authorized_keys").write_text((self.dir / "client_key.pub").read_text())
        self.host_key = " ".join((self.dir / "host_key.pub").read_text().split()[:2])
        self.other_host_key = " ".join((self.dir / "other_host_key.pub").read_text().split()[:2])
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        config = self.dir / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {host}:{self.port}", f"HostKey {self.dir / 'host_key'}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}", f"PidFile {self.dir / 'sshd.pid'}",
            "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "StrictModes no",
            f"ForceCommand /usr/bin/python3 {HERE / 'guest_command.py'} {self.state}", "LogLevel ERROR", ""]))
        self.proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not port_open(host, self.port, 0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr and self.proc.poll() is not None else ""
                self.stop()
                missing("sshd", f"did not start: {err[:300]}")
            time.sleep(0.05)
        self.user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True,
                                                              check=True).stdout.strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()

    # -- guest state ------------------------------------------------------------------------------------------------

    def reset(self, units: dict[str, str] | None = None, used: int = 9_000_000, avail: int = 1_000_000,
              freeable: int = 3_000_000) -> None:
        (self.state / "units.json").write_text(json.dumps(units or {}))
        (self.state / "disk.json").write_text(json.dumps({"used": used, "avail": avail, "freeable": freeable}))
        (self.state / "commands.log").write_text("")
        (self.state / "hang").unlink(missing_ok=True)

    def hang(self, on: bool = True, match: str = "*") -> None:
        if on:
            (self.state / "hang").write_text(match)
        else:
            (self.state / "hang").unlink(missing_ok=True)

    def commands(self) -> list[str]:
        path = self.state / "commands.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def units(self) -> dict[str, str]:
        return dict(json.loads((self.state / "units.json").read_text()))

    def disk(self) -> dict[str, int]:
        return dict(json.loads((self.state / "disk.json").read_text()))
