"""Settings a supervisor changes in the portal (issue 5): the complaint procedure's terms.

One row at most (``id`` 1). Without it the environment's values apply; the row is never deleted, and every
change is in the audit log with its old and new values.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pdn_ops.db.tables import Base, utcnow


class ProcedureSettingsRow(Base):
    __tablename__ = "procedure_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    sla_days: Mapped[int] = mapped_column(Integer)
    sla_working_days: Mapped[bool] = mapped_column()
    holidays: Mapped[list[str]] = mapped_column(JSON, default=list)  # ISO dates, sorted
    autoclose_days: Mapped[float] = mapped_column(Float)
    # Bumped by every save: a form or API client sends the revision it read, so two supervisors cannot
    # silently overwrite each other.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64))
