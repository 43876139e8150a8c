"""What the accounts feature keeps for the app's lifetime, and how a request reaches it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request

from pdn_ops.accounts.model import Principal
from pdn_ops.core.gates import Gate

# Maps a request to who is asking (None: nobody signed in). The real one is ``auth.Authenticator``; a test may
# hand the runtime a plain function instead, and the pages and routes all follow it.
Authenticate = Callable[[Request], Principal | None]


@dataclass(eq=False)
class AccountsParts:
    authenticate: Authenticate
    # argon2 checks and hashes at once (each ~25 ms of one core, see README "Capacity and overload"), with a
    # bounded queue: beyond it a login answers 503 with Retry-After instead of holding a thread for a minute.
    password_gate: Gate = field(default_factory=lambda: Gate("password checks", limit=2, queue=32,
                                                             wait_seconds=10.0))


def accounts_parts(request: Request) -> AccountsParts:
    parts = request.app.state.runtime.accounts
    assert isinstance(parts, AccountsParts)
    return parts
