"""Typed settings from the environment (prefix ``PDN_OPS_``), built by the app factory or the CLI, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pdn_ops.errors import ConfigError

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
    # Health model (see README "Health and scheduling").
    health_down_after: int = Field(default=2, ge=1, le=100)
    health_up_after: int = Field(default=2, ge=1, le=100)
    health_slow_response_seconds: float = Field(default=3.0, gt=0)
    health_disk_used_ratio: float = Field(default=0.9, gt=0, le=1)
    health_raw_retention_days: int = Field(default=14, ge=1, le=3650)
    health_stale_after_seconds: int = Field(default=900, ge=30)

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
