"""The control endpoint of a running lab: a unix socket ``control.sock`` in the lab directory (mode 0600).

One JSON object per line each way: ``{"fault": "crash_service", "args": {"vmid": "101"}}`` ->
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. ``{"fault": "status"}`` describes the lab.
Faults run in a worker thread because they wait on the lab's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pdn_ops.lab.lab import Lab

SOCKET_NAME = "control.sock"
MAX_LINE = 64 * 1024


class ControlServer:
    def __init__(self, lab: Lab) -> None:
        self._lab = lab
        self.path = lab.workdir / SOCKET_NAME
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_LINE)
        self.path.chmod(0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _status(self) -> dict[str, Any]:
        lab = self._lab
        guests = {}
        for vmid, guest in lab.guests.items():
            vm = lab.pve.vm(vmid)
            guests[str(vmid)] = {"address": guest.address, "vm_status": vm.status if vm else None,
                                 "sshd_pid": guest.sshd_pid, "site_running": guest.site_running,
                                 "sites": guest.site_urls}
        return {**lab.summary(), "token_secret": "***", "guests": guests}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                name = str(request["fault"])
                args = {str(k): v for k, v in dict(request.get("args") or {}).items()}
            except (ValueError, KeyError, TypeError):
                answer: dict[str, Any] = {"ok": False, "error": "expected one JSON object: {fault, args}"}
            else:
                if name == "status":
                    answer = {"ok": True, "result": self._status()}
                else:
                    from pdn_ops.lab.errors import LabError

                    try:
                        result = await asyncio.get_running_loop().run_in_executor(
                            None, self._lab.faults.apply, name, args)
                        answer = {"ok": True, "result": result}
                    except (ValueError, TypeError, KeyError, LabError) as exc:
                        answer = {"ok": False, "error": str(exc)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def refuse_if_running(workdir: Path) -> None:
    """Two labs in one directory would overwrite each other's keys and inventory."""
    from pdn_ops.lab.errors import LabError

    path = Path(workdir) / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return
    raise LabError(f"a lab is already running in {workdir} (its control socket answers)")


def send(workdir: Path, fault: str, args: dict[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """Ask the lab running in ``workdir`` to apply a fault (or ``status``); returns its answer."""
    path = Path(workdir) / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise ConnectionError(f"no lab answers on {path} ({exc.strerror}); is `pdn-ops lab up` running?") \
                from exc
        sock.sendall(json.dumps({"fault": fault, "args": args or {}}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data or b"{}")
    return answer
