"""prometheus-pve-exporter (PyPI), as a subprocess with its DEFAULT collectors, scraping the lab."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, machine_clock_env, missing, port_open


def _exporter_binary() -> str:
    local = Path(sys.executable).with_name("pve_exporter")
    found = str(local) if local.exists() else shutil.which("pve_exporter")
    if not found:
        missing("prometheus-pve-exporter", "pip install prometheus-pve-exporter (in the test extra)")
    return found


@pytest.fixture(scope="module")
def exporter(lab, tmp_path_factory) -> Iterator[str]:
    binary = _exporter_binary()
    user, token = lab.token_id.split("!")
    config = tmp_path_factory.mktemp("exporter") / "pve.yml"
    config.write_text(f"default:\n  user: {user}\n  token_name: {token}\n  token_value: {lab.token_secret}\n"
                      f"  verify_ssl: {lab.ca_file}\n", encoding="utf-8")
    config.chmod(0o600)
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(config.parent), **machine_clock_env()}
    proc = subprocess.Popen([binary, "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port, timeout=0.2):
            assert proc.poll() is None, "pve_exporter exited"
            assert time.monotonic() < deadline, "pve_exporter did not listen"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _scrape(exporter: str, lab) -> str:
    target = lab.api_url.removeprefix("https://")
    with urllib.request.urlopen(f"{exporter}/pve?target={target}&module=default&cluster=1&node=1",
                                timeout=30) as resp:
        assert resp.status == 200
        return resp.read().decode()


def test_default_collectors_scrape_every_lab_guest(exporter, lab):
    body = _scrape(exporter, lab)
    for vmid in (101, 102, 103):
        guest = f'id="qemu/{vmid}"'
        assert f"pve_up{{{guest}}} 1.0" in body
        assert any(line.startswith("pve_guest_info{") and guest in line for line in body.splitlines())
        assert any(line.startswith(f"pve_cpu_usage_ratio{{{guest}}}") for line in body.splitlines())
        assert any(line.startswith(f"pve_memory_usage_bytes{{{guest}}}") for line in body.splitlines())
    assert 'pve_up{id="cluster/lab"} 1.0' in body
    assert 'pve_node_info{id="node/pve1"' in body
    assert "pve_onboot_status{" in body and "pve_subscription_status{" in body


def test_exporter_sees_a_stopped_vm_as_down(exporter, lab):
    from tests.lab_fixtures import lab_proxmox

    prox = lab_proxmox(lab)
    from proxmoxer.tools import Tasks

    Tasks.blocking_status(prox, prox.nodes("pve1").qemu(103).status.stop.post(), polling_interval=0.02)
    try:
        assert 'pve_up{id="qemu/103"} 0.0' in _scrape(exporter, lab)
    finally:
        Tasks.blocking_status(prox, prox.nodes("pve1").qemu(103).status.start.post(), polling_interval=0.02)
