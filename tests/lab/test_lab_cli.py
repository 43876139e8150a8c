"""`pdn-ops lab up|fault|status` as a user runs them, and the demo (`make run`) starting the lab beside the service."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from pdn_ops.app.cli import main
from pdn_ops.core.inventory import load_inventory
from tests.lab_fixtures import require_lab
from tests.support import free_port, port_open

PDN_OPS = str(Path(sys.executable).with_name("pdn-ops"))


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise


def _sshd_pids(directory: Path) -> list[int]:
    pids = []
    for pidfile in directory.glob("guests/*/sshd.pid"):
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, 0)
            pids.append(pid)
        except (ValueError, ProcessLookupError, FileNotFoundError):
            continue
    return pids


def test_lab_up_json_first_line_faults_and_clean_stop(tmp_path):
    require_lab()
    directory = tmp_path / "lab"
    env = {**os.environ, "PDN_OPS_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen([PDN_OPS, "lab", "up", "--vms", "2", "--sites", "1", "--time-scale", "0.02", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert set(first) == {"api_url", "token_id", "token_secret", "fingerprint", "inventory"}
        inventory = load_inventory(Path(first["inventory"]))
        assert inventory.clusters[0].api_url == first["api_url"]
        site = inventory.sites[0].url
        host = first["api_url"].removeprefix("https://").split(":")[0]
        assert urllib.request.urlopen(site, timeout=5).status == 200
        result = CliRunner().invoke(main, ["lab", "fault", "crash_service", "vmid=101"], env=env)
        assert result.exit_code == 0, result.output
        assert not port_open(site.split("/")[2].split(":")[0], 80)
        result = CliRunner().invoke(main, ["lab", "fault", "--dir", str(directory), "no_such_fault"])
        assert result.exit_code == 1 and "unknown fault" in result.output
        result = CliRunner().invoke(main, ["lab", "fault", "take_snapshot", "vmid=102", "name=before"], env=env)
        assert result.exit_code == 0 and "(before)" in result.output, result.output
        result = CliRunner().invoke(main, ["lab", "fault", "ship_bad_update", "vmid=102", "version=2.0"], env=env)
        assert result.exit_code == 0 and "(2.0)" in result.output, result.output
        result = CliRunner().invoke(main, ["lab", "fault", "take_snapshot", "vmid=102", "name=no way"], env=env)
        assert result.exit_code == 1 and "invalid configuration ID" in result.output
        result = CliRunner().invoke(main, ["lab", "status", "--dir", str(directory)])
        status = json.loads(result.output)
        assert status["token_secret"] == "***" and set(status["guests"]) == {"101", "102"}
        pids = _sshd_pids(directory)
        assert len(pids) == 2
    finally:
        code = _stop(proc)
        if proc.stdout:
            proc.stdout.close()
    assert code == 0
    assert _sshd_pids(directory) == []
    assert not port_open(host, int(first["api_url"].rsplit(":", 1)[1]))


def test_fault_arguments_are_checked_before_anything_is_sent(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["lab", "fault", "--list"])
    assert result.exit_code == 0 and "crash_service" in result.output and "ssh_hang" in result.output
    result = runner.invoke(main, ["lab", "fault", "--dir", str(tmp_path), "crash_service", "101"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output
    result = runner.invoke(main, ["lab", "fault", "--dir", str(tmp_path), "crash_service", "vmid=101"])
    assert result.exit_code == 1 and "is `pdn-ops lab up` running?" in result.output


def test_demo_serves_the_lab_inventory_and_stops_the_lab(tmp_path):
    require_lab()
    port = free_port()
    # PDN_OPS_LISTEN is honoured by `demo` as by `serve` (the README documents it for both).
    env = {**os.environ, "PDN_OPS_DATA_DIR": str(tmp_path), "PDN_OPS_LISTEN": f"127.0.0.1:{port}"}
    env.pop("PDN_OPS_INVENTORY", None)
    env.pop("PDN_OPS_LOG_LEVEL", None)
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([PDN_OPS, "demo"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port, timeout=0.2):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the demo did not listen"
            time.sleep(0.1)
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=10) as panel:  # mounted: log in first
            assert panel.status == 200 and panel.url.endswith("/login?next=/lab")
        inventory = load_inventory(tmp_path / "lab" / "inventory.yaml")
        assert {vm.vmid for vm in inventory.vms} == {101, 102, 103, 104}
        assert len(_sshd_pids(tmp_path / "lab")) == 4
        # The address and the demo accounts are the last lines, printed once the server answers; libraries'
        # INFO lines stay out of the console.
        while "engineer" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        printed = [line for line in log.read_text().splitlines() if line.strip()]
        banner = printed.index(next(line for line in printed if line.startswith("pdn-ops demo: ")))
        assert printed[banner].startswith(f"pdn-ops demo: http://127.0.0.1:{port}/"), printed
        # A warning logged by a job once the demo runs may follow them; what the demo itself printed ends there.
        said = [line for line in printed if not re.match(r"\d{4}-\d{2}-\d{2} ", line)]
        assert said[-1].split()[0] in {"admin-disdik", "head-disdik", "admin-dinkes", "head-dinkes", "supervisor",
                                       "engineer"} or "demo accounts" in said[-2], printed
        assert not [line for line in printed if " INFO apscheduler" in line or " INFO uvicorn" in line], printed
    finally:
        _stop(proc, signal.SIGINT)
    assert _sshd_pids(tmp_path / "lab") == []
    assert "lab: Proxmox API https://" in log.read_text()


def test_a_killed_lab_leaves_no_sshd_behind(tmp_path):
    require_lab()
    directory = tmp_path / "lab"
    proc = subprocess.Popen([PDN_OPS, "lab", "up", "--vms", "2", "--sites", "0", "--dir", str(directory), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        json.loads(proc.stdout.readline())
        assert len(_sshd_pids(directory)) == 2
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
    deadline = time.monotonic() + 10
    while _sshd_pids(directory):
        assert time.monotonic() < deadline, "sshd outlived its lab"
        time.sleep(0.05)
