"""``pdn-ops remediation worker`` on its own closes runs as ``serve``'s worker does: confirmed from the checks, or
ineffective with the engineers alerted; a second worker finds nothing left to decide (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.db.tables import AuditRow
from pdn_ops.core.inventory import Inventory
from pdn_ops.notify.tables import NotifyOutboxRow
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.tables import RemediationRunRow
from tests.remediation.test_auto_rules import engineer, observe, world  # noqa: F401  (fixtures)


def worker_once(url: str, inventory_path: Path, data_dir: Path, name: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDN_OPS_")}
    env.update(PDN_OPS_DATA_DIR=str(data_dir), PDN_OPS_PUBLIC_URL="https://pdn.example.go.id")
    done = subprocess.run([sys.executable, "-c", "from pdn_ops.app.cli import main; main()", "remediation", "worker",
                           "--once", "--database-url", url, "--inventory", str(inventory_path), "--worker-id", name],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_the_standalone_worker_confirms_or_gives_up_and_alerts_once(sessions: Any,
                                                                    world: Inventory,  # noqa: F811
                                                                    fresh_db_url: str, tmp_path: Path) -> None:
    engineer(sessions, "eng-a", phone="+6281234567001")
    # VM 101's run ended an hour ago: past the closure deadline (15 minutes). VM 102's a minute ago: the checks
    # below come before its deadline, and only checks before the deadline count.
    finished = {101: datetime.now(UTC) - timedelta(hours=1), 102: datetime.now(UTC) - timedelta(minutes=1)}
    ids = {}
    with transaction(sessions) as session:
        for vmid in (101, 102):
            run = svc.request_run(session, world, playbook="restart_vm", target=f"pve/{vmid}", params={},
                                  requester=svc.Requester("policy-engine"), idempotency_key=f"s{vmid}",
                                  policy=rem.Policy(), trigger="rule:0")
            run.state = run.outcome = "succeeded"
            run.started_at = run.finished_at = finished[vmid]
            ids[vmid] = run.id
    for _ in range(3):  # VM 102 runs again; VM 101 (and its site) stays down
        observe(sessions, datetime.now(UTC), vm="stopped")
    inventory_path = tmp_path / "inventory.yaml"
    out = worker_once(fresh_db_url, inventory_path, tmp_path / "data", "alpha")
    assert out.splitlines() == ["alpha: executed 0 run(s)",
                                f"alpha: closed run #{ids[101]} ineffective, run #{ids[102]} confirmed"]
    assert worker_once(fresh_db_url, inventory_path, tmp_path / "data", "beta") == "beta: executed 0 run(s)"
    with sessions() as session:
        states = {r.id: (r.state, r.closure) for r in session.scalars(select(RemediationRunRow))}
        outbox = list(session.scalars(select(NotifyOutboxRow)))
        decided = list(session.scalars(select(AuditRow.action).where(AuditRow.action.in_(
            ["remediation.confirmed", "remediation.ineffective", "remediation.alerted"]))))
    assert states == {ids[101]: ("ineffective", "ineffective"), ids[102]: ("succeeded", "confirmed")}
    assert [(o.event, o.address, o.params["link"]) for o in outbox] == [
        ("remediation_failed", "+6281234567001", f"https://pdn.example.go.id/remediation/runs/{ids[101]}")]
    assert sorted(decided) == ["remediation.alerted", "remediation.confirmed", "remediation.ineffective"]
