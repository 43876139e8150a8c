"""Record what Alertmanager reports and tell the engineers: once per alert episode and state change.

An episode is Alertmanager's fingerprint plus its start (``health_alerts`` is unique on both). Alertmanager
re-sends a group every ``repeat_interval`` and retries failed posts, possibly twice at once: the row is claimed
for a state's notification by one conditional UPDATE (``notified_status`` moves to the new status only if it is
not there yet), and the outbox key (``alert:<fingerprint>:<start>:<status>``) is unique besides, so a repeat never
notifies twice. A late "firing" after "resolved" (out-of-order retries) does not reopen the episode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pdn_ops.alerts import model
from pdn_ops.core.db.tables import SiteRow, VmRow, utcnow
from pdn_ops.core.i18n import translate
from pdn_ops.health import HealthAlertRow
from pdn_ops.notify import Recipient, alert_engineers

EVENT = "health_alert"


@dataclass(frozen=True, slots=True)
class Target:
    key: str | None  # health target key: site:URL, vm:cluster/vmid, node:cluster/node, cluster:name
    opd_id: int | None = None
    href: str | None = None  # the fleet page that explains it
    vm: str | None = None  # cluster/vmid of the VM a playbook would act on


@dataclass(frozen=True, slots=True)
class Received:
    recorded: int
    notified: int  # messages created now


def resolve(session: Session, subject: model.Subject) -> Target:
    if subject.kind == "site":
        site = session.get(SiteRow, int(subject.ref))
        if site is None:
            return Target(None)
        vm = session.get(VmRow, site.vm_id) if site.vm_id is not None else None
        return Target(f"site:{site.url}", site.opd_id, f"/fleet/site/{site.id}",
                      f"{vm.cluster}/{vm.vmid}" if vm is not None else None)
    if subject.kind == "vm":
        vm = session.get(VmRow, int(subject.ref))
        if vm is None:
            return Target(None)
        return Target(f"vm:{vm.cluster}/{vm.vmid}", vm.opd_id, f"/fleet/vm/{vm.id}", f"{vm.cluster}/{vm.vmid}")
    if subject.kind in ("node", "cluster"):
        return Target(f"{subject.kind}:{subject.ref}", None, "/fleet")
    return Target(None, None, "/fleet")


def _upsert(session: Session, alert: model.ReceivedAlert, target: Target, now: datetime) -> HealthAlertRow:
    stmt = select(HealthAlertRow).where(HealthAlertRow.fingerprint == alert.fingerprint,
                                        HealthAlertRow.starts_at == alert.starts_at)
    row = session.scalar(stmt)
    if row is None:
        try:
            with session.begin_nested():
                row = HealthAlertRow(fingerprint=alert.fingerprint, starts_at=alert.starts_at, ends_at=alert.ends_at,
                                     alertname=alert.alertname, status=alert.status, severity=alert.severity,
                                     labels=alert.labels, annotations=alert.annotations, target_key=target.key,
                                     opd_id=target.opd_id, received_at=now, updated_at=now)
                session.add(row)
        except IntegrityError:  # the same episode from a concurrent delivery: take that row
            row = session.scalar(stmt)
            assert row is not None
        return row
    if not (row.status == "resolved" and alert.status == "firing"):
        row.status, row.ends_at, row.severity = alert.status, alert.ends_at, alert.severity
        row.annotations, row.updated_at = alert.annotations, now
    return row


def _claim(session: Session, row: HealthAlertRow, status: str) -> bool:
    """Move the row's notified status to ``status``; True for exactly one caller per change."""
    result = session.execute(
        update(HealthAlertRow).where(HealthAlertRow.id == row.id, HealthAlertRow.status == status,
                                     or_(HealthAlertRow.notified_status.is_(None),
                                         HealthAlertRow.notified_status != status))
        .values(notified_status=status).execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0) == 1


def _params(alert: model.ReceivedAlert, target: Target, language: str, public_url: str) -> dict[str, str]:
    base = public_url.rstrip("/")
    summary = alert.annotations.get("summary") or alert.alertname
    playbooks = model.PLAYBOOKS_FOR.get(alert.alertname, ()) if target.vm else ()
    if playbooks:
        names = ", ".join(translate(f"remediation.playbook.{p}", language) for p in playbooks)
        fit = f"{names}: {base}/remediation?{urlencode({'target': target.vm, 'playbook': playbooks[0]})}"
    else:
        fit = translate("alerts.no_playbook", language)
    return {"alert": f"{alert.alertname}: {summary}"[:300],
            "state": translate(f"alerts.status.{alert.status}", language),
            "link": f"{base}{target.href or '/fleet'}", "playbooks": fit}


def receive(session: Session, alerts: Sequence[model.ReceivedAlert], *, engineers: list[Recipient],
            public_url: str, now: datetime | None = None) -> Received:
    """Record every alert of one post; notify each state change of each episode once."""
    now = now or utcnow()
    created = 0
    for alert in alerts:
        target = resolve(session, model.subject_of(alert.labels))
        row = _upsert(session, alert, target, now)
        session.flush()
        if not engineers or not _claim(session, row, alert.status):
            continue
        for language in sorted({r.language for r in engineers}):
            created += len(alert_engineers(
                session, event=EVENT, params=_params(alert, target, language, public_url),
                idempotency_key=model.notification_key(alert),
                engineers=[r for r in engineers if r.language == language], now=now))
    return Received(recorded=len(alerts), notified=created)
