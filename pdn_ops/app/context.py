"""What the app keeps for its lifetime, reached from requests through ``request.app.state.ctx``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pdn_ops.core.inventory import Inventory
from pdn_ops.core.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    inventory: Inventory | None = None
    extras: dict[str, Any] = field(default_factory=dict)
