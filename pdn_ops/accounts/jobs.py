"""The accounts feature's scheduled upkeep: failed-login records and ended sessions go."""

from __future__ import annotations

from sqlalchemy.orm import Session

from pdn_ops.accounts.service import purge_stale
from pdn_ops.core.jobs import RETENTION_INTERVAL_S, JobSpec, collect_nothing


def account_jobs() -> list[JobSpec]:
    def purge(session: Session, _: object) -> object:
        return purge_stale(session)

    return [JobSpec("accounts:retention", "maintenance", RETENTION_INTERVAL_S, collect_nothing, purge)]
