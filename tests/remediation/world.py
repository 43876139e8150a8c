"""A small named world for remediation tests: one cluster on fakepve, two OPDs, VMs with and without SSH."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pdn_ops.core.db import migrate
from pdn_ops.core.db.engine import make_engine, make_sessionmaker, transaction
from pdn_ops.core.inventory import Inventory, load_inventory
from pdn_ops.core.inventory_sync import sync_inventory
from tests.remediation.pve_support import TOKEN_ID, TOKEN_SECRET
from tests.remediation.sshguest import SshGuest
from tests.support import missing

TOKEN_ENV = "PDN_OPS_TEST_REMEDIATION_TOKEN"
CONFIG = {"cores": 2, "memory": 2048, "scsi0": "local-lvm:vm-{vmid}-disk-0,size=10G", "ostype": "l26"}


def add_vms(pve: Any, vmids: range | list[int], status: str = "stopped") -> None:
    pve.apitokens[TOKEN_ID] = TOKEN_SECRET
    for vmid in vmids:
        if pve.vm(vmid) is None:
            config = {k: (v.format(vmid=vmid) if isinstance(v, str) else v) for k, v in CONFIG.items()}
            pve.add_vm(vmid, f"vm{vmid}", status=status, config=config)


def write_inventory(directory: Path, pve: Any, cafile: str, guest: SshGuest | None = None,
                    vmids: range | list[int] = range(101, 104), opd_of: dict[int, str] | None = None) -> Path:
    """dinkes owns every VM unless ``opd_of`` gives a VM to another OPD (disdik owns none by default, for the
    other-OPD checks). VM 101 has SSH when a guest is given."""
    os.environ[TOKEN_ENV] = TOKEN_SECRET
    lines = [
        "version: 1",
        "clusters:",
        "  - name: pve",
        f"    api_url: {pve.url}",
        f"    token_id: '{TOKEN_ID}'",
        f"    token_secret: env:{TOKEN_ENV}",
        f"    tls: {{ca_file: {cafile}}}",
        "    timeout: 5",
        "opds:",
        "  - {code: dinkes, name: Dinas Kesehatan}",
        "  - {code: disdik, name: Dinas Pendidikan}",
        "vms:",
    ]
    for vmid in vmids:
        opd = (opd_of or {}).get(vmid, "dinkes")
        lines += ["  - cluster: pve", f"    vmid: {vmid}", f"    name: vm{vmid}", f"    opd: {opd}"]
        if guest is not None and vmid == 101:
            lines += [
                "    ssh:",
                f"      host: {guest.host}",
                f"      port: {guest.port}",
                f"      user: {guest.user}",
                f"      key: file:{guest.client_key}",
                f"      host_key: {guest.host_key}",
                "      timeout: 5",
                "    services: [nginx.service, php8.2-fpm.service]",
                "    cleanup:",
                "      - {name: journal, argv: [/usr/bin/journalctl, --vacuum-size=100M]}",
            ]
    path = directory / "inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def inventory(path: Path) -> Inventory:
    return load_inventory(path)


@contextmanager
def lab_with_database(directory: Path, *, vms: int, sites: int, nodes: int = 1) -> Iterator[tuple[Any, Inventory, Any]]:
    """A lab (real sshd guests and sites, time scale 0.02) beside a migrated SQLite database holding its inventory.

    Yields (lab, inventory, sessionmaker); stops the lab and disposes of the engine afterwards.
    """
    if not Path("/usr/sbin/sshd").exists() or shutil.which("ssh-keygen") is None:
        missing("OpenSSH sshd", "install the Debian package openssh-server")
    from pdn_ops.lab.lab import Lab

    lab = Lab.start(directory / "lab", nodes=nodes, vms=vms, sites=sites, time_scale=0.02)
    url = f"sqlite:///{directory / 'lab.sqlite3'}"
    engine = None
    try:
        migrate.upgrade(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        inventory = load_inventory(lab.inventory_path)
        with transaction(sessions) as session:
            sync_inventory(session, inventory)
        yield lab, inventory, sessions
    finally:
        if engine is not None:
            engine.dispose()
        lab.stop()
