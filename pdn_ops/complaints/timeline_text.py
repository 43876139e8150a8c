"""A complaint timeline's entries as sentences of the catalogue in the reader's language (pages and JSON API).

Which entries and fields a reader gets is decided before this, in ``pdn_ops.complaints.timeline``; this only words them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pdn_ops.complaints.timeline import Entry
from pdn_ops.core.i18n import catalogue, translate, word

# Run events with a sentence of their own; each takes the playbook's name.
_RUN_EVENTS = ("cancelled", "started", "interrupted", "succeeded", "failed", "unknown", "confirmed", "ineffective",
               "alerted")


@dataclass(frozen=True, slots=True)
class Line:
    entry: Entry
    text: str
    summary: str = ""  # staff only: how the run ended, worded in the same language

    @property
    def run_url(self) -> str | None:
        return f"/remediation/runs/{self.entry.run_id}" if self.entry.run_id is not None else None


def _known(key: str, fallback: str, lang: str) -> str:
    return translate(key, lang) if key in catalogue() else fallback


def sentence(entry: Entry, lang: str) -> str:
    action = entry.action
    if not action.startswith(("remediation.", "security.")) or entry.playbook is None:
        # The complaint's own events; other parts of pdn-ops may add actions the catalogue does not name yet.
        return _known(f"complaints.event.{action.split('.', 1)[-1]}", action, lang)
    playbook = _known(f"remediation.playbook.{entry.playbook}", entry.playbook, lang)
    event = action.split(".", 1)[1]
    if action == "remediation.requested":
        key = "remediation.timeline.requested_auto" if entry.automatic else "remediation.timeline.requested"
        return translate(key, lang, playbook=playbook)
    if action == "remediation.plan":
        return translate("remediation.timeline.plan", lang, n=len(entry.plan))
    if action == "remediation.approved":
        return translate("remediation.timeline.approved", lang, n=entry.approval, needed=entry.approvals_needed)
    if action in ("remediation.step_intent", "remediation.step_result"):
        state = _known(f"remediation.step_state.{entry.state}", entry.state or "", lang)
        name = _known(f"remediation.step_name.{entry.step_name}", entry.step_name or "", lang)
        return translate(f"remediation.timeline.{event}", lang, n=entry.step, name=name, state=state)
    if action == "security.ssh_host_key":
        return translate("remediation.timeline.security", lang)
    if event in _RUN_EVENTS:
        return translate(f"remediation.timeline.{event}", lang, playbook=playbook)
    return action


def lines(entries: list[Entry], lang: str) -> list[Line]:
    return [Line(e, sentence(e, lang), word(e.outcome, lang) if e.outcome is not None else "") for e in entries]
