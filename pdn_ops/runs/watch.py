"""Fast confirmation: which health targets the fast lane checks now, and why.

The collectors check every target at its interval (30-60 s). Waiting for that cadence made time to restore about
five check intervals (the rule's 3 failed checks, then the closure's 3 passing ones) while the playbooks take well
under a second. The fast lane (``pdn_ops.health.jobs.fast_lane_job``) checks a small set of targets at a fraction of
the interval; this module says which:

1. *confirming*: every target linked to a succeeded run that waits for its health-confirmed closure, until the
   closure is decided or its deadline passes;
2. *suspect*: the targets of a VM whose automatic rule has seen its symptom in at least one check but fewer than
   the rule needs (so the rule's count is reached in fast checks, not in intervals);
3. *reported*: the target of an Alertmanager alert received recently and still firing, and of a complaint filed
   recently about a site or VM (the event, not the schedule, starts the checks), for ``event_window``.

The set is bounded (``MAX_WATCHED``, in that order of priority): a mass outage makes every target suspect, and the
fast lane must not become a second full collection at six times the rate. A target leaves the set by itself: a
closure decided, a rule's count reached (the run then confirms), an event older than its window.

Event rows are read newest first by primary key with a small limit (new alerts and complaints have the highest
ids), so the query stays an index walk at 100,000 complaints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pdn_ops.complaints import ComplaintRow, State
from pdn_ops.core.db.tables import SiteRow, VmRow
from pdn_ops.health import HealthAlertRow
from pdn_ops.runs import model as rem
from pdn_ops.runs.auto import signals_for
from pdn_ops.runs.closure import ClosurePolicy, linked_targets
from pdn_ops.runs.tables import AutoRuleRow, RemediationRunRow

MAX_WATCHED = 200
EVENT_ROWS = 50  # newest alerts / complaints looked at per cycle
# A complaint fixed, closed or merged, and a resolved alert, say nothing is wrong now: no reason to check faster.
_OPEN_COMPLAINT_STATES = (State.SUBMITTED.value, State.VERIFIED.value, State.IN_PROGRESS.value)
# what the policy engine reads for one VM target (``pdn_ops.runs.auto.signals_for``)
SignalsReader = Callable[[Session, str], rem.Signals]


@dataclass(frozen=True, slots=True)
class Watch:
    """Health target keys (``site:URL``, ``vm:cluster/vmid``, ``guest:cluster/vmid``) per reason."""

    confirming: frozenset[str] = frozenset()
    suspect: frozenset[str] = frozenset()
    reported: frozenset[str] = frozenset()

    def keys(self, limit: int = MAX_WATCHED) -> list[str]:
        """All keys, confirming first, then suspects, then reported; at most ``limit``."""
        ordered: dict[str, None] = {}
        for group in (self.confirming, self.suspect, self.reported):
            for key in sorted(group):
                ordered.setdefault(key, None)
        return list(ordered)[:limit]

    def __bool__(self) -> bool:
        return bool(self.confirming or self.suspect or self.reported)


def _vm_keys(target: str, ssh: bool = True) -> set[str]:
    keys = {f"vm:{target}"}
    if ssh:
        keys.add(f"guest:{target}")
    return keys


def confirming(session: Session, *, now: datetime, policy: ClosurePolicy) -> set[str]:
    """Targets linked to succeeded runs still waiting for their closure, within the closure's deadline."""
    rows = session.execute(select(RemediationRunRow.target, RemediationRunRow.finished_at,
                                  RemediationRunRow.created_at).where(
        RemediationRunRow.state == rem.State.SUCCEEDED.value,
        or_(RemediationRunRow.closure.is_(None), RemediationRunRow.closure == "confirming")))
    keys: set[str] = set()
    for target, finished, created in rows:
        if (finished or created) + policy.deadline < now:
            continue  # the closure decides it (ineffective) without new checks
        keys.update(t.key for t in linked_targets(session, target))
    return keys


def suspects(session: Session, *, signals: SignalsReader = signals_for) -> set[str]:
    """Targets of VMs whose enabled rule has seen its symptom, but fewer times than it needs."""
    rules = session.execute(select(AutoRuleRow.target, AutoRuleRow.playbook, AutoRuleRow.min_failed_checks,
                                   AutoRuleRow.vm_status, AutoRuleRow.params).where(AutoRuleRow.enabled.is_(True)))
    by_target: dict[str, list[rem.AutoRule]] = {}
    for target, playbook, needed, vm_status, params in rules:
        unit = params.get("unit") if isinstance(params, dict) else None
        by_target.setdefault(target, []).append(rem.AutoRule(
            target=target, playbook=playbook, min_failed_checks=needed, vm_status=vm_status,
            unit=unit if isinstance(unit, str) else None))
    keys: set[str] = set()
    for target, rules_of in by_target.items():
        seen = signals(session, target)
        if any(0 < rem.symptom_checks(rule, seen) < rule.min_failed_checks for rule in rules_of):
            keys.update(t.key for t in linked_targets(session, target))
    return keys


def reported(session: Session, *, now: datetime, window: timedelta) -> set[str]:
    """Targets of alerts received and complaints filed within ``window``, still firing or open."""
    since = now - window
    keys: set[str] = set()
    alerts = session.execute(select(HealthAlertRow.target_key, HealthAlertRow.status, HealthAlertRow.received_at)
                             .order_by(HealthAlertRow.id.desc()).limit(EVENT_ROWS))
    for key, status, received in alerts:
        if key is None or status != "firing" or received < since:
            continue
        if key.startswith("vm:"):
            keys.update(_vm_keys(key.removeprefix("vm:")))
        elif key.startswith("site:"):
            keys.add(key)
    filed = session.execute(select(ComplaintRow.site_id, ComplaintRow.vm_id, ComplaintRow.state,
                                   ComplaintRow.created_at).order_by(ComplaintRow.id.desc()).limit(EVENT_ROWS))
    site_ids: set[int] = set()
    vm_ids: set[int] = set()
    for site_id, vm_id, state, created in filed:
        if created < since or state not in _OPEN_COMPLAINT_STATES:
            continue
        if site_id is not None:
            site_ids.add(site_id)
        if vm_id is not None:
            vm_ids.add(vm_id)
    if site_ids:
        keys.update(f"site:{url}" for url in session.scalars(select(SiteRow.url).where(SiteRow.id.in_(site_ids))))
    if vm_ids:
        for cluster, vmid, has_ssh in session.execute(select(VmRow.cluster, VmRow.vmid, VmRow.has_ssh)
                                                      .where(VmRow.id.in_(vm_ids))):
            keys.update(_vm_keys(f"{cluster}/{vmid}", bool(has_ssh)))
    return keys


def watched(session: Session, *, now: datetime, policy: ClosurePolicy | None = None,
            event_window: timedelta = timedelta(minutes=2)) -> Watch:
    """What the fast lane checks now."""
    policy = policy or ClosurePolicy()
    return Watch(confirming=frozenset(confirming(session, now=now, policy=policy)),
                 suspect=frozenset(suspects(session)),
                 reported=frozenset(reported(session, now=now, window=event_window)))
