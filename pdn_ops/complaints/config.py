"""Settings of the complaint procedure (prefix ``PDN_OPS_``), validated when the app starts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pdn_ops.complaints.procedure import ProcedureSettings
from pdn_ops.complaints.service import ComplaintConfig, ComplaintListeners, TermsSource
from pdn_ops.complaints.sla import SlaPolicy, parse_holidays
from pdn_ops.core.errors import ConfigError


class ComplaintSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PDN_OPS_", extra="ignore", frozen=True)

    sla_days: int = 7
    sla_working_days: bool = False
    sla_holidays: str = ""  # comma-separated YYYY-MM-DD, e.g. "2026-12-25,2027-01-01"
    autoclose_days: float = 3.0
    timezone: str = "Asia/Jakarta"

    @field_validator("sla_holidays")
    @classmethod
    def _dates(cls, value: str) -> str:
        parse_holidays(value)
        return value

    @field_validator("sla_days")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("the SLA needs at least one day")
        return value

    def policy(self) -> SlaPolicy:
        return SlaPolicy(days=self.sla_days, working_days=self.sla_working_days,
                         holidays=parse_holidays(self.sla_holidays), timezone=self.timezone)

    def autoclose_after(self) -> timedelta:
        return timedelta(days=self.autoclose_days)

    def procedure(self) -> ProcedureSettings:
        """The defaults of the supervisor's settings screen (they apply until a supervisor saves)."""
        return ProcedureSettings(sla_days=self.sla_days, sla_working_days=self.sla_working_days,
                                 holidays=parse_holidays(self.sla_holidays), autoclose_days=self.autoclose_days)


def load_complaint_settings() -> ComplaintSettings:
    """From the environment; every bad value named at once, as a ConfigError like the main settings."""
    try:
        return ComplaintSettings()
    except ValidationError as exc:
        lines = [f"PDN_OPS_{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines)) from None


def complaint_config(data_dir: Path, settings: ComplaintSettings | None = None,
                     terms: TermsSource | None = None) -> ComplaintConfig:
    """With ``terms`` (the app's ``LiveSettings``), the supervisor's stored settings override these values."""
    chosen = settings or load_complaint_settings()
    return ComplaintConfig(data_dir=data_dir, policy=chosen.policy(), autoclose_after=chosen.autoclose_after(),
                           listeners=ComplaintListeners(), terms=terms)
