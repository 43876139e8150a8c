"""The inventory: one YAML file describing clusters, OPDs, VMs and sites, validated into frozen models.

Every problem is collected before anything is raised, so an engineer fixes a file in one pass; each problem reads
``FILE:LINE: key.path: message``. Secrets are never written in the file: they are references (``env:NAME`` or
``file:PATH``) that are resolved only when a client needs them, and never printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from pdn_ops.core import contacts, yaml_lines
from pdn_ops.core.errors import ConfigError, InventoryError, YamlSyntaxError

SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"  # pydantic patterns use Rust regex: $ is the absolute end
# systemd unit names: no shell metacharacters, no leading dash, no whitespace or newline (\Z, not $).
UNIT_NAME = re.compile(r"^[A-Za-z0-9_:.@\\][A-Za-z0-9_:.@\\-]{0,255}\Z")
SECRET_REF = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)\Z")
TOKEN_ID = re.compile(r"^[^\s!@:]+@[A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]*\Z")
FINGERPRINT = re.compile(r"^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}\Z")
HOST_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521) [A-Za-z0-9+/=]+\Z"
)


def _secret_ref(value: str) -> str:
    if not SECRET_REF.match(value):
        raise ValueError(
            "must be a reference 'env:NAME' or 'file:PATH'; secrets are never written in the inventory"
        )
    return value


SecretRef = Annotated[str, AfterValidator(_secret_ref)]


def resolve_secret(ref: str, base_dir: Path | None = None) -> SecretStr:
    """Read the secret a reference points to. Raises ConfigError naming the reference, never the value."""
    kind, _, target = ref.partition(":")
    if kind == "env":
        value = os.environ.get(target)
        if value is None:
            raise ConfigError(f"secret reference {ref}: environment variable is not set")
        return SecretStr(value)
    path = Path(target)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ConfigError(f"secret reference {ref}: cannot read file ({exc.strerror})") from exc


def resolve_secret_path(ref: str, base_dir: Path | None = None) -> Path:
    """For ``file:`` references to key files: the path itself (paramiko reads the key)."""
    kind, _, target = ref.partition(":")
    if kind != "file":
        raise ConfigError(f"secret reference {ref}: an SSH key must be a file: reference")
    path = Path(target)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return path


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Tls(_Model):
    ca_file: str | None = None
    fingerprint: str | None = Field(default=None, description="SHA-256 of the server certificate, AA:BB:...")

    @field_validator("fingerprint")
    @classmethod
    def _fp(cls, value: str | None) -> str | None:
        if value is not None and not FINGERPRINT.match(value):
            raise ValueError("must be a SHA-256 fingerprint: 32 hex pairs separated by ':'")
        return value.upper() if value else value

    @model_validator(mode="after")
    def _exactly_one(self) -> Tls:
        if (self.ca_file is None) == (self.fingerprint is None):
            raise ValueError("give exactly one of ca_file or fingerprint; TLS is always verified")
        return self


class Cluster(_Model):
    name: Annotated[str, Field(pattern=SLUG)]
    api_url: str
    token_id: str
    token_secret: SecretRef
    tls: Tls
    timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    interval: Annotated[int, Field(ge=5, le=3600)] = 30
    # Watch vzdump backups and backup storages: three calls and one per backup storage more per cycle.
    backups: bool = False
    # Watch node pressure (memory, swap, load, KSM, root filesystem): one call per online node per cycle.
    node_status: bool = False
    # Watch LVM-thin pools' data and metadata use: /storage and one /nodes/{node}/disks/lvmthin per node that has
    # an available lvmthin storage, per cycle (only when the cluster has such a storage).
    thin_pools: bool = False

    @field_validator("api_url")
    @classmethod
    def _https(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https:// URL such as https://pve1.example:8006")
        return value.rstrip("/")

    @field_validator("token_id")
    @classmethod
    def _token(cls, value: str) -> str:
        if not TOKEN_ID.match(value):
            raise ValueError("must look like USER@REALM!TOKENNAME, for example pdn-ops@pve!collector")
        return value


class Contact(_Model):
    name: str | None = None
    email: str | None = None
    whatsapp: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else contacts.email_address(value)

    @field_validator("whatsapp")
    @classmethod
    def _wa(cls, value: str | None) -> str | None:
        return None if value is None else contacts.whatsapp_number(value)


# Hours a VM's newest backup may age before it is "too old" (none: the setting health_backup_max_age_hours, 26 h).
BackupMaxAge = Annotated[float | None, Field(default=None, gt=0, le=24 * 90)]


class Opd(_Model):
    code: Annotated[str, Field(pattern=SLUG)]
    name: Annotated[str, Field(min_length=2, max_length=200)]
    contacts: list[Contact] = []
    backup_max_age_h: BackupMaxAge = None  # for its VMs without a threshold of their own


class Ssh(_Model):
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]
    key: SecretRef
    host_key: str
    timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    interval: Annotated[int, Field(ge=5, le=3600)] = 60

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str) -> str:
        parts = value.split()
        value = " ".join(parts[:2])
        if not HOST_KEY.match(value):
            raise ValueError("must be a pinned public host key 'TYPE BASE64', e.g. 'ssh-ed25519 AAAA...'")
        return value


class CleanupCommand(_Model):
    name: Annotated[str, Field(pattern=SLUG)]
    argv: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]

    @field_validator("argv")
    @classmethod
    def _no_newlines(cls, value: list[str]) -> list[str]:
        if any("\n" in arg or "\x00" in arg for arg in value):
            raise ValueError("arguments may not contain newlines or NUL")
        if not value[0].startswith("/"):
            raise ValueError("the program must be an absolute path")
        return value


class Vm(_Model):
    cluster: str
    vmid: Annotated[int, Field(ge=100, le=999_999_999)]
    name: Annotated[str, Field(min_length=1, max_length=63)]
    opd: str
    ssh: Ssh | None = None
    services: list[str] = []
    cleanup: list[CleanupCommand] = []
    auto_remediate: bool = False
    backup_max_age_h: BackupMaxAge = None  # a weekly-backed-up archive VM: 192

    @field_validator("services")
    @classmethod
    def _units(cls, value: list[str]) -> list[str]:
        for unit in value:
            if not UNIT_NAME.match(unit):
                raise ValueError(f"{unit!r} is not a valid systemd unit name")
        return value

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.vmid}"


class Site(_Model):
    url: str
    opd: str
    name: str | None = None
    vm: Annotated[str | None, Field(pattern=r"^[a-z0-9][a-z0-9-]*/[0-9]+$")] = None
    expect_status: Annotated[int, Field(ge=100, le=599)] = 200
    keyword: str | None = None
    interval: Annotated[int, Field(ge=5, le=86400)] = 60
    timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    tls_warning_days: Annotated[int, Field(ge=0, le=365)] = 14
    follow_redirects: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return value


class Inventory(_Model):
    version: Literal[1] = 1
    clusters: list[Cluster] = []
    opds: list[Opd] = []
    vms: list[Vm] = []
    sites: list[Site] = []

    def opd(self, code: str) -> Opd | None:
        return next((o for o in self.opds if o.code == code), None)

    def vm(self, key: str) -> Vm | None:
        return next((v for v in self.vms if v.key == key), None)

    def cluster(self, name: str) -> Cluster | None:
        return next((c for c in self.clusters if c.name == name), None)

    def summary(self) -> str:
        return (
            f"{len(self.clusters)} clusters, {len(self.opds)} OPDs, "
            f"{len(self.vms)} VMs, {len(self.sites)} sites"
        )


def _path_text(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _cross_checks(inv: Inventory, located: yaml_lines.LocatedYaml) -> list[tuple[int, str, str]]:
    problems: list[tuple[int, str, str]] = []

    def add(path: tuple[str | int, ...], message: str) -> None:
        problems.append((located.line_of(path), _path_text(path), message))

    def unique(section: str, keyof: Any, label: str) -> None:
        seen: dict[Any, int] = {}
        for index, item in enumerate(getattr(inv, section)):
            key = keyof(item)
            if key in seen:
                add((section, index), f"duplicate {label} {key!r} (first at {section}[{seen[key]}])")
            else:
                seen[key] = index

    unique("clusters", lambda c: c.name, "cluster name")
    unique("opds", lambda o: o.code, "OPD code")
    unique("vms", lambda v: v.key, "VM cluster/vmid")
    unique("sites", lambda s: s.url, "site URL")
    clusters = {c.name for c in inv.clusters}
    opds = {o.code for o in inv.opds}
    vms = {v.key for v in inv.vms}
    for index, vm in enumerate(inv.vms):
        if vm.cluster not in clusters:
            add(("vms", index, "cluster"), f"no cluster named {vm.cluster!r}")
        if vm.opd not in opds:
            add(("vms", index, "opd"), f"no OPD with code {vm.opd!r}")
        names = [c.name for c in vm.cleanup]
        if len(names) != len(set(names)):
            add(("vms", index, "cleanup"), "cleanup command names must be unique")
    for index, site in enumerate(inv.sites):
        if site.opd not in opds:
            add(("sites", index, "opd"), f"no OPD with code {site.opd!r}")
        if site.vm is not None and site.vm not in vms:
            add(("sites", index, "vm"), f"no VM {site.vm!r} in the inventory")
    return problems


def parse_inventory(text: str, filename: str = "<inventory>") -> Inventory:
    """Validate inventory text; raises InventoryError listing every problem as FILE:LINE: key.path: message."""
    try:
        located = yaml_lines.load(text)
    except YamlSyntaxError as exc:
        raise InventoryError([f"{filename}:{exc.line}: (syntax): {exc.message}"]) from None
    problems: list[tuple[int, str, str]] = []
    for path, line in located.duplicates:
        problems.append((line, _path_text(path), "duplicate key (YAML would silently keep only one)"))
    data = located.data if located.data is not None else {}
    inventory: Inventory | None = None
    if not isinstance(data, dict):
        problems.append((1, "(document)", "the inventory must be a mapping with clusters, opds, vms, sites"))
    else:
        try:
            inventory = Inventory.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
                message = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    message = "unknown key"
                problems.append((located.line_of(loc), _path_text(loc), message))
    if inventory is not None:
        problems.extend(_cross_checks(inventory, located))
    if problems:
        problems.sort(key=lambda p: (p[0], p[1]))
        raise InventoryError([f"{filename}:{line}: {path}: {msg}" for line, path, msg in problems])
    assert inventory is not None
    return inventory


def load_inventory(path: Path) -> Inventory:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError([f"{path}:1: (file): cannot read ({exc.strerror})"]) from exc
    return parse_inventory(text, str(path))
