"""Remediation's scheduled jobs: automatic rules and health-confirmed closure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from pdn_ops.core.inventory import Inventory
from pdn_ops.core.jobs import JobSpec, collect_nothing

# The policy engine reads what the collectors recorded; a quarter of the shortest default check interval (60 s)
# keeps "detection within two check intervals" for the rules.
AUTO_RULES_INTERVAL_S = 15.0
REMEDIATION_ALERTS_INTERVAL_S = 60.0


def remediation_jobs(inventory: Inventory, *, policy: Any = None, base_dir: Any = None,
                     public_url: str | None = None) -> list[JobSpec]:
    """Automatic remediation: every enabled rule evaluated against the health model, and the engineers'
    alerts for runs that failed, ended unknown or were ineffective (``public_url``: the links in the alerts).

    Only the leader schedules these, so exactly one process evaluates the rules; the idempotency key and the
    one-active-run constraint keep a hand-over between two leaders from enqueueing a run twice.
    """
    from pdn_ops.core.db.tables import utcnow
    from pdn_ops.runs import alerts as remediation_alerts
    from pdn_ops.runs import auto as remediation_auto
    from pdn_ops.runs.model import Policy

    chosen = policy if isinstance(policy, Policy) else Policy()

    def auto_rules(session: Session, _: object) -> object:
        return remediation_auto.evaluate_all(session, inventory, policy=chosen, now=utcnow(), base_dir=base_dir)

    jobs = [JobSpec("remediation:auto-rules", "maintenance", AUTO_RULES_INTERVAL_S, collect_nothing, auto_rules)]
    if public_url is not None:
        def alerts(session: Session, _: object) -> object:
            return remediation_alerts.sweep(session, public_url=public_url, now=utcnow())

        jobs.append(JobSpec("remediation:alerts", "maintenance", REMEDIATION_ALERTS_INTERVAL_S, collect_nothing,
                            alerts))
    return jobs


Watched = Callable[[Session], Sequence[str]]
AfterRound = Callable[[Session, Any], object]


def fast_confirmation(inventory: Inventory, *, policy: Any = None, base_dir: Any = None,
                      closure: Any = None) -> tuple[Watched, AfterRound]:
    """The fast lane's two seams (``pdn_ops.health.jobs.fast_lane_job``): which targets to check now
    (``pdn_ops.runs.watch``), and, once a fast round is stored, the automatic rules evaluated at once, so a rule
    whose count the fast checks completed enqueues its run in the same cycle, not at the next 15 s evaluation.

    The closure itself is decided by the remediation worker, which evaluates it every loop (about a second).
    """
    from pdn_ops.core.db.tables import utcnow
    from pdn_ops.runs import auto as remediation_auto
    from pdn_ops.runs import watch
    from pdn_ops.runs.closure import ClosurePolicy
    from pdn_ops.runs.model import Policy

    chosen = policy if isinstance(policy, Policy) else Policy()
    closing = closure if isinstance(closure, ClosurePolicy) else ClosurePolicy()

    def watched(session: Session) -> Sequence[str]:
        return watch.watched(session, now=utcnow(), policy=closing).keys()

    def after_record(session: Session, _round: Any) -> object:
        return remediation_auto.evaluate_all(session, inventory, policy=chosen, now=utcnow(), base_dir=base_dir)

    return watched, after_record
