"""Helpers for playbook tests against fakepve: a token-authenticated executor and an in-memory journal."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pdn_ops.runs.model import Outcome, Policy, StepStatus
from remediation import registry, runner
from remediation.executors.proxmox import ProxmoxExecutor, connect
from remediation.executors.ssh import SshExecutor
from remediation.playbooks.base import RunContext, Step, StepRecord, VmTarget

TOKEN_ID = "pdn-ops@pve!remediate"
TOKEN_SECRET = "6f1c1a9e-0000-4000-8000-remediation"


def executor(pve: Any, cafile: str, timeout: float = 5.0,
             cls: type[ProxmoxExecutor] = ProxmoxExecutor) -> ProxmoxExecutor:
    pve.apitokens[TOKEN_ID] = TOKEN_SECRET
    parts = urlsplit(pve.url)
    api = connect(f"https://{parts.hostname}:{parts.port}", token_id=TOKEN_ID, token_secret=TOKEN_SECRET,
                  verify=cafile, timeout=timeout)
    return cls(api, task_timeout=10, poll_interval=0.05)


class MemoryJournal:
    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}

    def records(self) -> list[StepRecord]:
        return [StepRecord(p, r["name"], r["state"], r.get("upid"), r["intent_at"], r.get("facts", {}))
                for p, r in sorted(self.rows.items())]

    def intent(self, position: int, step: Step, text: str) -> None:
        self.rows[position] = {"name": step.name, "state": StepStatus.RUNNING.value, "intent": text,
                               "intent_at": datetime.now(UTC)}

    def upid(self, position: int, node: str, upid: str) -> None:
        self.rows[position]["upid"] = upid

    def result(self, position: int, outcome: Outcome, facts: dict[str, Any], *, reconciled: bool = False) -> None:
        self.rows[position].update(state=outcome.status.value, facts=facts, detail=outcome.detail,
                                   outcome=outcome, reconciled=reconciled)
        if outcome.upid:
            self.rows[position]["upid"] = outcome.upid

    def states(self) -> dict[str, str]:
        return {r["name"]: r["state"] for r in self.rows.values()}


def run_playbook(name: str, target: VmTarget, params: Mapping[str, object], *, proxmox: ProxmoxExecutor | None = None,
                 ssh: SshExecutor | None = None, policy: Policy | None = None,
                 journal: MemoryJournal | None = None, run_id: int = 1) -> tuple[runner.RunResult, MemoryJournal]:
    book = registry.playbook(name)
    policy = policy or Policy()
    clean = book.validate(params, target, policy)
    ctx = RunContext(run_id=run_id, target=target, params=clean, policy=policy, proxmox=proxmox, ssh=ssh,
                     ssh_timeout=5)
    journal = journal or MemoryJournal()
    return runner.run(book, ctx, journal), journal


def tasks(pve: Any, vmid: int) -> list[str]:
    return [t["type"] for t in pve.tasklog if t["id"] == str(vmid)]
