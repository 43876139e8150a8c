"""The complaint page, report and JSON timeline with linked remediation runs: staff see every detail and the run
page; an OPD user sees the work and its outcome in their language, and no internal detail (both engines).

The runs are journaled through the worker's own code (claim, DbJournal); only the outcome row is written here,
as the worker writes it (the real worker runs in tests/remediation/test_complaint_timeline.py).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import event, select

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import AuditRow, utcnow
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.model import Outcome, StepStatus
from pdn_ops.runs.tables import RemediationRunRow, RemediationStepRow
from pdn_ops.runs.worker import Clients, DbJournal, Worker, WorkerConfig
from remediation import registry
from remediation.executors.proxmox import ProxmoxExecutor
from tests.complaints.world import World, file_complaint

WORKER = "worker-host.internal:4242"
# Internal details the runs below carry; none may reach an OPD user's page, report or JSON.
INTERNAL = ("pve-node-7", "UPID", "guest-host.internal", "MARKER-OUT-7f3a", "/etc/secret-path", WORKER,
            "shutdown_timeout", "/remediation/runs/", "final state", "RAHASIA-NOTE", "/api2/json")


def no_proxmox(_cluster: str) -> ProxmoxExecutor:
    raise AssertionError("these runs are only claimed and journaled here: no Proxmox call")


def add_run(world: World, complaint_id: int, steps: int, outcome: str = "succeeded") -> int:
    """A restart_vm run for the complaint: requested, approved, claimed, ``steps`` steps journaled, finished."""
    ctx = world.ctx
    assert ctx.inventory is not None
    with transaction(ctx.sessions) as session:
        run = svc.request_run(session, ctx.inventory, playbook="restart_vm", target="pdn1/101",
                              params={"shutdown_timeout": 77}, requester=svc.Requester("engineer", opd="dinkes"),
                              idempotency_key=uuid.uuid4().hex, policy=rem.Policy(), complaint_id=complaint_id)
        svc.approve(session, run.id, engineer="supervisor")
        run_id = run.id
    worker = Worker(ctx.engine, ctx.sessions, ctx.inventory, Clients(proxmox=no_proxmox), WorkerConfig(worker_id=WORKER))
    try:
        assert worker.claim() == run_id
    finally:
        worker.close()
    journal = DbJournal(ctx.sessions, run_id)
    book = list(registry.playbook("restart_vm").steps({}))
    for position in range(steps):
        step = book[position % len(book)]
        journal.intent(position, step, f"pve: POST /api2/json/nodes/pve-node-7/qemu/101/status/{step.name}")
        journal.upid(position, "pve-node-7", f"UPID:pve-node-7:0000{position:04X}:00A1:6650F00D:qmstart:101:root@pam:")
        journal.result(position, Outcome(StepStatus(outcome if position == steps - 1 else "succeeded"),
                                         stdout="x" * 900 + "\nrestarted on guest-host.internal\nMARKER-OUT-7f3a",
                                         stderr="warning from /etc/secret-path",
                                         detail="VM 101 on pve-node-7 is running"), {})
    with transaction(ctx.sessions) as session:  # what Worker.execute writes when the runner returns
        row = session.get(RemediationRunRow, run_id)
        assert row is not None
        row.state = row.outcome = outcome
        row.summary = "restart VM: succeeded; graceful shutdown; final state running"
        row.finished_at = utcnow()
        session.add(AuditRow(actor=WORKER, action=f"remediation.{outcome}", subject=f"remediation_run:{run_id}",
                             detail=row.summary))
    return run_id


@pytest.fixture(scope="module")
def complaint(world: World) -> tuple[str, int]:
    admin = world.client("admin-dinkes")
    url = file_complaint(admin, f"vm:{world.vm['web-dinkes']}").headers["location"]
    complaint_id = int(url.rsplit("/", 1)[1])
    engineer = world.client("engineer")
    assert engineer.post(f"{url}/actions/verify").status_code == 303
    assert engineer.post(f"{url}/notes", data={"body": "catatan internal RAHASIA-NOTE"}).status_code == 303
    run_id = add_run(world, complaint_id, steps=3)
    return url, run_id


def test_staff_see_every_step_with_its_upid_output_and_the_run_page(world: World, complaint: tuple[str, int]) -> None:
    url, run_id = complaint
    engineer = world.client("engineer")
    page = engineer.get(url, params={"lang": "en"}).text
    for shown in ("remediation requested: Restart VM", "approved by engineer 1 of 1", "dry-run plan shown",
                  "step 3 (", "UPID:pve-node-7:00000002", "MARKER-OUT-7f3a", WORKER, "shutdown_timeout=77",
                  f'href="/remediation/runs/{run_id}"', "Restart VM: succeeded; awaiting the health checks",
                  "pve: POST /api2/json/nodes/pve-node-7/qemu/101/status/"):
        assert shown in page, shown
    entries = engineer.get(f"/api/v1{url}/timeline", headers={"Accept-Language": "en"}).json()
    results = [e for e in entries if e["action"] == "remediation.step_result"]
    assert [(e["step"], e["state"]) for e in results] == [(1, "succeeded"), (2, "succeeded"), (3, "succeeded")]
    assert all(e["run_url"] == f"/remediation/runs/{run_id}" and e["upid"].startswith("UPID:") for e in results)
    assert all(len(e["output"]) <= 300 and e["output"].startswith("…") and "MARKER-OUT-7f3a" in e["output"]
               and e["output"].endswith("warning from /etc/secret-path") for e in results), "the tail, capped"
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)


def test_an_opd_user_sees_the_work_and_its_outcome_but_no_internal_detail(world: World,
                                                                            complaint: tuple[str, int]) -> None:
    url, _run_id = complaint
    admin = world.client("admin-dinkes")
    page = admin.get(url).text
    assert "pemulihan diminta: Mulai ulang VM" in page and "disetujui teknisi ke-1 dari 1" in page
    assert "Mulai ulang VM: berhasil; menunggu pemeriksaan kesehatan" in page
    report = admin.get(f"{url}/report").text
    assert "Mulai ulang VM: berhasil" in report
    api = admin.get(f"/api/v1{url}/timeline", headers={"Accept-Language": "en"})
    assert api.status_code == 200
    entries = api.json()
    assert [e["action"] for e in entries if e["action"].startswith("remediation.")] == [
        "remediation.requested", "remediation.approved", "remediation.started", "remediation.succeeded"]
    assert "Restart VM: succeeded; awaiting the health checks" in [e["text"] for e in entries]
    assert all(e["run_id"] is None and e["upid"] is None and e["intent"] is None and e["output"] is None
               and not e["plan"] and not e["params"] for e in entries)
    note = next(e for e in entries if e["action"] == "complaint.note")
    assert note["detail"] == "", "work notes are Diskominfo's working papers"
    for body in (page, report, api.text):
        assert not [word for word in INTERNAL if word in body], [word for word in INTERNAL if word in body]


def test_the_page_costs_the_same_queries_with_one_short_run_or_many_long_ones(world: World) -> None:
    admin = world.client("admin-dinkes")
    urls = [file_complaint(admin, f"vm:{world.vm['web-dinkes']}").headers["location"] for _ in range(2)]
    add_run(world, int(urls[0].rsplit("/", 1)[1]), steps=2)
    for _ in range(3):
        add_run(world, int(urls[1].rsplit("/", 1)[1]), steps=40, outcome="failed")
    engineer = world.client("engineer")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    counts: dict[tuple[str, str], int] = {}
    event.listen(world.ctx.engine, "before_cursor_execute", count)
    try:
        for who, client in (("engineer", engineer), ("admin", admin)):
            for url in urls:
                for path in (url, f"/api/v1{url}/timeline"):
                    assert client.get(path).status_code == 200
                    statements.clear()
                    assert client.get(path).status_code == 200
                    counts[(who, path.replace(url, "{c}") + ("" if url == urls[0] else " (3 x 40 steps)"))] = \
                        len(statements)
    finally:
        event.remove(world.ctx.engine, "before_cursor_execute", count)
    for who in ("engineer", "admin"):
        for path in ("{c}", "/api/v1{c}/timeline"):
            assert counts[(who, path)] == counts[(who, path + " (3 x 40 steps)")], counts
    assert engineer.get(f"/api/v1{urls[1]}/timeline").json()[-1]["text"].endswith("teknisi menindaklanjuti")


def test_a_run_summary_is_worded_in_the_readers_language_on_every_page_and_only_for_staff(world: World) -> None:
    admin = world.client("admin-dinkes")
    url = file_complaint(admin, f"vm:{world.vm['web-dinkes']}").headers["location"]
    run_id = add_run(world, int(url.rsplit("/", 1)[1]), steps=2)
    with transaction(world.ctx.sessions) as session:  # what restart_vm's steps record (codes, no language)
        first = session.scalars(select(RemediationStepRow).where(RemediationStepRow.run_id == run_id,
                                                                 RemediationStepRow.position == 0)).one()
        first.facts = {**first.facts, "status": "running", "final_status": "running"}
    words = {"id": "berhasil; shutdown yang wajar; keadaan akhir running",
             "en": "succeeded; graceful shutdown; final state running"}
    stored = "restart VM: succeeded; graceful shutdown; final state running"  # the worker's English, for logs
    engineer = world.client("engineer")
    for lang, other in (("id", "en"), ("en", "id")):
        for path in (f"/remediation/runs/{run_id}", f"/remediation/runs/{run_id}/live", "/remediation", url,
                     f"{url}/report"):
            page = engineer.get(path, params={"lang": lang}).text
            assert words[lang] in page and words[other] not in page and stored not in page, (lang, path)
        entries = engineer.get(f"/api/v1{url}/timeline", headers={"Accept-Language": lang}).json()
        outcome = next(e for e in entries if e["action"] == "remediation.succeeded")
        assert (outcome["summary"], outcome["detail"]) == (words[lang], "")
    assert engineer.get(f"/api/v1/remediation/runs/{run_id}").json()["summary"] == stored
    for path in (url, f"{url}/report"):  # the summary names nodes and tasks: never for an OPD user
        assert not [w for w in words.values() if w in admin.get(path).text], path
    assert all(e["summary"] == "" for e in admin.get(f"/api/v1{url}/timeline").json())
