"""Every feature's tables in one metadata: what the migrations must create (checked by the tests)."""

from __future__ import annotations

from sqlalchemy import MetaData

import pdn_ops.accounts.tables
import pdn_ops.alerts.tables
import pdn_ops.complaints.tables
import pdn_ops.health.tables
import pdn_ops.notify.tables
import pdn_ops.public.tables
import pdn_ops.runs.tables
import pdn_ops.survey.tables  # noqa: F401  (each module registers its tables on the shared Base)
from pdn_ops.core.db.tables import Base


def metadata() -> MetaData:
    return Base.metadata
