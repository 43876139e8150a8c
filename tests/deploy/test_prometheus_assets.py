"""Shipped Prometheus rules and Grafana dashboard, checked with promtool and a real Prometheus scraping the app."""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pdn_ops.app.factory import create_app
from pdn_ops.app.runtime import build_runtime
from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import transaction
from pdn_ops.core.metric_names import PREFIX, SERIES
from pdn_ops.core.settings import load_settings
from tests.health_world import Served, record_safety_net, record_world
from tests.support import free_port, require_binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "pdn-ops-fleet.json"
WAIT_S = 60.0


def promtool() -> str:
    return require_binary("promtool", "/usr/bin/promtool")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


def test_rules_and_config_pass_promtool_checks() -> None:
    assert RULES, "alert rules are shipped"
    result = run(promtool(), "check", "rules", *map(str, RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run(promtool(), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests() -> None:
    tests = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
    assert tests
    result = run(promtool(), "test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_required_alert_exists() -> None:
    names = {rule["alert"] for path in RULES for group in yaml.safe_load(path.read_text())["groups"]
             for rule in group["rules"]}
    assert {"PdnSiteDown", "PdnVmDown", "PdnTlsCertificate", "PdnGuestDiskAlmostFull", "PdnCollectorFailing",
            "PdnComplaintSlaAtRisk"} <= names


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def concrete(expr: str) -> str:
    """A panel query as Grafana would send it with "All" OPDs selected."""
    return expr.replace("$opd", ".*").replace("$__rate_interval", "1m")


def test_dashboard_is_well_formed_with_an_opd_variable_and_provisioning() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "pdn-ops-fleet" and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["opd"]["definition"] == "label_values(pdn_target_state, opd)"
    assert variables["opd"]["includeAll"] and variables["opd"]["allValue"] == ".*"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    titles = " ".join(p["title"] for p in panels()).lower()
    for topic in ("sites down", "vm state", "response time", "tls", "complaints", "sla", "backup age per vm",
                  "storage usage", "days until full", "node memory"):
        assert topic in titles, topic
    for panel in panels():
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    provisioning = DEPLOY / "grafana" / "provisioning"
    providers = yaml.safe_load((provisioning / "dashboards" / "pdn-ops.yml").read_text())["providers"]
    assert providers[0]["type"] == "file"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert sources[0]["type"] == "prometheus"


def test_systemd_unit_runs_migrations_then_the_service() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(DEPLOY / "systemd" / "pdn-ops.service")
    service = unit["Service"]
    assert service["ExecStartPre"].endswith("pdn-ops db upgrade")
    assert service["ExecStart"].endswith("pdn-ops serve")
    assert service["NoNewPrivileges"] == "yes" and unit["Install"]["WantedBy"] == "multi-user.target"


# --- a real Prometheus scraping the app --------------------------------------------------------------------------


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    binary = require_binary("prometheus", "/usr/bin/prometheus")
    tmp = tmp_path_factory.mktemp("prom")
    url = f"sqlite:///{tmp / 'app.sqlite3'}"
    migrate.upgrade(url)
    app = create_app(build_runtime(load_settings(demo=True, database_url=url, run_scheduler=False)))
    with transaction(app.state.runtime.sessions) as session:
        record_world(session)
        record_safety_net(session)
    app_port, prom_port = free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in RULES],
        "scrape_configs": [{"job_name": "pdn-ops", "static_configs": [{"targets": [f"127.0.0.1:{app_port}"]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    with Served(app, app_port), (tmp / "prometheus.log").open("w") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=log, stderr=subprocess.STDOUT)
        try:
            yield f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{prom_port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            app.state.runtime.engine.dispose()


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    data = get_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert data["status"] == "success", (expr, data)
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


def eventually(prom: str, expr: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            result = query(prom, expr)
        except OSError:  # Prometheus still starting
            result = []
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


def test_promtool_accepts_a_real_scrape(prometheus: tuple[str, str]) -> None:
    app, _prom = prometheus
    with urllib.request.urlopen(f"{app}/metrics", timeout=10) as response:
        body = response.read().decode()
    assert "pdn_site_up" in body
    result = subprocess.run([promtool(), "check", "metrics"], input=body, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_scraped_series_is_in_the_one_table_with_its_type(prometheus: tuple[str, str]) -> None:
    app, _prom = prometheus
    with urllib.request.urlopen(f"{app}/metrics", timeout=10) as response:
        body = response.read().decode()
    declared = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.MULTILINE))
    assert declared, "the scrape declares its families"
    for exposed, kind in declared.items():
        name = exposed.removesuffix("_total") if kind == "counter" else exposed
        assert name.startswith(PREFIX), name
        assert name in SERIES, f"{name} is exported but not in pdn_ops.core.metric_names"
        assert SERIES[name].kind == kind, (name, kind)
    assert {"pdn_site_up", "pdn_vm_up", "pdn_collector_runs_total", "pdn_complaints_open",
            "pdn_notifications"} <= set(declared)


def test_rules_and_dashboard_use_only_names_from_the_one_table() -> None:
    texts = [path.read_text() for path in RULES] + [DASHBOARD.read_text()]
    used = {name for text in texts for name in re.findall(r"\b(pdn_[a-z0-9_]+)", text)} - {"pdn_ops"}  # a path
    # a counter is queried with the _total suffix, a histogram with _bucket/_sum/_count
    known = set(SERIES) | {f"{n}_total" for n, s in SERIES.items() if s.kind == "counter"} | {
        f"{n}{suffix}" for n, s in SERIES.items() if s.kind == "histogram" for suffix in ("_bucket", "_sum", "_count")}
    assert used and used <= known, sorted(used - known)


def test_every_dashboard_query_parses_and_returns_data_from_a_real_prometheus(prometheus: tuple[str, str]) -> None:
    _app, prom = prometheus
    assert eventually(prom, 'up{job="pdn-ops"} == 1'), "Prometheus scraped the app"
    empty = []
    for panel in panels():
        for target in panel["targets"]:
            expr = concrete(target["expr"])
            if not eventually(prom, expr):
                empty.append(f'{panel["title"]}: {expr}')
    assert not empty, empty
    states = {r["metric"]["state"] for r in query(prom, 'pdn_target_state{kind=~"vm|site"}')}
    assert states == {"up", "down"}


def test_the_alert_goes_to_the_root_cause_not_to_its_symptoms(prometheus: tuple[str, str]) -> None:
    _app, prom = prometheus
    deadline = time.monotonic() + WAIT_S
    names: set[str] = set()
    while time.monotonic() < deadline:
        alerts = get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
        names = {a["labels"]["alertname"] for a in alerts}
        if "PdnVmDown" in names and "PdnGuestDiskAlmostFull" in names:
            break
        time.sleep(0.25)
    assert {"PdnVmDown", "PdnGuestDiskAlmostFull", "PdnCollectorFailing"} <= names, names
    assert "PdnSiteDown" not in names, "the site down because its VM is stopped does not page on its own"
    vm_alerts = [a for a in alerts if a["labels"]["alertname"] == "PdnVmDown"]
    assert [a["labels"]["vmid"] for a in vm_alerts] == ["102"]
    assert all(re.fullmatch(r"pending|firing", a["state"]) for a in alerts)
