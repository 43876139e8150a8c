"""The SSH executor against a real sshd: argv quoting, pinned host keys, timeouts with partial output."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from pdn_ops.runs.model import Outcome, StepStatus
from remediation.executors.ssh import SshExecutor, SshTarget
from tests.hung_ssh import HungSshServer, write_client_key
from tests.remediation.sshguest import SshGuest


def test_command_runs_and_returns_its_outcome(ssh_guest: SshGuest, ssh_target: SshTarget) -> None:
    outcome = SshExecutor().run(ssh_target, ["systemctl", "is-active", "php8.2-fpm.service"], timeout=10)
    assert (outcome.status, outcome.stdout.strip(), outcome.exit_code) == (StepStatus.SUCCEEDED, "active", 0)
    failed = SshExecutor().run(ssh_target, ["systemctl", "is-active", "nginx.service"], timeout=10)
    assert (failed.status, failed.exit_code) == (StepStatus.FAILED, 3)


def test_arguments_reach_the_guest_quoted(ssh_guest: SshGuest, ssh_target: SshTarget) -> None:
    SshExecutor().run(ssh_target, ["systemctl", "restart", "x; reboot $(id) `id`"], timeout=10)
    assert ssh_guest.commands() == ["systemctl restart 'x; reboot $(id) `id`'"]


def test_changed_host_key_is_refused_as_a_security_event(ssh_guest: SshGuest, ssh_target: SshTarget) -> None:
    wrong = dataclasses.replace(ssh_target, host_key=ssh_guest.other_host_key)
    outcome = SshExecutor().run(wrong, ["systemctl", "restart", "nginx.service"], timeout=10)
    assert outcome.status is StepStatus.FAILED and outcome.security_event
    assert "pinned" in outcome.detail
    assert ssh_guest.commands() == []


def test_server_that_hangs_after_auth_gives_unknown(ssh_guest: SshGuest, ssh_target: SshTarget) -> None:
    ssh_guest.hang()
    outcome = SshExecutor().run(ssh_target, ["systemctl", "restart", "nginx.service"], timeout=1.0)
    assert outcome.status is StepStatus.UNKNOWN
    assert "may still run" in outcome.detail


def test_unreachable_guest_fails_without_running_anything(ssh_target: SshTarget) -> None:
    from tests.support import free_port

    closed = dataclasses.replace(ssh_target, port=free_port())
    outcome = SshExecutor().run(closed, ["systemctl", "restart", "nginx.service"], timeout=5)
    assert outcome.status is StepStatus.FAILED and not outcome.security_event


def test_server_that_never_answers_the_exec_request_gives_unknown_at_the_deadline(tmp_path: Path) -> None:
    """Authenticated, session opened, then the exec request is never answered: paramiko's exec_command alone
    would wait for ever. The deadline closes the connection; whether the command ran is unknown."""
    with HungSshServer() as server:
        target = SshTarget(host=server.host, port=server.port, user="root", host_key=server.host_key,
                           key_path=write_client_key(tmp_path / "client_key"), timeout=5)
        outcomes: list[Outcome] = []
        caller = threading.Thread(target=lambda: outcomes.append(
            SshExecutor().run(target, ["systemctl", "restart", "nginx.service"], timeout=1.0)), daemon=True)
        caller.start()
        caller.join(30)  # a bound for the test only: without the fix the call never returns
        assert not caller.is_alive(), "the executor is stuck on the unanswered exec request"
        assert server.exec_asked.is_set()
    [outcome] = outcomes
    assert outcome.status is StepStatus.UNKNOWN and not outcome.security_event
    assert "no answer within 1s" in outcome.detail, outcome.detail
