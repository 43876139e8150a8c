"""The complaint procedure's scheduled jobs: auto-close and the SLA-at-risk alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from pdn_ops.core.jobs import JobSpec, collect_nothing

COMPLAINT_SWEEP_INTERVAL_S = 900.0
PHOTO_JANITOR_INTERVAL_S = 900.0
# At-risk marks sit at 50 % and 80 % of a days-long SLA: five minutes late is still early enough to act.
SLA_AT_RISK_INTERVAL_S = 300.0


def complaint_jobs(config: Any, public_url: str | None = None) -> list[JobSpec]:
    """Step 6 of the procedure: fixed complaints the OPD never answered close after the configured period.

    With ``public_url`` (the links in messages), also the engineers' SLA-at-risk alerts: every active engineer
    with a WhatsApp number or e-mail address on their account (set on the supervisor's users screen) gets one
    message per complaint, level (50 or 80 %) and complaint version, however often the job runs.
    """
    from pdn_ops.complaints import notifications as complaint_notifications
    from pdn_ops.complaints import service as complaints
    from pdn_ops.core.db.tables import utcnow

    def close_stale(session: Session, _: object) -> object:
        return complaints.close_stale(session, utcnow(), config=config)

    jobs = [JobSpec("complaints:close-stale", "maintenance", COMPLAINT_SWEEP_INTERVAL_S, collect_nothing,
                    close_stale)]
    if public_url is not None:
        def sla_at_risk(session: Session, _: object) -> object:
            engineers = complaint_notifications.engineer_recipients(session)
            return complaint_notifications.enqueue_sla_at_risk(session, utcnow(), engineers=engineers,
                                                               public_url=public_url)

        jobs.append(JobSpec("complaints:sla-at-risk", "maintenance", SLA_AT_RISK_INTERVAL_S, collect_nothing,
                            sla_at_risk))
    return jobs


def photo_jobs(data_dir: Path, *, min_age_s: float = 600.0) -> list[JobSpec]:
    """The photo janitor (``complaints.sweep_photos``): what a crash left in the staging folder is published or
    removed, and files no attachment names are removed."""
    from pdn_ops.complaints import service as complaints

    def sweep(session: Session, _: object) -> object:
        return complaints.sweep_photos(session, data_dir, min_age_s=min_age_s)

    return [JobSpec("complaints:photo-janitor", "maintenance", PHOTO_JANITOR_INTERVAL_S, collect_nothing, sweep)]
