"""The shipped Alertmanager configuration: amtool accepts it, and it routes by severity and OPD."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support import require_binary

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def amtool(*argv: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("amtool", "/usr/bin/amtool")
    return subprocess.run([binary, *argv], capture_output=True, text=True, timeout=60, check=False)


def test_amtool_accepts_the_configuration() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def route(**labels: str) -> str:
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}", *(f"{k}={v}" for k, v in labels.items()))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_routes_by_severity_and_opd() -> None:
    assert route(alertname="PdnSiteDown", opd="dinkes", severity="critical") == "pdn-ops-critical"
    assert route(alertname="PdnTlsCertificate", opd="dinkes", severity="warning") == "pdn-ops-warning"
    assert route(alertname="PdnNodeDown", cluster="pdn1", node="pve1", severity="critical") == "pdn-ops-critical"
    assert route(alertname="PdnCollectorFailing", cluster="pdn1", severity="warning") == "pdn-ops-warning"
    tree = yaml.safe_load(CONFIG.read_text())["route"]
    assert tree["group_by"] == ["opd", "alertname"], "an OPD's alerts group per OPD"
    assert all(r.get("group_by", ["cluster", "alertname"]) != [] for r in tree["routes"])


def test_inhibitions_mirror_the_root_cause_model() -> None:
    rules = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    sources = {m for rule in rules for m in rule["source_matchers"]}
    targets = " ".join(m for rule in rules for m in rule["target_matchers"])
    assert 'alertname="PdnProxmoxApiDown"' in sources
    assert "PdnSiteDown" not in targets and "PdnVmDown" not in targets, (
        "a blind witness never silences an observed failure")
    every_receiver = yaml.safe_load(CONFIG.read_text())["receivers"]
    for receiver in every_receiver:
        hook = receiver["webhook_configs"][0]
        assert hook["url"].endswith("/webhooks/alertmanager") and hook["send_resolved"] is True
        assert hook["http_config"]["authorization"]["type"] == "Bearer"
