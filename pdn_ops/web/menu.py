"""The one menu: every area of pdn-ops, and which roles may open it.

A page is reachable only if it is listed here (``tests/console/test_menu.py`` walks every role through it), so a
new area is one line in ``MENU``. Roles are the accounts feature's role codes; the shell does not import accounts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

STAFF: Final = frozenset({"engineer", "supervisor"})
OPD: Final = frozenset({"opd_head", "opd_admin"})
EVERYONE: Final = STAFF | OPD


@dataclass(frozen=True, slots=True)
class MenuItem:
    href: str
    label: str  # catalogue key
    roles: frozenset[str]
    demo_only: bool = False  # the lab panel exists only beside the demo's lab


MENU: Final[tuple[MenuItem, ...]] = (
    MenuItem("/", "nav.home", EVERYONE),
    MenuItem("/complaints/queue", "complaints.nav.queue", STAFF),
    MenuItem("/complaints", "complaints.nav.list", EVERYONE),
    MenuItem("/complaints/new", "complaints.nav.new", frozenset({"opd_admin"})),
    MenuItem("/fleet", "nav.fleet", STAFF),
    MenuItem("/fleet/backups", "nav.backups", STAFF),
    MenuItem("/fleet/storage", "nav.storage", STAFF),
    MenuItem("/remediation", "nav.remediation", STAFF),
    MenuItem("/remediation/automation", "nav.automation", STAFF),
    MenuItem("/duty", "duty.nav", STAFF),
    MenuItem("/reports/monthly", "complaints.nav.reports", EVERYONE),
    MenuItem("/inbox", "complaints.nav.inbox", OPD),
    MenuItem("/survey", "survey.nav", OPD),
    MenuItem("/survey-report", "survey.nav.report", STAFF),
    MenuItem("/service-complaints", "feedback.nav", frozenset({"supervisor"})),
    MenuItem("/status-settings", "status.nav", OPD),
    MenuItem("/standard", "standard.nav", EVERYONE),
    MenuItem("/opd/admins", "complaints.nav.admins", frozenset({"opd_head"})),
    MenuItem("/users", "users.nav", frozenset({"supervisor"})),
    MenuItem("/settings/complaints", "settings.nav", frozenset({"supervisor"})),
    MenuItem("/lab", "nav.lab", STAFF, demo_only=True),
)


@dataclass(frozen=True, slots=True)
class MenuEntry:
    href: str
    label: str
    current: bool


def menu_for(role: str | None, path: str, *, demo: bool, items: Iterable[MenuItem] = MENU) -> list[MenuEntry]:
    """The entries ``role`` may open, the one holding ``path`` marked current (the longest matching prefix)."""
    if role is None:
        return []
    visible = [i for i in items if str(role) in i.roles and (demo or not i.demo_only)]
    matches = [i.href for i in visible if path == i.href or (i.href != "/" and path.startswith(i.href + "/"))]
    current = max(matches, key=len, default=None)
    return [MenuEntry(i.href, i.label, i.href == current) for i in visible]
