"""A run linked to a complaint acts on that complaint's own VM of that complaint's OPD; an idempotency key names one
request. Service level, on SQLite and PostgreSQL: refused before anything is enqueued."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pdn_ops.accounts import service as accounts
from pdn_ops.complaints import service as complaints
from pdn_ops.complaints.service import ComplaintConfig, Draft
from pdn_ops.core.db.tables import SiteRow, VmRow
from pdn_ops.core.errors import Conflict, NotFound, PolicyRefused
from pdn_ops.core.inventory import Inventory, load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from pdn_ops.runs import model as rem
from pdn_ops.runs import service as svc
from pdn_ops.runs.messages import message_key
from pdn_ops.runs.tables import RemediationRunRow
from tests.complaints.world import ROOT, jpeg, principal_named

ENGINEER = svc.Requester("engineer")


def inventory_with_a_second_dinkes_vm(directory: Path) -> Inventory:
    """inventory.example.yaml (pdn1/101 web-dinkes with its site, pdn1/102 Disdik's, pdn1/103 BPKAD's) plus
    pdn1/104, another VM of Dinas Kesehatan."""
    document = yaml.safe_load((ROOT / "inventory.example.yaml").read_text())
    document["vms"].append({"cluster": "pdn1", "vmid": 104, "name": "arsip-dinkes", "opd": "dinkes"})
    path = directory / "inventory.yaml"
    path.write_text(yaml.safe_dump(document))
    return load_inventory(path)


class World:
    def __init__(self, session: Session, directory: Path) -> None:
        self.inventory = inventory_with_a_second_dinkes_vm(directory)
        sync_inventory(session, self.inventory)
        accounts.ensure_demo_accounts(session)
        self.config = ComplaintConfig(data_dir=directory)
        self.session = session
        self.vm = {v.vmid: v.id for v in session.scalars(select(VmRow))}
        self.site = {s.url: s.id for s in session.scalars(select(SiteRow))}

    def complaint(self, asset: str, opd: str = "dinkes") -> int:
        draft = Draft(asset=asset, category="site_down", description="Layanan tidak bisa dibuka sejak pagi")
        return complaints.submit(self.session, principal_named(self.session, f"admin-{opd}"), draft,
                                 [("layar.jpg", jpeg())], config=self.config).id

    def request(self, target: str, complaint_id: int | None, key: str = "k",
                params: dict[str, object] | None = None, playbook: str = "restart_vm") -> RemediationRunRow:
        return svc.request_run(self.session, self.inventory, playbook=playbook, target=target, params=params or {},
                               requester=ENGINEER, idempotency_key=key, policy=rem.Policy(),
                               complaint_id=complaint_id)

    def queued(self) -> int:
        return int(self.session.scalar(select(func.count()).select_from(RemediationRunRow)) or 0)


@pytest.fixture
def world(session: Session, tmp_path: Path) -> World:
    return World(session, tmp_path)


def test_a_run_for_a_complaint_about_the_vm_is_linked(world: World) -> None:
    complaint = world.complaint(f"vm:{world.vm[101]}")
    run = world.request("pdn1/101", complaint)
    assert run.complaint_id == complaint and run.state == "awaiting_approval"


def test_a_run_for_a_complaint_about_a_site_acts_on_the_vm_hosting_it(world: World) -> None:
    complaint = world.complaint(f"site:{world.site['http://127.0.10.1/']}")
    assert world.request("pdn1/101", complaint).complaint_id == complaint
    with pytest.raises(PolicyRefused, match=re.escape("http://127.0.10.1/, which VM pdn1/104 does not host")) as info:
        world.request("pdn1/104", complaint, key="other")
    assert message_key(info.value)[0] == "remediation.error.complaint_other_vm"  # what the pages show


def test_an_unknown_complaint_is_refused_before_anything_is_queued(world: World) -> None:
    with pytest.raises(NotFound, match="no complaint #424242") as info:
        world.request("pdn1/101", 424242)
    assert message_key(info.value)[0] == "remediation.error.complaint_unknown"
    with pytest.raises(NotFound):
        svc.dry_run(world.inventory, playbook="restart_vm", target="pdn1/101", params={}, policy=rem.Policy(),
                    requester=ENGINEER, session=world.session, complaint_id=424242)
    assert world.queued() == 0


def test_a_vm_of_another_opd_is_refused_for_a_complaint(world: World) -> None:
    complaint = world.complaint(f"vm:{world.vm[101]}")  # Dinas Kesehatan's
    with pytest.raises(PolicyRefused, match="VM pdn1/102 belongs to another OPD than complaint") as info:
        world.request("pdn1/102", complaint)  # Dinas Pendidikan's VM
    assert message_key(info.value)[0] == "remediation.error.other_opd"
    disdik = world.complaint(f"vm:{world.vm[102]}", opd="disdik")
    with pytest.raises(PolicyRefused, match="another OPD"):
        world.request("pdn1/101", disdik)
    assert world.queued() == 0


def test_another_vm_of_the_same_opd_is_refused_for_a_complaint_about_one_vm(world: World) -> None:
    complaint = world.complaint(f"vm:{world.vm[101]}")
    with pytest.raises(PolicyRefused, match=f"complaint #{complaint} is about VM pdn1/101, not pdn1/104") as info:
        world.request("pdn1/104", complaint)
    assert message_key(info.value)[0] == "remediation.error.complaint_other_vm"
    assert world.queued() == 0


def test_an_idempotency_key_reused_for_another_request_names_what_differs(world: World) -> None:
    complaint = world.complaint(f"vm:{world.vm[101]}")
    first = world.request("pdn1/101", complaint, key="same", params={"shutdown_timeout": 30})
    assert world.request("pdn1/101", complaint, key="same", params={"shutdown_timeout": "30"}).id == first.id
    differs = rf"run #{first.id}, which differs in parameters \(\{{\"shutdown_timeout\": 30\}}\)"
    with pytest.raises(Conflict, match=differs) as info:
        world.request("pdn1/101", complaint, key="same", params={"shutdown_timeout": 120})
    assert message_key(info.value)[0] == "remediation.error.key_reused"
    with pytest.raises(Conflict, match=rf"differs in complaint \({complaint}\)"):
        world.request("pdn1/101", None, key="same", params={"shutdown_timeout": 30})
    with pytest.raises(Conflict, match=r"differs in playbook \(restart_vm\); target \(pdn1/101\); complaint"):
        world.request("pdn1/104", None, key="same", playbook="resize_vm", params={"cores": 4})
    assert world.queued() == 1
