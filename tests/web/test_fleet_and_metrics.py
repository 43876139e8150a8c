"""The engineers' fleet pages, the fleet API and /metrics over a recorded world."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from pdn_ops.accounts.auth import Authenticator
from pdn_ops.accounts.model import Principal, Role
from pdn_ops.app.factory import create_app
from pdn_ops.app.runtime import build_runtime
from pdn_ops.core.db import migrate
from pdn_ops.core.db.tables import SiteRow, VmRow
from pdn_ops.core.settings import load_settings
from tests.health_world import SITE_B, record_world, world_app
from tests.support import missing

ENGINEER = Principal(user_id=1, username="eng", role=Role.ENGINEER, opd_id=None)
OPD_ADMIN = Principal(user_id=2, username="admin-dinkes", role=Role.OPD_ADMIN, opd_id=1)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    with world_app(tmp_path_factory.mktemp("fleet"), record_world) as app:
        yield app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    app.state.runtime.accounts.authenticate = lambda request: ENGINEER
    # A Prometheus on the same host: /metrics serves loopback clients when no metrics token is configured.
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        yield c
    app.state.runtime.accounts.authenticate = Authenticator(app.state.runtime.sessions)


def ids(app: FastAPI) -> dict[str, int]:
    with app.state.runtime.sessions() as session:
        vms = {f"vm{v.vmid}": v.id for v in session.scalars(select(VmRow))}
        sites = {s.url: s.id for s in session.scalars(select(SiteRow))}
    return {**vms, **sites}


def test_engineer_sees_every_opd_with_live_state_and_the_root_cause(client: TestClient, app: FastAPI) -> None:
    page = client.get("/fleet")
    assert page.status_code == 200 and '<html lang="id">' in page.text
    for text in ("Armada VM dan situs", "Dinas Kesehatan", "Dinas Pendidikan", "Badan Pengelolaan Keuangan",
                 "Insiden terbuka", "VM tidak berjalan", "Disebabkan oleh vm:pdn1/102", "akar masalah",
                 "Waktu respons 42 ms", "Layanan yang dideklarasikan tidak aktif"):
        assert text in page.text, text
    english = client.get("/fleet?lang=en")
    assert "Caused by vm:pdn1/102: VM is not running" in english.text and "Open incidents" in english.text


def test_detail_pages_show_state_checks_events_and_related_targets(client: TestClient, app: FastAPI) -> None:
    known = ids(app)
    vm = client.get(f"/fleet/vm/{known['vm101']}?lang=en")
    assert vm.status_code == 200
    for text in ("web-dinkes", "Guest (SSH)", "Disk /: 95% used", "Recent checks", "Recent state changes",
                 "Portal Dinkes"):
        assert text in vm.text, text
    site = client.get(f"/fleet/site/{known[SITE_B]}?lang=id")
    assert site.status_code == 200
    assert "Disebabkan oleh vm:pdn1/102" in site.text and "Koneksi ditolak" in site.text
    assert f'href="/fleet/vm/{known["vm102"]}"' in site.text
    assert client.get("/fleet/vm/99999").status_code == 404
    assert client.get("/fleet/site/99999").status_code == 404


def test_a_running_vms_page_charts_its_cpu_memory_and_disk_over_a_week(client: TestClient, app: FastAPI) -> None:
    known = ids(app)
    page = client.get(f"/fleet/vm/{known['vm101']}?lang=en").text
    assert "Resource use over the last 7 days" in page
    # 12.5 % of its cores, 768 MiB of 2 GiB, 10 of 32 GiB: the last hour's means, one line each
    for caption in ("CPU, now 12", "Memory, now 38", "Disk, now 31"):
        assert caption in page, caption
    assert page.count('class="chart line"') == 3
    stopped = client.get(f"/fleet/vm/{known['vm102']}?lang=id").text  # never sampled while running
    assert "Pemakaian sumber daya" not in stopped


def test_fleet_pages_are_for_staff_only(app: FastAPI) -> None:
    with TestClient(app, follow_redirects=False) as anonymous:
        page = anonymous.get("/fleet")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        assert anonymous.get("/api/v1/fleet").status_code == 401
    app.state.runtime.accounts.authenticate = lambda request: OPD_ADMIN
    try:
        with TestClient(app) as opd:
            assert opd.get("/fleet").status_code == 404
            assert opd.get(f"/fleet/vm/{ids(app)['vm101']}").status_code == 404
            assert opd.get("/api/v1/fleet").status_code == 404
    finally:
        app.state.runtime.accounts.authenticate = Authenticator(app.state.runtime.sessions)


def test_fleet_api_lists_opds_targets_and_incidents(client: TestClient) -> None:
    data = client.get("/api/v1/fleet").json()
    assert [o["code"] for o in data["opds"]] == ["bpkad", "dinkes", "disdik"]
    disdik = data["opds"][2]
    assert disdik["vms"][0]["health"]["state"] == "down" and disdik["vms"][0]["health"]["reason"] == "vm_stopped"
    assert disdik["sites"][0]["health"]["cause_key"] == "vm:pdn1/102"
    roots = sorted((i["kind"], i["label"]) for i in data["incidents"] if i["root"])
    assert roots == [("guest", "web-dinkes"), ("vm", "simpeg-disdik")]
    assert data["counts"]["down"] == 2 and data["counts"]["up"] == 3
    assert "token" not in str(data).lower()


def scrape(client: TestClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return response.text


def test_metrics_expose_states_values_and_collectors_with_bounded_labels(client: TestClient, app: FastAPI) -> None:
    known = ids(app)
    samples = {}
    for family in text_string_to_metric_families(scrape(client)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    site_b = (("opd", "disdik"), ("site_id", str(known[SITE_B])))
    site_b_cause = tuple(sorted((*site_b, ("cause", "vm:pdn1/102"))))
    assert samples[("pdn_site_up", site_b)] == 0 and samples[("pdn_site_dependency_down", site_b_cause)] == 1
    vm102 = (("cluster", "pdn1"), ("opd", "disdik"), ("vm_id", str(known["vm102"])), ("vmid", "102"))
    vm102_cause = tuple(sorted((*vm102, ("cause", ""))))
    assert samples[("pdn_vm_up", vm102)] == 0 and samples[("pdn_vm_dependency_down", vm102_cause)] == 0
    assert samples[("pdn_vm_memory_total_bytes", vm102)] == 2**31
    guest = (("mount", "/"), ("opd", "dinkes"), ("vm_id", str(known["vm101"])))
    assert samples[("pdn_guest_filesystem_used_ratio", guest)] == 0.95
    assert samples[("pdn_site_response_seconds", (("opd", "dinkes"), ("site_id", str(known["http://127.0.10.1/"]))))
                   ] == 0.042
    assert samples[("pdn_collector_errors_total", (("collector", "sites:60s"), ("kind", "sites")))] == 2
    assert samples[("pdn_collector_last_run_success", (("collector", "sites:60s"), ("kind", "sites")))] == 0
    assert samples[("pdn_node_up", (("cluster", "pdn1"), ("node", "pve1")))] == 1
    label_names = {name for (_metric, labels) in samples for name, _ in labels}
    assert label_names <= {"kind", "target", "opd", "state", "site_id", "vm_id", "cluster", "vmid", "node",
                           "mount", "collector", "level", "channel", "status",
                           # a failure class, and a cause that is a target key (vm:cluster/vmid, node:cluster/node)
                           "failure", "cause"}, (
        "bounded labels only: no URLs, names or user text")
    assert not any("127.0.10" in value for (_m, labels) in samples for _n, value in labels)


def test_promtool_accepts_the_scrape(client: TestClient) -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(promtool).exists():
        missing("promtool", "install the Debian package prometheus")
    result = subprocess.run([promtool, "check", "metrics"], input=scrape(client), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", "no lint warnings either"


def test_every_state_reason_failure_and_kind_has_text_in_both_languages() -> None:
    from pdn_ops.core.i18n import catalogue
    from pdn_ops.health.model import Kind, Reason, State
    from pdn_ops.health.observations import FailureClass

    keys = set(catalogue())
    for prefix, values in (("health.state", State), ("health.reason", Reason), ("collectors.failure", FailureClass),
                           ("health.kind", Kind)):
        for value in values:
            assert f"{prefix}.{value.value}" in keys, f"{prefix}.{value.value}"


def test_a_scrape_reads_only_the_current_state_never_history(client: TestClient, app: FastAPI) -> None:
    from sqlalchemy import event

    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    engine = app.state.runtime.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        scrape(client)  # may reuse the snapshot in memory
        app.state.runtime.health.snapshot.refresh()  # what a job does after writing
        scrape(client)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    tables = {name for statement in statements for name in re.findall(r"FROM (\w+)", statement)}
    assert {"health_targets", "job_status"} <= tables, "the refresh read the current state"
    # Other areas' collectors count rows too: open complaints, the outbox, and (a known limit)
    # the remediation journal, whose run totals are aggregated per scrape instead of kept as counters.
    assert tables <= {"health_targets", "opds", "job_status", "complaints", "notify_outbox",
                      "notify_inbound", "remediation_runs"}, tables
    assert not {"health_checks", "health_events", "health_rollups", "job_runs"} & tables


def test_metrics_refuse_remote_clients_without_the_token(app: FastAPI) -> None:
    app.state.runtime.accounts.authenticate = lambda request: OPD_ADMIN
    try:
        with TestClient(app, client=("192.0.2.10", 50000)) as remote:  # TEST-NET address: never contacted
            response = remote.get("/metrics")
        assert response.status_code == 401 and "pdn_" not in response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
    finally:
        app.state.runtime.accounts.authenticate = Authenticator(app.state.runtime.sessions)


def test_metrics_token_is_required_when_configured(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    migrate.upgrade(url)
    settings = load_settings(demo=True, database_url=url, run_scheduler=False, metrics_token="s3cret-scrape-token")
    app = create_app(build_runtime(settings))
    try:
        with TestClient(app, client=("127.0.0.1", 50000)) as local:
            assert local.get("/metrics").status_code == 401, "with a token, loopback alone is not enough"
            wrong = local.get("/metrics", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and "s3cret" not in wrong.text
            ok = local.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"})
            assert ok.status_code == 200 and "s3cret" not in ok.text
    finally:
        app.state.runtime.engine.dispose()


def test_the_dashboards_open_incident_count_is_the_fleet_pages(client: TestClient) -> None:
    incidents = client.get("/api/v1/fleet").json()["incidents"]
    roots = [i for i in incidents if i["root"]]
    page = client.get("/fleet").text
    shown = int(page.split('data-open-incidents="', 1)[1].split('"', 1)[0])
    per_opd = {}
    for family in text_string_to_metric_families(scrape(client)):
        for sample in family.samples:
            if sample.name == "pdn_open_incidents":
                per_opd[sample.labels["opd"]] = sample.value
    assert roots and shown == len(roots) == sum(per_opd.values())
    assert set(per_opd) <= {"", "bpkad", "dinkes", "disdik"}
