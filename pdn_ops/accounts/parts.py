"""What the accounts feature keeps for the app's lifetime, and how a request reaches it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from pdn_ops.accounts.model import Principal

# Maps a request to who is asking (None: nobody signed in). The real one is ``auth.Authenticator``; a test may
# hand the runtime a plain function instead, and the pages and routes all follow it.
Authenticate = Callable[[Request], Principal | None]


@dataclass(eq=False)
class AccountsParts:
    authenticate: Authenticate


def accounts_parts(request: Request) -> AccountsParts:
    parts = request.app.state.runtime.accounts
    assert isinstance(parts, AccountsParts)
    return parts
