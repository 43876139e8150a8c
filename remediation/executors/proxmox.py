"""Proxmox VE actions over the API, handed a proxmoxer ``ProxmoxAPI`` object.

Every call returns an ``Outcome``; nothing raises to the orchestrator. A call that starts a task hands the UPID to
``on_upid`` the moment the API returns it (the journal stores it before anything else happens), then waits for the
task to stop and checks ``exitstatus == "OK"``: a stopped task is not a success by itself.

Error mapping: a 4xx answer means the request was refused and nothing happened (failed); a 5xx answer, a timeout or
a dropped connection before the UPID arrived means we cannot know (unknown): ``find_task`` then looks for the task
in the node's task list since the intent was written.

The node's task list (``GET /nodes/{node}/tasks``) shows only *finished* tasks unless asked otherwise (``source``
defaults to ``archive``): a task still running after a crash is found only with ``source=all``, so ``find_task``
always asks for it, or a running task would read as "never started" and the step would run twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException

from pdn_ops.runs.model import Outcome, StepStatus, cap_output


@dataclass(frozen=True, slots=True)
class ApiCall:
    method: str  # GET | POST | PUT | DELETE
    path: str  # "/nodes/pve1/qemu/101/status/start"
    params: dict[str, str | int] = field(default_factory=dict)

    def describe(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.method} /api2/json{self.path}" + (f" {args}" if args else "")


def connect(api_url: str, *, token_id: str, token_secret: str, verify: str | bool, timeout: float) -> ProxmoxAPI:
    """A token-authenticated client; ``verify`` is a CA file path (TLS is always verified outside the lab)."""
    from urllib.parse import urlsplit

    parts = urlsplit(api_url)
    user, _, token_name = token_id.partition("!")
    return ProxmoxAPI(parts.hostname, port=parts.port or 8006, user=user, token_name=token_name,
                      token_value=token_secret, verify_ssl=verify, timeout=timeout)


# Seconds the node's clock may be behind ours: a task started right after the intent row was written can show a
# start time a little before it. Tasks inside this margin are taken only when none started after the intent.
CLOCK_SKEW = 30


def upid_node(upid: str) -> str:
    parts = upid.split(":")
    return parts[1] if len(parts) >= 9 else ""


def upid_user(upid: str) -> str:
    """The user (``user@realm`` or ``user@realm!tokenid``) a UPID says started the task."""
    parts = upid.split(":")
    return parts[7] if len(parts) >= 9 else ""


def api_identity(api: Any) -> str | None:
    """Who this client is to Proxmox, as UPIDs name it: ``user@realm!tokenid`` for a token, else ``user@realm``.

    proxmoxer keeps the credentials on its session's auth object; None when they cannot be read (then the task
    list is not filtered by user)."""
    session = getattr(api, "_store", {}).get("session")
    auth = getattr(session, "auth", None)
    user = getattr(auth, "username", None)
    if not isinstance(user, str) or not user:
        return None
    token = getattr(auth, "token_name", None)
    return f"{user}!{token}" if isinstance(token, str) and token else user


class ProxmoxExecutor:
    def __init__(self, api: ProxmoxAPI, *, task_timeout: float = 300.0, poll_interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 identity: str | None = None) -> None:
        self._api = api
        self.identity = identity if identity is not None else api_identity(api)
        self.task_timeout = task_timeout
        self.poll_interval = poll_interval
        self._clock = clock
        self._sleep = sleep

    def close(self) -> None:
        """Close the HTTP session (proxmoxer keeps it in its store; it has no public close)."""
        session = getattr(self._api, "_store", {}).get("session")
        if session is not None:
            session.close()

    def _send(self, call: ApiCall) -> Any:
        resource = self._api(call.path.strip("/"))
        verb = {"GET": resource.get, "POST": resource.post, "PUT": resource.put, "DELETE": resource.delete}
        return verb[call.method](**call.params)

    def read(self, call: ApiCall) -> Outcome:
        """A call without side effects; safe to repeat."""
        try:
            return Outcome(StepStatus.SUCCEEDED, data=self._send(call))
        except ResourceException as exc:
            return Outcome(StepStatus.FAILED, exit_code=exc.status_code, detail=_reason(exc))
        except AuthenticationError:
            return Outcome(StepStatus.FAILED, detail="the Proxmox API refused the credentials")
        except requests.RequestException as exc:
            return Outcome(StepStatus.UNKNOWN, detail=f"Proxmox API unreachable ({type(exc).__name__})")

    def start(self, call: ApiCall, on_upid: Callable[[str], None], *, timeout: float | None = None,
              synchronous: bool = False) -> Outcome:
        """Send a call that starts a task, hand over the UPID at once, then wait for the task's end.

        ``timeout``: how long to wait for the task (default ``task_timeout``). ``synchronous``: the call may also
        answer without a task (resize before PVE 8) and is done when it answered. Otherwise an answer without a
        UPID proves nothing, not even that the call was refused: the outcome is unknown, and the orchestrator
        looks for the task in the node's task list.
        """
        try:
            data = self._send(call)
        except ResourceException as exc:
            status = StepStatus.UNKNOWN if exc.status_code >= 500 else StepStatus.FAILED
            return Outcome(status, exit_code=exc.status_code, detail=f"no UPID: {_reason(exc)}")
        except AuthenticationError:
            return Outcome(StepStatus.FAILED, detail="the Proxmox API refused the credentials")
        except requests.RequestException as exc:
            return Outcome(StepStatus.UNKNOWN, detail=f"no UPID: {type(exc).__name__} before the answer arrived")
        if not isinstance(data, str) or not data.startswith("UPID:"):
            if synchronous:
                return Outcome(StepStatus.SUCCEEDED, data=data, detail="synchronous call completed")
            # The HTTP status (200) as exit code: the server did answer, so no task in its list means none ran.
            return Outcome(StepStatus.UNKNOWN, data=data, exit_code=200,
                           detail=f"Proxmox answered without a task ID ({str(data)[:80]!r})")
        on_upid(data)
        return self.wait(data, timeout)

    def wait(self, upid: str, timeout: float | None = None) -> Outcome:
        node = upid_node(upid)
        deadline = self._clock() + (self.task_timeout if timeout is None else timeout)
        last = "no answer yet"
        while True:
            status = self.read(ApiCall("GET", f"/nodes/{node}/tasks/{upid}/status"))
            if status.ok and isinstance(status.data, dict):
                if status.data.get("status") == "stopped":
                    exitstatus = str(status.data.get("exitstatus", ""))
                    log = self._log_tail(node, upid)
                    result = StepStatus.SUCCEEDED if exitstatus == "OK" else StepStatus.FAILED
                    return Outcome(result, upid=upid, stdout=log, detail=f"task ended: {exitstatus}",
                                   exit_code=0 if result is StepStatus.SUCCEEDED else 1)
                last = "task still running"
            else:
                last = status.detail
            if self._clock() >= deadline:
                return Outcome(StepStatus.UNKNOWN, upid=upid, detail=f"gave up waiting for the task: {last}")
            self._sleep(self.poll_interval)

    def _log_tail(self, node: str, upid: str) -> str:
        log = self.read(ApiCall("GET", f"/nodes/{node}/tasks/{upid}/log", {"start": 0, "limit": 500}))
        if not log.ok or not isinstance(log.data, list):
            return ""
        return cap_output("\n".join(str(line.get("t", "")) for line in log.data if isinstance(line, dict)))

    def find_task(self, node: str, task_type: str, vmid: int, since: float, exclude: set[str]) -> str | None:
        """The UPID of a ``task_type`` task for ``vmid`` that this client started at or after ``since`` (epoch).

        ``since`` comes from the intent row, written before the call was sent. The list is asked with
        ``source=all`` (running tasks too: the default lists finished ones only), from ``since - CLOCK_SKEW``, of
        this type and VM, and kept to tasks whose UPID names this client's user (a person's task on the same VM is
        not ours). A task started after the intent is preferred to one inside the skew margin; UPIDs this run
        already journaled are excluded. Raises LookupError when the list cannot be read.
        """
        params: dict[str, str | int] = {"source": "all", "vmid": vmid, "typefilter": task_type,
                                        "since": max(0, int(since) - CLOCK_SKEW), "limit": 500}
        if self.identity:
            params["userfilter"] = self.identity.partition("!")[0]
        listing = self.read(ApiCall("GET", f"/nodes/{node}/tasks", params))
        if not listing.ok or not isinstance(listing.data, list):
            raise LookupError(listing.detail or "the node's task list is unavailable")
        found = []
        for task in listing.data:
            if not isinstance(task, dict) or not isinstance(task.get("upid"), str):
                continue
            upid = task["upid"]
            if (task.get("type") != task_type or str(task.get("id")) != str(vmid) or upid in exclude
                    or (self.identity and upid_user(upid) != self.identity)):
                continue
            started = int(task.get("starttime", 0))
            if started >= int(since) - CLOCK_SKEW:
                found.append((started < int(since), started if started >= int(since) else -started, upid))
        # After the intent first, earliest first; then inside the margin, closest to the intent first.
        found.sort()
        return found[0][2] if found else None


def _reason(exc: ResourceException) -> str:
    # proxmoxer carries the PVE message (the HTTP reason phrase) in ``content``; never any credentials.
    return f"HTTP {exc.status_code}: {str(exc.content)[:300]}"
