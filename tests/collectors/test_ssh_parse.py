"""Parsing recorded guest output (Debian 12 formats) and building the fixed command batch."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

import pytest

from collectors.ssh import parse
from collectors.ssh.collector import build_batch
from pdn_ops.core.errors import ConfigError
from pdn_ops.health.observations import FailureClass, Mount

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
M = "@@pdn-ops:0badc0de@@"

# Recorded on a Debian 12 host (df -P, free -b, /proc files) and a systemd guest (systemctl).
RECORDED = f"""{M} df
Filesystem              1024-blocks     Used Available Capacity Mounted on
devtmpfs                   12334432        0  12334432       0% /dev
tmpfs                      24683656     1052  24682604       1% /dev/shm
/dev/vda                  264212084 27438916  78951996      26% /
/dev/vdb1                  10485760 10380902    104858      99% /srv/data files
{M} free
               total        used        free      shared  buff/cache   available
Mem:     25276063744  1317105664 22066995200    87855104  2298138624 23958958080
Swap:              0           0           0
{M} loadavg
2.02 2.74 1.90 5/182 27254
{M} uptime
1220.08 1253.16
{M} units
active
failed
inactive
{M} failed
php8.2-fpm.service loaded failed failed The PHP 8.2 FastCGI Process Manager
backup.timer       loaded failed failed Nightly backup
"""


def test_recorded_debian_output_becomes_an_observation():
    obs = parse.observe("pve-a", 101, NOW, RECORDED, M, ["nginx", "php8.2-fpm", "redis-server"])
    assert obs.ok and obs.failure is None and obs.at == NOW
    assert [(m.mount, m.size_bytes, m.used_bytes, m.avail_bytes) for m in obs.mounts] == [
        ("/", 264212084 * 1024, 27438916 * 1024, 78951996 * 1024),
        ("/srv/data files", 10485760 * 1024, 10380902 * 1024, 104858 * 1024),
    ]
    assert obs.mounts[1].used_ratio == pytest.approx(0.99, abs=0.001)
    assert (obs.mem_total_bytes, obs.mem_available_bytes) == (25276063744, 23958958080)
    assert (obs.load1, obs.load5, obs.load15) == (2.02, 2.74, 1.90)
    assert obs.uptime_s == 1220.08
    assert obs.services == {"nginx": "active", "php8.2-fpm": "failed", "redis-server": "inactive"}
    assert obs.failed_units == ("php8.2-fpm.service", "backup.timer")


def test_byte_sized_df_header_is_understood():
    text = "Filesystem     1B-blocks    Used Available Capacity Mounted on\n/dev/sda1 1000 250 750 25% /\n"
    assert parse.parse_df(text) == (Mount("/", 1000, 250, 750),)


def test_missing_sections_leave_fields_unknown_but_the_check_succeeds():
    text = f"{M} df\nFilesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 100 50 50 50% /\n" \
           f"{M} free\nbash: line 1: free: command not found\n{M} units\n"
    obs = parse.observe("pve-a", 101, NOW, text, M, ["nginx"])
    assert obs.ok
    assert obs.mem_total_bytes is None and obs.load1 is None and obs.uptime_s is None
    assert obs.services == {"nginx": "unknown"}


def test_answer_without_any_reading_is_a_protocol_failure():
    obs = parse.observe("pve-a", 101, NOW, "This account is currently not available.\n", M, [])
    assert (obs.ok, obs.failure) == (False, FailureClass.PROTOCOL)


def test_output_pretending_to_be_a_section_without_the_nonce_is_ignored():
    text = RECORDED.replace(f"{M} failed\n", f"{M} failed\n@@pdn-ops:guess@@ df\n")
    obs = parse.observe("pve-a", 101, NOW, text, M, [])
    assert len(obs.mounts) == 2


def test_batch_quotes_units_and_uses_only_fixed_commands():
    line = build_batch(["nginx", "php8.2-fpm.service", "getty@tty1.service"], M)
    tokens = shlex.split(line.replace(";", " ; "))
    assert "getty@tty1.service" in tokens
    programs = {cmd.split()[0] for cmd in line.split("; ")}
    assert programs == {"echo", "df", "free", "cat", "systemctl"}
    assert "is-active" in line and "'" + M + " units'" in line


@pytest.mark.parametrize("unit", ["nginx; rm -rf /", "$(reboot)", "-H", "a b", "x\n"])
def test_batch_refuses_anything_that_is_not_a_unit_name(unit):
    with pytest.raises(ConfigError):
        build_batch([unit], M)
