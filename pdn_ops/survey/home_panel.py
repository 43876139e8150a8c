"""The survey's part of an OPD user's home: the surveys waiting for them (none shown when none waits)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from pdn_ops.survey.service import pending_for


def panel(request: Request, session: Session, user: Any) -> tuple[str, dict[str, Any]] | None:
    if user.is_staff:
        return None
    waiting = pending_for(session, user)
    return ("home_survey.html", {"waiting": waiting[:5]}) if waiting else None
