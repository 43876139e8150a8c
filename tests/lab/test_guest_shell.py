"""The guest shell on its own (no sshd): parsing without a shell, Debian output formats, state changes."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from pdn_ops.lab import guest_shell
from pdn_ops.lab.guest_state import GiB, StateFile, initial_state


@pytest.fixture
def state(tmp_path: Path) -> StateFile:
    file = StateFile(tmp_path / "state.json")
    file.create(initial_state("web-dinkes", ["nginx.service", "php8.2-fpm.service"], 32 * GiB, 2 * GiB))
    with file.update() as data:
        data["power"] = "running"
        data["booted_at"] = 1_700_000_000.0
    return file


def run(state: StateFile, line: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", line)
    out, err = io.StringIO(), io.StringIO()
    status = guest_shell.main([str(state.path)], stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_shell_metacharacters_are_never_interpreted(state, monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    status, out, _ = run(state, f"echo $(touch {marker}) `id`", monkeypatch)
    assert status == 0 and not marker.exists()
    assert out == f"$(touch {marker}) `id`\n"
    status, _, err = run(state, f"cat /etc/hostname | tee {marker}", monkeypatch)
    assert status == 2 and "not emulated" in err and not marker.exists()
    status, _, err = run(state, f"true > {marker}", monkeypatch)
    assert status == 2 and not marker.exists()


def test_command_lists_follow_exit_statuses(state, monkeypatch):
    assert run(state, "false && echo no; echo yes", monkeypatch)[1] == "yes\n"
    assert run(state, "false || echo fallback", monkeypatch)[1] == "fallback\n"
    assert run(state, "systemctl is-active nginx.service && echo up", monkeypatch)[1] == "active\nup\n"


def test_systemctl_states_and_exit_codes(state, monkeypatch):
    assert run(state, "systemctl is-active nginx", monkeypatch)[:2] == (0, "active\n")
    assert run(state, "systemctl is-active nosuch.service", monkeypatch)[:2] == (3, "inactive\n")
    status, _, err = run(state, "systemctl restart nosuch.service", monkeypatch)
    assert status == 5 and "Unit nosuch.service not found." in err
    assert run(state, "systemctl stop nginx.service", monkeypatch)[0] == 0
    status, out, _ = run(state, "systemctl status nginx.service", monkeypatch)
    assert status == 3 and "Active: inactive (dead)" in out
    assert run(state, "systemctl start nginx.service", monkeypatch)[0] == 0
    status, out, _ = run(state, "systemctl status nginx.service", monkeypatch)
    assert status == 0 and "Active: active (running) since" in out
    assert run(state, "systemctl status nosuch.service", monkeypatch)[0] == 4
    assert run(state, "systemctl --failed --no-legend", monkeypatch)[1] == ""
    assert state.read()["history"][-1]["argv"] == ["systemctl", "start", "nginx.service"]


def test_df_free_uptime_and_proc_formats(state, monkeypatch):
    _, out, _ = run(state, "df -P", monkeypatch)
    head, root = out.splitlines()[:2]
    assert head.split()[:2] == ["Filesystem", "1024-blocks"]
    fields = root.split()
    assert fields[0] == "/dev/sda1" and int(fields[1]) == 32 * 1024**2 and fields[5] == "/"
    assert int(fields[2]) + int(fields[3]) == int(fields[1])
    _, out, _ = run(state, "df -B1 /", monkeypatch)
    assert int(out.splitlines()[1].split()[1]) == 32 * GiB
    _, out, _ = run(state, "free -b", monkeypatch)
    mem = out.splitlines()[1].split()
    assert mem[0] == "Mem:" and int(mem[1]) == 2 * GiB and len(mem) == 7
    _, out, _ = run(state, "uptime", monkeypatch)
    assert "up" in out and out.rstrip().endswith("load average: 0.08, 0.05, 0.01")
    _, out, _ = run(state, "cat /proc/loadavg /proc/uptime", monkeypatch)
    assert out.splitlines()[0] == "0.08 0.05 0.01 1/123 4567"
    assert float(out.splitlines()[1].split()[0]) > 0
    assert run(state, "cat /etc/shadow", monkeypatch)[0] == 1


def test_journal_vacuum_frees_space(state, monkeypatch):
    before = state.read()["journal_bytes"]
    status, _, err = run(state, "journalctl --vacuum-size=50M", monkeypatch)
    assert status == 0 and "freed" in err
    assert state.read()["journal_bytes"] == 50 * 1024**2 < before
    assert run(state, "journalctl --vacuum-size=lots", monkeypatch)[0] == 1


def test_interactive_sessions_are_refused(state, monkeypatch):
    status, _, err = run(state, "", monkeypatch)
    assert status == 1 and "commands only" in err


def test_runs_as_a_module(state):
    proc = subprocess.run([sys.executable, "-m", "pdn_ops.lab.guest_shell", str(state.path)],
                          env={"SSH_ORIGINAL_COMMAND": "hostname", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30, check=False)
    assert (proc.returncode, proc.stdout) == (0, "web-dinkes\n")


def test_a_missing_state_file_is_reported_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", "uptime")
    err = io.StringIO()
    assert guest_shell.main([str(tmp_path / "gone.json")], stdout=io.StringIO(), stderr=err) == 255
    assert "state is gone" in err.getvalue()


def test_df_with_paths_shows_only_their_filesystems(state, monkeypatch):
    _, out, _ = run(state, "df -P -k /", monkeypatch)
    lines = out.splitlines()
    assert len(lines) == 2 and lines[-1].endswith(" /")
    _, out, _ = run(state, "df -P /var/log /boot/efi/EFI /run/lock", monkeypatch)
    assert [line.split()[-1] for line in out.splitlines()[1:]] == ["/", "/boot/efi", "/run"]
