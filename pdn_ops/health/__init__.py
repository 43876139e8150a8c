"""Health: collectors' observations become per-target states, events, history, the fleet and /metrics.

This module is the feature's public face: other features import from here, never from its modules."""

from __future__ import annotations

from pdn_ops.health.history import Outage
from pdn_ops.health.history import outages as outage_history
from pdn_ops.health.history import uptime as uptime_history
from pdn_ops.health.model import Reason, guest_findings
from pdn_ops.health.parts import HealthParts
from pdn_ops.health.queries import TargetDetail, site_detail, vm_detail
from pdn_ops.health.routes import when_formatter
from pdn_ops.health.safety import BackupLine, backup_line
from pdn_ops.health.safety import coverage as backup_coverage
from pdn_ops.health.tables import HealthAlertRow, HealthCheckRow, HealthTargetRow

__all__ = [
    "BackupLine",
    "HealthAlertRow",
    "HealthCheckRow",
    "HealthParts",
    "HealthTargetRow",
    "Outage",
    "Reason",
    "TargetDetail",
    "backup_coverage",
    "backup_line",
    "guest_findings",
    "outage_history",
    "site_detail",
    "uptime_history",
    "vm_detail",
    "when_formatter",
]
