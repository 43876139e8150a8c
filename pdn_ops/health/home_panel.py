"""The health part of each home: for staff the open incidents by root cause; for an OPD its own assets' state
with their uptime (24 hours as bars, 30 days as a figure)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from pdn_ops.core.db.tables import utcnow
from pdn_ops.health import history
from pdn_ops.health import queries as health_queries
from pdn_ops.web import charts
from pdn_ops.web.deps import runtime_of


def panel(request: Request, session: Session, user: Any) -> tuple[str, dict[str, Any]] | None:
    view = health_queries.fleet(session, opd_id=user.opd_scope())
    if user.is_staff:
        incidents = view.incidents
        roots = [i for i in incidents if i.is_root]
        affected = {f"{r.health.kind}:{r.health.ref}": 0 for r in roots}
        for incident in incidents:
            if incident.health.cause_key in affected:
                affected[incident.health.cause_key] += 1
        return "home_health.html", {"view": view, "roots": [(r, affected[f"{r.health.kind}:{r.health.ref}"])
                                                             for r in roots], "charts": charts}
    assets = [(vm.name, f"vm:{vm.id}", ("vm", f"{vm.cluster}/{vm.vmid}"), vm.health)
              for opd in view.opds for vm in opd.vms]
    assets += [(site.name or site.url, f"site:{site.id}", ("site", site.url), site.health)
               for opd in view.opds for site in opd.sites]
    ids = history.target_ids(session, [key for _n, _r, key, _h in assets])
    uptime = history.uptime(session, list(ids.values()), utcnow(), runtime_of(request).settings.tz)
    rows = [(name, ref, health, uptime.get(ids.get(key, -1))) for name, ref, key, health in assets]
    return "home_health.html", {"view": view, "assets": rows, "charts": charts}
