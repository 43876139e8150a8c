"""The parts every feature shares: settings, the database and the inventory, built once by the composition root.

``pdn_ops.app.runtime.Runtime`` extends this with each feature's own parts. Feature code reaches it through the
``Ctx`` dependency (``pdn_ops.web.deps``) in requests and as an argument everywhere else: never as a global.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.inventory import Inventory
from pdn_ops.core.settings import Settings


@dataclass(eq=False)
class CoreParts:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    # The inventory as last synced into the database (the start hook loads it); None before that.
    inventory: Inventory | None = None
