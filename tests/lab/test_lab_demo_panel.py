"""The demo's lab panel (`make run`): buttons queue faults that one thread applies to the running lab."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from pdn_ops.core.errors import NotFound
from pdn_ops.lab.demo_panel import LabDemoPanel


def _settled(panel: LabDemoPanel, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while (latest := panel.recent()[0]).state in ("queued", "running"):
        assert time.monotonic() < deadline, latest
        time.sleep(0.02)
    return latest.state


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_bad_update_is_shipped_after_a_snapshot_and_the_panel_shows_both(make_lab):
    lab = make_lab(vms=2, sites=1)
    panel = LabDemoPanel(lab)
    try:
        queued = panel.submit(101, "ship_bad_update")
        assert queued.state == "queued"
        assert _settled(panel) == "done", panel.recent()[0].detail
        snapshots = list(lab.pve.vm(101).snapshots)
        assert len(snapshots) == 1 and snapshots[0].startswith("before_update_"), "something to roll back to"
        assert _status(lab.guest(101).site_urls[0]) == 500
        vm = next(v for v in panel.vms() if v.vmid == 101)
        assert (vm.release, vm.snapshots, vm.target, vm.opd) == ("1.5.0", tuple(snapshots), "lab/101", "dinkes")
        panel.submit(102, "stop_vm")
        assert _settled(panel) == "done"
        lab.wait_guest(102, up=False)
        assert next(v for v in panel.vms() if v.vmid == 102).status == "stopped"
        panel.submit(102, "take_snapshot")
        assert _settled(panel) == "done" and [a.action for a in panel.recent()][:2] == ["take_snapshot", "stop_vm"]
        with pytest.raises(NotFound):
            panel.submit(101, "rm_rf")
        with pytest.raises(NotFound):
            panel.submit(199, "stop_vm")
    finally:
        panel.close()
