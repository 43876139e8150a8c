"""Typed settings from the environment (prefix ``PDN_OPS_``), built by the app factory or the CLI, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pdn_ops.core.errors import ConfigError

PLACEHOLDER_SECRET = "change-me"  # noqa: S105  (a marker that is refused outside demo mode, not a secret)


def _default_data_dir() -> Path:
    return Path.cwd() / "data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PDN_OPS_", extra="ignore", frozen=True)

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str = ""
    inventory: Path = Path("inventory.example.yaml")
    listen: str = "127.0.0.1:8000"
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    timezone: str = "Asia/Jakarta"
    demo: bool = False
    run_scheduler: bool = True
    language: str = "id"
    # /metrics: with a token, Prometheus must send it as a bearer credential; without one, only loopback clients
    # are served (every OPD's asset states are in there, so no OPD user may read it through the portal).
    metrics_token: SecretStr | None = None
    # POST /webhooks/alertmanager: Alertmanager sends it as a bearer credential; without one, posts are refused.
    alertmanager_token: SecretStr | None = None
    # Health model (see README "Health and scheduling").
    health_down_after: int = Field(default=2, ge=1, le=100)
    health_up_after: int = Field(default=2, ge=1, le=100)
    health_slow_response_seconds: float = Field(default=3.0, gt=0)
    health_disk_used_ratio: float = Field(default=0.9, gt=0, le=1)
    # A VM's newest backup older than this is "too old", unless its OPD or the VM itself sets another (inventory).
    health_backup_max_age_hours: float = Field(default=26.0, gt=0, le=24 * 90)
    health_raw_retention_days: int = Field(default=14, ge=1, le=3650)
    health_stale_after_seconds: int = Field(default=900, ge=30)

    # --- capacity: bounded everywhere, so that overload answers 503 with Retry-After instead of a queue that grows
    # without end (README "Capacity and overload"). A request waits at most db_pool_timeout for a connection.
    db_pool_size: int = Field(default=10, ge=1, le=500)
    db_max_overflow: int = Field(default=10, ge=0, le=500)
    db_pool_timeout: float = Field(default=5.0, gt=0, le=120)
    # Requests being served at once (probes and static files not counted); beyond it: 503 at once.
    max_requests_in_flight: int = Field(default=120, ge=1, le=10000)
    # Threads that run sync routes (AnyIO's default is 40); more threads than connections only queue on the pool.
    worker_threads: int = Field(default=40, ge=2, le=1000)
    # Password checks (argon2) at once, and how many may wait (each wait at most password_wait_seconds).
    password_checks: int = Field(default=2, ge=1, le=64)
    password_queue: int = Field(default=32, ge=0, le=10000)
    password_wait_seconds: float = Field(default=10.0, ge=0, le=120)
    # The same for decoding and re-encoding uploaded photos (~50-300 ms of CPU each) and for rendering PDF reports
    # (up to a few seconds with photos). Sized for 2 cores; raise the "at once" figures with the cores.
    photo_checks: int = Field(default=2, ge=1, le=64)
    photo_queue: int = Field(default=40, ge=0, le=10000)
    photo_wait_seconds: float = Field(default=15.0, ge=0, le=120)
    pdf_renders: int = Field(default=1, ge=1, le=16)
    pdf_queue: int = Field(default=8, ge=0, le=1000)
    pdf_wait_seconds: float = Field(default=20.0, ge=0, le=300)
    # /readyz says "not ready" below this much free space in data_dir (photos would fail to store).
    min_free_disk_mb: int = Field(default=16, ge=0, le=1_000_000)
    # The photo janitor leaves staged files younger than this alone (a filing may be in progress).
    photo_janitor_min_age_s: float = Field(default=600.0, ge=0, le=86400)

    # --- notifications: WhatsApp, SMTP, IMAP, outbox worker ------------------------------------------
    # Every secret is a SecretStr and can come from a file instead (PDN_OPS_<NAME>_FILE), as container secrets do.
    public_url: str = "http://127.0.0.1:8000"  # base of the links sent in messages
    notify_worker: bool = True  # start the outbox and inbound workers inside `serve`
    notify_poll_seconds: float = Field(default=2.0, gt=0, le=300)
    notify_max_attempts: int = Field(default=8, ge=1, le=50)
    notify_backoff_base_seconds: float = Field(default=30.0, ge=0, le=3600)
    notify_backoff_max_seconds: float = Field(default=3600.0, ge=0, le=86400)
    notify_lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    # How long a message whose send outcome is unknown waits for the provider's status callback before a resend.
    notify_unknown_grace_seconds: float = Field(default=600.0, ge=0, le=86400)
    whatsapp_provider: Literal["none", "meta", "gateway"] = "none"
    whatsapp_base_url: str = "https://graph.facebook.com"
    whatsapp_api_version: str = "v21.0"
    whatsapp_phone_number_id: str = ""
    whatsapp_access_token: SecretStr | None = None
    whatsapp_access_token_file: Path | None = None
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_app_secret_file: Path | None = None
    whatsapp_verify_token: SecretStr | None = None
    whatsapp_verify_token_file: Path | None = None
    whatsapp_use_templates: bool = True  # business-initiated messages need approved templates on the Cloud API
    whatsapp_gateway_url: str = ""
    whatsapp_gateway_token: SecretStr | None = None
    whatsapp_gateway_token_file: Path | None = None
    whatsapp_timeout: float = Field(default=15.0, gt=0, le=120)
    smtp_host: str = ""
    smtp_port: int = Field(default=587, gt=0, lt=65536)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    smtp_password_file: Path | None = None
    smtp_from: str = "pdn-ops <pdn-ops@localhost>"
    smtp_ca_file: Path | None = None  # extra CA to trust (a private mail relay); verification is never disabled
    smtp_timeout: float = Field(default=20.0, gt=0, le=120)
    imap_host: str = ""
    imap_port: int = Field(default=993, gt=0, lt=65536)
    imap_security: Literal["starttls", "tls", "none"] = "tls"
    imap_username: str = ""
    imap_password: SecretStr | None = None
    imap_password_file: Path | None = None
    imap_mailbox: str = "INBOX"
    imap_ca_file: Path | None = None
    imap_poll_seconds: float = Field(default=60.0, gt=0, le=3600)
    # --- four eyes: which playbooks wait for approval, by how many, from whom (comma-separated lists) ---------------
    approval_playbooks: str = ""  # e.g. "restart_vm,restore_snapshot": always approved, whatever their risk
    approval_approvals: int = Field(default=1, ge=1, le=5)
    approval_approvers: str = ""  # usernames; empty: any engineer or supervisor other than the requester
    # --- the office (letterhead, header, signature block) --------------------------------------------------------
    office_government: str = ""  # e.g. "PEMERINTAH KABUPATEN CONTOH"
    office_name: str = ""  # e.g. "DINAS KOMUNIKASI DAN INFORMATIKA"
    office_address: str = ""
    office_logo: Path | None = None  # PNG or JPEG shown in the header and on the letterhead
    # {year}, {month} (two digits), {seq} (the complaint's number) and {number} (its public number) may be used
    report_number_pattern: str = "{seq:03d}/PDN/{month}/{year}"
    signatory_name: str = ""  # the approving official
    signatory_nip: str = ""
    signatory_title: str = ""
    # --- the published service standard: its channels for complaints about the service itself ---------------------
    service_email: str = ""  # e.g. "pengaduan@diskominfo.example.go.id"
    service_whatsapp: str = ""  # e.g. "+6281100000000"

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in ("whatsapp_access_token", "whatsapp_app_secret", "whatsapp_verify_token",
                     "whatsapp_gateway_token", "smtp_password", "imap_password"):
            path = data.get(f"{name}_file")
            if path and not data.get(name):
                try:
                    data[name] = Path(path).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    # Name the file and the reason, never the content.
                    raise ValueError(f"{name}_file: cannot read {path} ({exc.strerror})") from exc
        return data

    @model_validator(mode="after")
    def _notify_complete(self) -> Self:
        problems = []
        if self.whatsapp_provider == "meta" and (self.whatsapp_access_token is None
                                                 or not self.whatsapp_phone_number_id):
            problems.append("PDN_OPS_WHATSAPP_PROVIDER=meta needs WHATSAPP_ACCESS_TOKEN and WHATSAPP_PHONE_NUMBER_ID")
        if self.whatsapp_provider == "gateway" and not self.whatsapp_gateway_url:
            problems.append("PDN_OPS_WHATSAPP_PROVIDER=gateway needs WHATSAPP_GATEWAY_URL")
        for kind, host, security, user in (("SMTP", self.smtp_host, self.smtp_security, self.smtp_username),
                                           ("IMAP", self.imap_host, self.imap_security, self.imap_username)):
            # A password is never sent in clear text except to a relay on this machine.
            if host and user and security == "none" and host not in ("127.0.0.1", "::1", "localhost"):
                problems.append(f"{kind} authentication over an unencrypted connection is refused; "
                                f"use {kind}_SECURITY=starttls or tls")
        if problems:
            raise ValueError("; ".join(problems))
        return self
    # --- end of notifications ------------------------------------------------------------------------------------

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen must be HOST:PORT, got {value!r}")
        return value

    @field_validator("office_logo")
    @classmethod
    def _readable_logo(cls, value: Path | None) -> Path | None:
        if value is not None and value.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise ValueError("office_logo must be a .png or .jpg file")
        if value is not None and not value.is_file():
            raise ValueError(f"office_logo: no file at {value}")
        return value

    @field_validator("report_number_pattern")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        try:
            value.format(year=2026, month="01", seq=1, number="X")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"report_number_pattern may use {{year}}, {{month}}, {{seq}}, {{number}}: {exc}") from exc
        return value

    @field_validator("language")
    @classmethod
    def _supported_language(cls, value: str) -> str:
        if value not in ("id", "en"):
            raise ValueError("language must be 'id' or 'en'")
        return value

    @model_validator(mode="after")
    def _secret_guard(self) -> Self:
        secret = self.secret_key.get_secret_value()
        if not self.demo and (secret == PLACEHOLDER_SECRET or len(secret) < 16):
            raise ValueError(
                "PDN_OPS_SECRET_KEY must be set to a random value of at least 16 characters "
                "(the placeholder is accepted only with PDN_OPS_DEMO=1)"
            )
        return self

    @property
    def approval_playbook_set(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.approval_playbooks.split(",") if p.strip())

    @property
    def approver_set(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.approval_approvers.split(",") if p.strip())

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'pdn-ops.sqlite3'}"

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment plus overrides; a bad value becomes one ConfigError naming each key."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"PDN_OPS_{key.upper()}" if err["loc"] else "settings"
            lines.append(f"{env}: {err['msg']}")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines)) from None
