"""Authentication and CSRF for the web layer.

- ``Authenticator`` maps a request to its ``Principal``; the runtime keeps one in ``AccountsParts.authenticate``
  (``pdn_ops.accounts.parts``), which ``current_principal`` and the page shell read.
- A session cookie holds only a random id (HttpOnly, SameSite=Lax, Secure behind HTTPS); a bearer token in the
  ``Authorization`` header authenticates scripts and then the cookie is ignored, which is why token requests
  need no CSRF token.
- ``csrf_guard`` runs on every route of the app (an app-wide dependency): a state-changing request made with a
  session must carry the session's synchroniser token (form field ``csrf_token`` or header ``X-CSRF-Token``);
  without a session (the login form) it must match a per-browser token cookie."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict

from fastapi import HTTPException, Request, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from pdn_ops.accounts import service as accounts
from pdn_ops.accounts.model import Principal
from pdn_ops.accounts.parts import accounts_parts
from pdn_ops.core.db.engine import transaction

SESSION_COOKIE = "pdn_session"


PRE_CSRF_COOKIE = "pdn_csrf"


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


TOKEN_CACHE_SIZE = 1024  # API tokens whose lookup a process keeps (least recently used dropped first)


class Authenticator:
    """Maps a request to its Principal (or None), once per request: the answer is kept on ``request.state``.

    ``in_session`` makes the lookup in a session the caller already holds, so a hot read (the JSON lists) uses one
    connection for the whole request instead of two. ``guarded`` goes further for those reads: an API token looked
    up before is taken from this process's cache, and the read adds ``token_still_valid`` to its own query, so the
    request makes one round trip, and a token revoked in any process stops working at once (an empty answer is
    then checked with the full lookup, see ``confirm``).
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._tokens: OrderedDict[str, tuple[accounts.Authenticated, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Principal | None:
        if hasattr(request.state, "auth"):
            return self._cached(request)
        if _bearer(request) is None and not request.cookies.get(SESSION_COOKIE):
            return self._remember(request, None)
        with transaction(self._sessions) as session:
            return self.in_session(request, session)

    def in_session(self, request: Request, session: Session) -> Principal | None:
        if hasattr(request.state, "auth"):
            return self._cached(request)
        found: accounts.Authenticated | None = None
        token = _bearer(request)
        key = request.cookies.get(SESSION_COOKIE)
        if token is not None:
            found = accounts.by_api_token(session, token)
        elif key:
            found = accounts.by_session_key(session, key)
        if found is not None and found.touch and found.token_id is not None:
            self._touch(found.token_id)
        return self._remember(request, found)

    def guarded(self, request: Request, session: Session) -> tuple[Principal | None, int | None]:
        """The principal, and the id of the API token the caller's query must check with ``token_still_valid``
        (None when this request looked the credential up in full)."""
        if hasattr(request.state, "auth"):
            return self._cached(request), getattr(request.state, "auth_guard", None)
        token = _bearer(request)
        cache_key = accounts.token_key(token) if token is not None else None
        if cache_key is None:
            return self.in_session(request, session), None
        now = time.monotonic()
        with self._lock:
            entry = self._tokens.get(cache_key)
            if entry is not None:
                self._tokens.move_to_end(cache_key)
        if entry is None:
            principal = self.in_session(request, session)
            found: accounts.Authenticated | None = request.state.auth
            if found is not None:
                with self._lock:
                    self._tokens[cache_key] = (found, now)
                    while len(self._tokens) > TOKEN_CACHE_SIZE:
                        self._tokens.popitem(last=False)
            return principal, None
        found, touched = entry
        if now - touched > accounts.TOUCH_EVERY.total_seconds() and found.token_id is not None:
            self._touch(found.token_id)
            with self._lock:
                self._tokens[cache_key] = (found, now)
        request.state.auth_guard = found.token_id
        return self._remember(request, found), found.token_id

    def confirm(self, request: Request, session: Session) -> Principal | None:
        """The full lookup, for a guarded read that came back empty: was it empty, or is the token revoked?"""
        token = _bearer(request)
        cache_key = accounts.token_key(token) if token is not None else None
        if cache_key is not None:
            with self._lock:
                self._tokens.pop(cache_key, None)
        for name in ("auth", "auth_guard"):
            if hasattr(request.state, name):
                delattr(request.state, name)
        return self.in_session(request, session)

    def _touch(self, token_id: int) -> None:
        # A write of its own (at most once a minute per token), whatever the caller's session is doing.
        with transaction(self._sessions) as writer:
            accounts.touch_token(writer, token_id)

    @staticmethod
    def _cached(request: Request) -> Principal | None:
        cached: accounts.Authenticated | None = request.state.auth
        return cached.principal if cached else None

    @staticmethod
    def _remember(request: Request, found: accounts.Authenticated | None) -> Principal | None:
        request.state.auth = found
        return found.principal if found else None


def principal_or_none(request: Request) -> Principal | None:
    return accounts_parts(request).authenticate(request)


def known_principal(request: Request) -> Principal | None:
    """The reader if this request already looked them up, else None: never a database call (error pages)."""
    auth: accounts.Authenticated | None = getattr(request.state, "auth", None)
    return auth.principal if auth is not None else None


def known_csrf_token(request: Request) -> str:
    auth: accounts.Authenticated | None = getattr(request.state, "auth", None)
    return (auth.csrf_token or "") if auth is not None else ""


def csrf_token(request: Request) -> str:
    """The token a form on this page must send back."""
    principal_or_none(request)
    auth: accounts.Authenticated | None = getattr(request.state, "auth", None)
    if auth is not None and auth.csrf_token:
        return auth.csrf_token
    existing = request.cookies.get(PRE_CSRF_COOKIE) or getattr(request.state, "new_pre_csrf", None)
    if existing:
        return str(existing)
    fresh = secrets.token_urlsafe(32)
    request.state.new_pre_csrf = fresh
    return fresh


def finish_response(request: Request, response: Response) -> None:
    """Set the pre-session CSRF cookie if this page created one."""
    fresh = getattr(request.state, "new_pre_csrf", None)
    if fresh:
        response.set_cookie(PRE_CSRF_COOKIE, fresh, httponly=True, samesite="lax", path="/",
                            secure=request.url.scheme == "https")


# Provider webhooks carry no session cookie (CSRF rides on cookies) and authenticate every body by its HMAC
# signature instead (pdn_ops.notify.routes); a CSRF token could never be sent by the provider.
CSRF_EXEMPT_PREFIXES = ("/webhooks/",)


async def csrf_guard(request: Request) -> None:
    if request.method in SAFE_METHODS or _bearer(request) is not None:
        return
    if request.url.path.startswith(CSRF_EXEMPT_PREFIXES):
        return
    # The lookup is a database call: in a worker thread, never on the event loop (a loop waiting for a pool
    # connection cannot let the requests holding the connections finish).
    await run_in_threadpool(principal_or_none, request)
    auth: accounts.Authenticated | None = getattr(request.state, "auth", None)
    expected = auth.csrf_token if auth is not None else request.cookies.get(PRE_CSRF_COOKIE)
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(sent, expected):
        raise HTTPException(status_code=403, detail="CSRF token missing or wrong")


def set_session_cookie(request: Request, response: Response, key: str) -> None:
    response.set_cookie(SESSION_COOKIE, key, httponly=True, samesite="lax", path="/",
                        secure=request.url.scheme == "https", max_age=int(accounts.SESSION_LIFETIME.total_seconds()))
    response.delete_cookie(PRE_CSRF_COOKIE, path="/")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
