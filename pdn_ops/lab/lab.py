"""The lab: a fake Proxmox VE cluster on loopback whose VMs have real guests (sshd, HTTP sites).

    with Lab.start(workdir, nodes=1, vms=3, sites=2, time_scale=0.02) as lab:
        lab.api_url, lab.token_id, lab.token_secret, lab.fingerprint, lab.inventory_path
        lab.guest(101).address; lab.faults.crash_service(101, "nginx.service")

The fake API and every guest's site run on one asyncio loop in a daemon thread; sshd runs as child processes.
A reconciler on that loop makes each guest follow its VM's power state in the fake.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import getpass
import ipaddress
import logging
import os
import random
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pdn_ops.lab import guest_state
from pdn_ops.lab.errors import LabError
from pdn_ops.lab.guests import SSHD, GuestSpec, LabGuest, SiteSpec, abort_connections, ensure_privsep_dir
from pdn_ops.lab.pki import LabCa, fingerprint_of, make_ssh_key, write_private
from pdn_ops.lab.pve import LabPve, size_bytes

T = TypeVar("T")
log = logging.getLogger(__name__)
GiB = 1024**3
TOKEN_ID = "pdn-ops@pve!collector"
CLUSTER = "lab"
FIRST_VMID = 101
OPDS = (
    ("dinkes", "Dinas Kesehatan"),
    ("disdik", "Dinas Pendidikan"),
    ("bpkad", "Badan Pengelolaan Keuangan dan Aset Daerah"),
    ("dukcapil", "Dinas Kependudukan dan Pencatatan Sipil"),
    ("dinsos", "Dinas Sosial"),
    ("bappeda", "Badan Perencanaan Pembangunan Daerah"),
    ("dpmptsp", "Dinas Penanaman Modal dan Pelayanan Terpadu Satu Pintu"),
    ("diskominfo", "Dinas Komunikasi dan Informatika"),
)
SITE_SERVICES = ["nginx.service", "php8.2-fpm.service"]
OTHER_SERVICES = ["postgresql.service"]
CALL_TIMEOUT = 30.0
RETRY_SECS = 1.0
SHUTDOWN_SECS, START_SECS, STOP_SECS = 8, 3, 1


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, port))
        except OSError as exc:
            # A privileged port without root is not "taken": the lab picks another port then.
            return exc.errno == errno.EACCES
    return True


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


class Lab:
    """A running lab; build it with :meth:`Lab.start`, stop it with :meth:`stop` (or a ``with`` block)."""

    def __init__(self, workdir: Path, nodes: int = 1, vms: int = 3, sites: int = 2, time_scale: float = 0.02,
                 guests: int | None = None, boot_secs: float = 15.0, cert_days: int = 90,
                 tick: float = 0.05) -> None:
        if nodes < 1 or vms < 0 or sites < 0:
            raise LabError("nodes must be >= 1, vms and sites >= 0")
        self.workdir = Path(workdir).resolve()
        self.nodes = [f"pve{n}" for n in range(1, nodes + 1)]
        self.vm_count = vms
        self.guest_count = vms if guests is None else min(guests, vms)
        self.site_count = min(sites, self.guest_count)
        self.time_scale = time_scale
        self.boot_secs = boot_secs
        self.cert_days = cert_days
        self.tick = tick
        self.token_id = TOKEN_ID
        self.token_secret = str(uuid.uuid4())
        self.password = secrets.token_urlsafe(12)  # root@pam, for ticket-auth clients
        self.user = getpass.getuser()
        self.guests: dict[int, LabGuest] = {}
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._wake: asyncio.Event | None = None
        self._reconciler: asyncio.Future[None] | None = None
        self._control: Any = None
        self._stopped = False
        self._booting: set[asyncio.Future[None]] = set()
        # vmid -> snapshot name -> the guest's state the snapshot holds (LabGuest.capture), as a real snapshot
        # holds the guest's disk (and RAM with vmstate) beside the config fakepve keeps.
        self._guest_snapshots: dict[int, dict[str, dict[str, Any]]] = {}
        # volid -> the guest's state when that backup was taken (a restore over the VM puts it back).
        self._guest_backups: dict[str, dict[str, Any]] = {}
        # Guests change from the reconciler, boot timers and faults: one at a time, or two could both start a
        # site on the same address.
        self.lock = asyncio.Lock()
        from pdn_ops.lab.faults import Faults

        self.faults = Faults(self)

    # ------------------------------------------------------------ life cycle
    @classmethod
    def start(cls, workdir: Path | str, **options: Any) -> Lab:
        lab = cls(Path(workdir), **options)
        try:
            lab._start()
        except BaseException:
            lab.stop()
            raise
        return lab

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        if self.guest_count and not (Path(SSHD).exists() and os.access(SSHD, os.X_OK)):
            raise LabError(f"lab guests need OpenSSH's {SSHD} (Debian package openssh-server); "
                           "or start the lab with guests=0")
        self.workdir.mkdir(parents=True, exist_ok=True)
        from pdn_ops.lab.control import refuse_if_running

        refuse_if_running(self.workdir)
        keys = self.workdir / "keys"
        keys.mkdir(mode=0o700, exist_ok=True)
        keys.chmod(0o700)
        self.base = self._pick_block()
        api_host = str(self.base + 1)
        self.ca = LabCa(keys)
        self.ca_file = self.ca.ca_file
        certfile, keyfile = self.ca.issue("pve-api", [api_host, "localhost"])
        self.fingerprint = fingerprint_of(certfile.read_bytes())
        client = make_ssh_key(keys / "client_ed25519", "pdn-ops@lab")
        self.client_key_path = client.private_path
        write_private(keys / "token_secret", (self.token_secret + "\n").encode())
        self.pve = self._build_pve(api_host)
        self._build_guests(client.public_line)
        if self.guests:
            ensure_privsep_dir()
        self._thread = threading.Thread(target=self._run_loop, name="pdn-ops-lab", daemon=True)
        self._thread.start()
        self.call(self.pve.start(str(certfile), str(keyfile)))
        self.api_url = f"https://{api_host}:{self.pve.port}"
        self.call(self._power_on_initial())
        self._wait_for_sshd()
        self.inventory_path = self._write_inventory()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """Run a coroutine on the lab's loop and wait for its result (from any other thread)."""
        if self._thread is None or not self._thread.is_alive():
            coro.close()
            raise LabError("the lab is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        """Stop every sshd (by PID), every site, the API; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                self.call(self._shutdown(), timeout=20)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        for guest in self.guests.values():
            guest.stop_sshd()
        if self._thread is None or not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
        if self._control is not None:
            await self._control.close()
        async with self.lock:
            for guest in self.guests.values():
                await guest.power_off()
        abort_connections(self.pve.runner)
        await self.pve.stop()
        # Let closed transports run their connection_lost callbacks, and end what is left (hung site
        # requests, fakepve's timers), so nothing is collected after the loop closes.
        current = asyncio.current_task()
        rest = [task for task in asyncio.all_tasks() if task is not current]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        for _ in range(3):
            await asyncio.sleep(0.01)
        # Here, on the lab's own loop: the caller's thread may be running a loop of its own (an async test).
        await asyncio.get_running_loop().shutdown_asyncgens()

    # ------------------------------------------------------------ building
    def _pick_block(self) -> ipaddress.IPv4Address:
        """A random 127.A.B.0 block whose API and guest addresses are all free (concurrent labs never collide)."""
        rng = random.SystemRandom()
        for _ in range(50):
            base = ipaddress.IPv4Address(f"127.{rng.randint(64, 250)}.{rng.randint(0, 255)}.0")
            wanted = [(str(base + 1), 8006)]
            for index in range(self.guest_count):
                address = str(base + 10 + index)
                wanted += [(address, 22), (address, 80), (address, 443)]
            if all(_bindable(a, p) for a, p in wanted):
                return base
        raise LabError("no free 127.A.B.0 block found for the lab")

    def _port(self, address: str, preferred: int) -> int:
        return preferred if os.geteuid() == 0 else _free_port(address)

    def _build_pve(self, host: str) -> LabPve:
        pve = LabPve(user="root@pam", password=self.password, host=host, port=self._port(host, 8006))
        pve.time_scale = self.time_scale
        pve.cluster_name = CLUSTER
        pve.apitokens[self.token_id] = self.token_secret
        pve.users["pdn-ops@pve"] = self.password
        pve.nodes = {name: {"online": True} for name in self.nodes}
        volumes = pve.storages["local-lvm"].setdefault("volumes", {})
        for index in range(self.vm_count):
            vmid = FIRST_VMID + index
            code, _name = OPDS[index % len(OPDS)]
            disk = 32 * GiB if index < self.guest_count else 16 * GiB
            config = {
                "cores": 2, "sockets": 1, "memory": "2048", "ostype": "l26", "onboot": 1,
                # Every other guest runs the QEMU guest agent (disk usage through get-fsinfo); the rest has none.
                "agent": "1" if index < self.guest_count and index % 2 == 1 else "0",
                "scsihw": "virtio-scsi-single", "boot": "order=scsi0;net0", "hotplug": "network,disk,usb",
                "scsi0": f"local-lvm:vm-{vmid}-disk-0,iothread=1,size={disk // GiB}G",
                "net0": f"virtio=BC:24:11:{index >> 16 & 255:02X}:{index >> 8 & 255:02X}:{index & 255:02X},"
                        "bridge=vmbr0",
                "tags": f"opd-{code}",
            }
            vm = pve.add_vm(vmid, self._vm_name(index), node=self.nodes[index % len(self.nodes)],
                            status="running", config=config)
            if config["agent"] == "1":
                vm.agent = {}  # fakepve's agent answers (get-fsinfo from the guest's disk: LabPve._agent_call)
            # Proxmox seconds each task takes, so clients see tasks `running` and must poll, as on a real node.
            vm.shutdown_secs, vm.start_secs, vm.stop_secs = SHUTDOWN_SECS, START_SECS, STOP_SECS
            volumes[f"vm-{vmid}-disk-0"] = {"content": "images", "format": "raw", "size": disk, "vmid": vmid,
                                            "ctime": int(time.time())}
        # Thin provisioning: room for twice what the VMs were given (at least 2 TiB), so resizes fit.
        provisioned = sum(int(v["size"]) for v in volumes.values())
        pve.storages["local-lvm"]["total"] = max(2 * 1024 * GiB, 2 * provisioned)
        pve.on_change.append(self._changed)
        pve.on_snapshot.append(self._snapshot_taken)
        pve.on_rollback.append(self._rolled_back)
        pve.on_backup.append(self._backed_up)
        pve.on_restore.append(self._restored)
        pve.ssl_fingerprint = self.fingerprint
        pve.agent_fsinfo = self._agent_fsinfo
        return pve

    def _agent_fsinfo(self, vmid: int) -> list[dict[str, Any]] | None:
        """What the guest agent of a booted guest reports: its root filesystem (QEMU GA GuestFilesystemInfo)."""
        guest = self.guests.get(vmid)
        if guest is None or not guest.powered or guest.frozen:
            return None
        state = guest.state()
        if state.get("power") != "running":
            return None
        disk = state["disk"]
        return [{"name": str(disk["device"]).rsplit("/", 1)[-1], "mountpoint": disk["mount"], "type": "ext4",
                 "total-bytes": int(disk["size"]), "used-bytes": guest_state.disk_used(state),
                 "disk": [{"dev": disk["device"], "bus-type": "scsi", "bus": 0, "target": 0, "unit": 0,
                           "serial": "drive-scsi0",
                           "pci-controller": {"domain": 0, "bus": 0, "slot": 5, "function": 0}}]}]

    @staticmethod
    def _vm_name(index: int) -> str:
        code = OPDS[index % len(OPDS)][0]
        return f"web-{code}" if index < len(OPDS) else f"vm-{code}-{index // len(OPDS)}"

    def _build_guests(self, client_pub: str) -> None:
        for index in range(self.guest_count):
            vmid = FIRST_VMID + index
            code, opd_name = OPDS[index % len(OPDS)]
            address = str(self.base + 10 + index)
            has_site = index < self.site_count
            spec = GuestSpec(
                vmid=vmid, name=self._vm_name(index), opd_code=code, opd_name=opd_name, address=address,
                ssh_port=self._port(address, 22), http_port=self._port(address, 80),
                https_port=self._port(address, 443),
                services=list(SITE_SERVICES if has_site else OTHER_SERVICES),
                site=SiteSpec(code, opd_name, https=index % 2 == 1) if has_site else None,
                disk_bytes=32 * GiB, memory_bytes=2048 * 1024**2,
            )
            self.guests[vmid] = LabGuest(spec, self.workdir / "guests" / str(vmid), self.ca, client_pub,
                                         self.client_key_path, self.user, self.cert_days)

    async def _power_on_initial(self) -> None:
        self._wake = asyncio.Event()
        for guest in self.guests.values():
            vm = self.pve.vm(guest.vmid)
            if vm is not None and vm.status == "running":
                guest.seen_start = vm.started_at
                await guest.power_on(_memory_bytes(vm.config))
        self._reconciler = asyncio.ensure_future(self._reconcile_forever())
        from pdn_ops.lab.control import ControlServer

        self._control = ControlServer(self)
        await self._control.start()

    def _wait_for_sshd(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for guest in self.guests.values():
            if not guest.powered:
                continue
            while not _connects(guest.address, guest.ssh_port):
                if time.monotonic() > deadline:
                    log = (guest.dir / "sshd.log").read_text(encoding="utf-8", errors="replace")[-500:]
                    raise LabError(f"sshd of guest {guest.vmid} did not come up on "
                                   f"{guest.address}:{guest.ssh_port}: {log}")
                time.sleep(0.01)

    # ------------------------------------------------------------ reconciling
    def _changed(self, _vmid: Any) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _reconcile_forever(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick)
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:  # one guest's trouble (a port taken by someone else) must not stop the lab
                log.exception("lab reconcile failed; retrying in %.0f s", RETRY_SECS)
                await asyncio.sleep(RETRY_SECS)

    async def reconcile(self) -> None:
        """Make every guest follow its VM: running -> (after the boot delay) services up; otherwise down."""
        async with self.lock:
            await self.reconcile_locked()

    async def reconcile_locked(self) -> None:
        for guest in self.guests.values():
            vm = self.pve.vm(guest.vmid)
            running = vm is not None and vm.status == "running"
            if not running:
                if guest.powered or guest.boot_handle is not None:
                    await guest.power_off()
                guest.seen_start = None
                continue
            if guest.seen_start != vm.started_at:
                # A start, a reboot or a reset: the guest goes down and boots again.
                if guest.powered or guest.boot_handle is not None:
                    await guest.power_off()
                guest.seen_start = vm.started_at
                guest.boot_handle = self._loop.call_later(self.boot_secs * self.time_scale, self._boot_soon, guest)
                continue
            if guest.powered:
                if vm.qmpstatus == "paused":
                    guest.freeze()
                else:
                    guest.thaw()
                guest.set_hardware(_disk_size(vm.config), _memory_bytes(vm.config))
                await guest.sync_services()

    def _boot_soon(self, guest: LabGuest) -> None:
        task = asyncio.ensure_future(self._boot(guest))
        self._booting.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._booting.discard)

    async def _boot(self, guest: LabGuest) -> None:
        async with self.lock:
            guest.boot_handle = None
            vm = self.pve.vm(guest.vmid)
            if vm is not None and vm.status == "running" and vm.started_at == guest.seen_start:
                await guest.power_on(_memory_bytes(vm.config))

    # ------------------------------------------------------------ snapshots
    def _snapshot_taken(self, vmid: int, name: str) -> None:
        guest = self.guests.get(vmid)
        vm = self.pve.vm(vmid)
        if guest is None or vm is None:
            return
        kept = self._guest_snapshots.setdefault(vmid, {})
        for gone in [n for n in kept if n not in vm.snapshots]:  # deleted through the API since
            del kept[gone]
        kept[name] = guest.capture()

    def _rolled_back(self, vmid: int, name: str, with_ram: bool) -> None:
        guest = self.guests.get(vmid)
        captured = self._guest_snapshots.get(vmid, {}).get(name)
        if guest is not None and captured is not None:
            guest.restore(captured, with_ram)

    def _backed_up(self, vmid: int, volid: str) -> None:
        guest = self.guests.get(vmid)
        if guest is not None:
            self._guest_backups[volid] = guest.capture()

    def _restored(self, vmid: int, volid: str) -> None:
        """A restore over the VM: its disk as the backup held it; the VM is stopped, so it boots when started."""
        guest = self.guests.get(vmid)
        captured = self._guest_backups.get(volid)
        if guest is not None and captured is not None:
            guest.restore(captured, False)

    # ------------------------------------------------------------ views
    def guest(self, vmid: int) -> LabGuest:
        try:
            return self.guests[vmid]
        except KeyError:
            raise LabError(f"the lab has no guest for VM {vmid}") from None

    def wait_guest(self, vmid: int, up: bool, timeout: float = 10.0) -> None:
        """Wait until the guest's sshd accepts (up) or refuses (not up) connections."""
        guest = self.guest(vmid)
        deadline = time.monotonic() + timeout
        while _connects(guest.address, guest.ssh_port) != up:
            if time.monotonic() > deadline:
                raise LabError(f"guest {vmid} did not go {'up' if up else 'down'} within {timeout}s")
            time.sleep(0.02)

    def summary(self) -> dict[str, str]:
        return {"api_url": self.api_url, "token_id": self.token_id, "token_secret": self.token_secret,
                "fingerprint": self.fingerprint, "inventory": str(self.inventory_path)}

    # ------------------------------------------------------------ inventory
    def _write_inventory(self) -> Path:
        vms: list[dict[str, Any]] = []
        sites: list[dict[str, Any]] = []
        used_opds: dict[str, str] = {}
        for vm in sorted(self.pve.vms, key=lambda v: v.vmid):
            index = vm.vmid - FIRST_VMID
            code, opd_name = OPDS[index % len(OPDS)]
            used_opds[code] = opd_name
            entry: dict[str, Any] = {"cluster": CLUSTER, "vmid": vm.vmid, "name": vm.name, "opd": code}
            guest = self.guests.get(vm.vmid)
            if guest is not None:
                entry["ssh"] = {"host": guest.address, "port": guest.ssh_port, "user": self.user,
                                "key": "file:keys/client_ed25519", "host_key": guest.host_key}
                entry["services"] = list(guest.spec.services)
                entry["cleanup"] = [{"name": "journal", "argv": ["/usr/bin/journalctl", "--vacuum-size=100M"]}]
                for url in guest.site_urls:
                    sites.append({"url": url, "name": f"Portal {opd_name}", "opd": code,
                                  "vm": f"{CLUSTER}/{vm.vmid}", "keyword": opd_name, "interval": 30,
                                  "timeout": 5})
            vms.append(entry)
        document = {
            "version": 1,
            "clusters": [{"name": CLUSTER, "api_url": self.api_url, "token_id": self.token_id,
                          "token_secret": "file:keys/token_secret", "tls": {"fingerprint": self.fingerprint},
                          "timeout": 10, "interval": 30}],
            "opds": [{"code": code, "name": name} for code, name in used_opds.items()],
            "vms": vms,
            "sites": sites,
        }
        path = self.workdir / "inventory.yaml"
        header = ("# Written by the pdn-ops lab; secrets are references to files under keys/.\n"
                  f"# Lab CA (for the sites' HTTPS certificates): {self.ca_file}\n")
        path.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    def rewrite_inventory(self) -> Path:
        """Write the inventory again (after a host-key change the pinned key is the old one until this runs)."""
        self.inventory_path = self._write_inventory()
        return self.inventory_path


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _memory_bytes(config: dict[str, Any]) -> int:
    """The VM's memory (``[current=]MiB``) in bytes."""
    return int(str(config.get("memory", 512)).split("=")[-1]) * 1024**2


def _disk_size(config: dict[str, Any]) -> int | None:
    value = str(config.get("scsi0", ""))
    for part in value.split(",")[1:]:
        key, _, val = part.partition("=")
        if key == "size":
            return size_bytes(val)
    return None
