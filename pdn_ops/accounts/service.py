"""Accounts: users, password hashing, server-side sessions, API tokens, login throttling, dispositions.

Session ids and API tokens are random secrets given to the client once; the database keeps only their SHA-256
(they carry 256 bits of entropy, so a fast hash is enough, unlike passwords, which get argon2).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import bindparam, delete, exists, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from pdn_ops.accounts.model import OPD_ROLES, STAFF_ROLES, Principal, Role
from pdn_ops.accounts.tables import ApiTokenRow, DispositionRow, LoginAttemptRow, UserRow, WebSessionRow
from pdn_ops.core.db.tables import AuditRow, OpdRow, utcnow
from pdn_ops.core.errors import (
    Conflict,
    LoginFailed,
    LoginThrottled,
    NotFound,
    PermissionDenied,
    WeakPassword,
)

SESSION_LIFETIME = timedelta(hours=12)
TOUCH_EVERY = timedelta(minutes=1)
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_CLIENT = 20
MIN_PASSWORD = 10
TOKEN_PREFIX = "pdn_"  # noqa: S105  (marks our tokens in logs and secret scanners; not a secret)

# Chosen on the production machine's 2 cores (README "Capacity and overload"): RFC 9106's second recommended
# profile as OWASP states it (19 MiB, 2 passes, 1 lane) costs ~25 ms of one core here, where argon2-cffi's
# default (64 MiB, 3 passes, 4 lanes) cost ~130 ms of both. Older hashes are upgraded at the next login.
_hasher = PasswordHasher(memory_cost=19 * 1024, time_cost=2, parallelism=1)
# Verified against when the user does not exist, so both failures cost the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password-" + secrets.token_hex(8))



def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def principal_of(user: UserRow) -> Principal:
    return Principal(user_id=user.id, username=user.username, role=Role(user.role), opd_id=user.opd_id,
                     language=user.language)


def audit(session: Session, actor: str, action: str, subject: str, detail: str = "",
          at: datetime | None = None) -> None:
    session.add(AuditRow(at=at or utcnow(), actor=actor, action=action, subject=subject, detail=detail))


def create_user(session: Session, *, username: str, password: str, role: Role, opd_code: str | None = None,
                display_name: str = "", language: str = "id", actor: str = "cli",
                password_hash: str | None = None) -> UserRow:
    username = username.strip().lower()
    if not username or len(username) > 64 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError("a user name is 1-64 letters, digits, '.', '-' or '_'")
    opd_id = None
    if role in OPD_ROLES:
        if not opd_code:
            raise ValueError(f"role {role} needs an OPD")
        opd = session.scalar(select(OpdRow).where(OpdRow.code == opd_code, OpdRow.retired_at.is_(None)))
        if opd is None:
            raise NotFound(f"no OPD with code {opd_code!r}")
        opd_id = opd.id
    elif opd_code:
        raise ValueError(f"role {role} is not bound to an OPD")
    if session.scalar(select(UserRow.id).where(UserRow.username == username)) is not None:
        raise Conflict(f"user {username!r} exists")
    now = utcnow()
    user = UserRow(username=username, display_name=display_name or username,
                   password_hash=password_hash or hash_password(password),
                   role=str(role), opd_id=opd_id, language=language, active=True, created_at=now, updated_at=now)
    session.add(user)
    session.flush()
    audit(session, actor, "user.create", f"user:{user.id}", f"{username} as {role}", at=now)
    return user


def _recent_failures(session: Session, column: InstrumentedAttribute[str], value: str, now: datetime) -> int:
    stmt = select(func.count()).select_from(LoginAttemptRow).where(
        column == value, LoginAttemptRow.at > now - THROTTLE_WINDOW
    )
    return int(session.scalar(stmt) or 0)


@dataclass(frozen=True, slots=True)
class LoginCandidate:
    """What a login checks the password against, read in a short transaction of its own: argon2 then runs outside
    any transaction (it held SQLite's write lock for half a second a login, and 200 logins queued past the busy
    timeout)."""

    name: str
    client: str
    user_id: int | None
    password_hash: str  # the dummy hash for an unknown or inactive user: both failures cost the same time
    active: bool


def login_candidate(session: Session, *, username: str, client: str, now: datetime | None = None) -> LoginCandidate:
    """Step 1 of a login (reads only); raises LoginThrottled after too many recent failures."""
    now = now or utcnow()
    name = username.strip().lower()[:64]
    client = client[:64]
    if (_recent_failures(session, LoginAttemptRow.username, name, now) >= MAX_FAILURES_PER_USER
            or _recent_failures(session, LoginAttemptRow.client, client, now) >= MAX_FAILURES_PER_CLIENT):
        raise LoginThrottled("too many failed attempts")
    row = session.execute(select(UserRow.id, UserRow.password_hash, UserRow.active)
                          .where(UserRow.username == name)).first()
    if row is None:
        return LoginCandidate(name, client, None, _DUMMY_HASH, False)
    return LoginCandidate(name, client, row.id, row.password_hash, bool(row.active))


@dataclass(frozen=True, slots=True)
class PasswordVerdict:
    ok: bool
    new_hash: str | None = None  # the same password under the current parameters, when the stored hash is older


def check_password(candidate: LoginCandidate, password: str) -> PasswordVerdict:
    """Step 2 (CPU only, no database): the caller runs it behind the password gate, outside any transaction."""
    try:
        ok: bool = _hasher.verify(candidate.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok or candidate.user_id is None or not candidate.active:
        return PasswordVerdict(False)
    return PasswordVerdict(True, _hasher.hash(password) if _hasher.check_needs_rehash(candidate.password_hash)
                           else None)


class CredentialsChanged(Exception):
    """The password or the account changed between the check and the session's start: check again."""


def login_failed(session: Session, candidate: LoginCandidate, now: datetime | None = None) -> None:
    session.add(LoginAttemptRow(username=candidate.name, client=candidate.client, at=now or utcnow()))


def start_session(session: Session, candidate: LoginCandidate, verdict: PasswordVerdict,
                  now: datetime | None = None) -> tuple[str, WebSessionRow, UserRow]:
    """Step 3, in a short write transaction: the session, if the hash checked is still the stored one (a login
    racing a password change or a re-hash raises CredentialsChanged, and the caller checks again)."""
    now = now or utcnow()
    user = session.get(UserRow, candidate.user_id) if candidate.user_id is not None else None
    if user is None or user.password_hash != candidate.password_hash or not user.active:
        raise CredentialsChanged(candidate.name)
    if verdict.new_hash is not None:
        user.password_hash = verdict.new_hash
    key = secrets.token_urlsafe(32)
    row = WebSessionRow(key_hash=_digest(key), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                        created_at=now, expires_at=now + SESSION_LIFETIME)
    session.add(row)
    audit(session, user.username, "user.login", f"user:{user.id}", at=now)
    session.flush()
    return key, row, user


def login(session: Session, *, username: str, password: str, client: str,
          now: datetime | None = None) -> tuple[str, WebSessionRow, UserRow]:
    """All three steps in the caller's one transaction (the CLI and tests); the web login splits them."""
    candidate = login_candidate(session, username=username, client=client, now=now)
    verdict = check_password(candidate, password)
    if not verdict.ok:
        login_failed(session, candidate, now)
        raise LoginFailed("unknown user or wrong password")
    return start_session(session, candidate, verdict, now)


@dataclass(frozen=True, slots=True)
class Authenticated:
    principal: Principal
    csrf_token: str | None  # None for API tokens, which are exempt from CSRF
    via: str  # session | token
    token_id: int | None = None
    touch: bool = False  # the token's last use is more than a minute old: record it (see touch_token)


# Every request runs one of these two lookups: plain columns, not ORM objects, keep them cheap.
_WHO = (UserRow.id, UserRow.username, UserRow.role, UserRow.opd_id, UserRow.language)


def _principal(row: Any) -> Principal:
    return Principal(user_id=row.id, username=row.username, role=Role(row.role), opd_id=row.opd_id,
                     language=row.language)


# Built once: a statement object memoises its cache key, so each request skips building and keying the query;
# run on the session's connection, since plain columns need none of the ORM's loading machinery.
_BY_SESSION_KEY = (
    select(*_WHO, WebSessionRow.csrf_token).join(WebSessionRow, UserRow.id == WebSessionRow.user_id).where(
        WebSessionRow.key_hash == bindparam("key_hash"), WebSessionRow.revoked_at.is_(None),
        WebSessionRow.expires_at > bindparam("now", type_=WebSessionRow.expires_at.type), UserRow.active.is_(True)))
_BY_API_TOKEN = (
    select(*_WHO, ApiTokenRow.id.label("token_id"), ApiTokenRow.last_used_at)
    .join(ApiTokenRow, UserRow.id == ApiTokenRow.user_id).where(
        ApiTokenRow.token_hash == bindparam("token_hash"), ApiTokenRow.revoked_at.is_(None), UserRow.active.is_(True)))


def by_session_key(session: Session, key: str, now: datetime | None = None) -> Authenticated | None:
    row = session.connection().execute(_BY_SESSION_KEY, {"key_hash": _digest(key), "now": now or utcnow()}).first()
    if row is None:
        return None
    return Authenticated(_principal(row), row.csrf_token, "session")


def by_api_token(session: Session, token: str, now: datetime | None = None) -> Authenticated | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    now = now or utcnow()
    row = session.connection().execute(_BY_API_TOKEN, {"token_hash": _digest(token)}).first()
    if row is None:
        return None
    stale = row.last_used_at is None or now - row.last_used_at > TOUCH_EVERY
    return Authenticated(_principal(row), None, "token", row.token_id, stale)


def token_key(token: str) -> str | None:
    """What a cache of token lookups may key on: the token's digest (never the token), None for no API token."""
    return _digest(token) if token.startswith(TOKEN_PREFIX) else None


def token_still_valid(token_id: Any) -> Any:
    """A condition a read adds to its own query when it trusts a cached token lookup: true while the token is not
    revoked and its user active. One index probe inside the read, instead of a round trip of its own."""
    return exists(select(ApiTokenRow.id).join(UserRow, UserRow.id == ApiTokenRow.user_id).where(
        ApiTokenRow.id == token_id, ApiTokenRow.revoked_at.is_(None), UserRow.active.is_(True)))


def touch_token(session: Session, token_id: int, now: datetime | None = None) -> None:
    """Record a token's use, at most once a minute, in a transaction of its own that starts with the write.

    A read-then-write transaction cannot wait for a concurrent writer on SQLite (its snapshot is stale), so
    parallel API calls would fail with "database is locked"; a conditional UPDATE alone simply waits its turn.
    """
    now = now or utcnow()
    session.execute(update(ApiTokenRow).where(
        ApiTokenRow.id == token_id,
        (ApiTokenRow.last_used_at.is_(None)) | (ApiTokenRow.last_used_at < now - TOUCH_EVERY),
    ).values(last_used_at=now))


def logout(session: Session, key: str, now: datetime | None = None) -> None:
    session.execute(update(WebSessionRow).where(WebSessionRow.key_hash == _digest(key),
                                                WebSessionRow.revoked_at.is_(None)).values(revoked_at=now or utcnow()))


@dataclass(frozen=True, slots=True)
class Revoked:
    sessions: int
    tokens: int

    def __str__(self) -> str:
        return f"{self.sessions} session(s) and {self.tokens} API token(s) revoked"


def revoke_credentials(session: Session, user_id: int, now: datetime | None = None) -> Revoked:
    """End every server-side session and revoke every API token of the user: after any change of who they are or
    what they may do (role, password, deactivation), nothing issued before keeps working."""
    now = now or utcnow()
    sessions = session.execute(update(WebSessionRow).where(
        WebSessionRow.user_id == user_id, WebSessionRow.revoked_at.is_(None)).values(revoked_at=now))
    tokens = session.execute(update(ApiTokenRow).where(
        ApiTokenRow.user_id == user_id, ApiTokenRow.revoked_at.is_(None)).values(revoked_at=now))
    return Revoked(int(getattr(sessions, "rowcount", 0) or 0), int(getattr(tokens, "rowcount", 0) or 0))


def revoke_sessions(session: Session, user_id: int, now: datetime | None = None) -> None:
    session.execute(update(WebSessionRow).where(WebSessionRow.user_id == user_id,
                                                WebSessionRow.revoked_at.is_(None)).values(revoked_at=now or utcnow()))


def stored_hash(session: Session, user_id: int) -> str:
    found = session.scalar(select(UserRow.password_hash).where(UserRow.id == user_id))
    if found is None:
        raise NotFound("no such user")
    return found


def prepare_password_change(old_hash: str, *, current: str, new: str) -> str:
    """CPU only (run behind the password gate, outside any transaction): check ``current``, hash ``new``."""
    try:
        _hasher.verify(old_hash, current)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        raise LoginFailed("wrong password") from None
    return hash_password(new)


def apply_password_change(session: Session, principal: Principal, *, old_hash: str, new_hash: str) -> Revoked:
    """Store the new hash if the old one is still in place, and end every session AND API token of the user: a
    token issued under the old password must not outlive it (whoever changes a password after a leak expects
    every credential of the old one to stop)."""
    user = session.get(UserRow, principal.user_id)
    if user is None:
        raise NotFound("no such user")
    if user.password_hash != old_hash:
        raise CredentialsChanged(principal.username)
    now = utcnow()
    user.password_hash = new_hash
    user.updated_at = now
    revoked = revoke_credentials(session, user.id, now)
    audit(session, principal.username, "user.password", f"user:{user.id}", str(revoked), at=now)
    return revoked


def change_password(session: Session, principal: Principal, *, current: str, new: str) -> Revoked:
    """The whole change in one transaction (the CLI and tests); the web route keeps argon2 out of it."""
    old_hash = stored_hash(session, principal.user_id)
    return apply_password_change(session, principal, old_hash=old_hash,
                                 new_hash=prepare_password_change(old_hash, current=current, new=new))


def set_role(session: Session, actor: Principal, user_id: int, role: Role) -> None:
    if actor.role is not Role.SUPERVISOR:
        raise PermissionDenied("only supervisors change roles")
    user = session.get(UserRow, user_id)
    if user is None:
        raise NotFound("no such user")
    if (role in OPD_ROLES) != (user.role in {str(r) for r in OPD_ROLES}):
        raise ValueError("a role change cannot move a user between an OPD and Diskominfo")
    now = utcnow()
    user.role = str(role)
    user.updated_at = now
    # A token would otherwise keep acting with the new role's rights without the person logging in again.
    revoke_credentials(session, user.id, now)
    audit(session, actor.username, "user.role", f"user:{user.id}", str(role))


def create_token(session: Session, principal: Principal, name: str) -> tuple[str, ApiTokenRow]:
    name = name.strip()[:100] or "script"
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiTokenRow(user_id=principal.user_id, name=name, token_hash=_digest(token), prefix=token[:12],
                      created_at=utcnow())
    session.add(row)
    session.flush()
    audit(session, principal.username, "token.create", f"user:{principal.user_id}", f"{name} ({row.prefix}...)")
    return token, row


def list_tokens(session: Session, principal: Principal) -> list[ApiTokenRow]:
    stmt = select(ApiTokenRow).where(ApiTokenRow.user_id == principal.user_id).order_by(ApiTokenRow.id)
    return list(session.scalars(stmt))


def revoke_token(session: Session, principal: Principal, token_id: int) -> None:
    row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.id == token_id,
                                                   ApiTokenRow.user_id == principal.user_id))
    if row is None:
        raise NotFound("no such token")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit(session, principal.username, "token.revoke", f"user:{principal.user_id}", row.prefix)


# --- Step 1 of the procedure: the OPD head's disposition -------------------------------------------------------

def opd_admins(session: Session, head: Principal) -> list[UserRow]:
    if head.role is not Role.OPD_HEAD:
        raise PermissionDenied("only an OPD head manages admins")
    stmt = select(UserRow).where(UserRow.opd_id == head.opd_scope(), UserRow.role == str(Role.OPD_ADMIN))
    return list(session.scalars(stmt.order_by(UserRow.username)))


def dispositions(session: Session, head: Principal) -> list[DispositionRow]:
    stmt = select(DispositionRow).where(DispositionRow.opd_id == head.opd_scope())
    return list(session.scalars(stmt.order_by(DispositionRow.id.desc()).limit(50)))


def assign_admin(session: Session, head: Principal, *, username: str, display_name: str, password: str,
                 note: str = "") -> UserRow:
    """Create (or re-activate) an admin of the head's own OPD; the OPD comes from the session, never the form."""
    if head.role is not Role.OPD_HEAD:
        raise PermissionDenied("only an OPD head assigns admins")
    opd_id = head.opd_scope()
    name = username.strip().lower()
    existing = session.scalar(select(UserRow).where(UserRow.username == name))
    now = utcnow()
    if existing is not None:
        if existing.opd_id != opd_id or existing.role != str(Role.OPD_ADMIN):
            raise Conflict(f"user {name!r} exists")
        existing.active = True
        existing.password_hash = hash_password(password)
        existing.updated_at = now
        # A new password from the head: whoever held the old one (or a token made with it) is logged out.
        revoke_credentials(session, existing.id, now)
        user = existing
    else:
        opd = session.get(OpdRow, opd_id)
        if opd is None:
            raise NotFound("no such OPD")
        user = create_user(session, username=name, password=password, role=Role.OPD_ADMIN, opd_code=opd.code,
                           display_name=display_name, actor=head.username)
    session.add(DispositionRow(opd_id=opd_id, head_id=head.user_id, admin_id=user.id, action="assign",
                               note=note.strip()[:2000], at=now))
    audit(session, head.username, "disposition.assign", f"user:{user.id}", note.strip()[:200], at=now)
    session.flush()
    return user


def revoke_admin(session: Session, head: Principal, admin_id: int, note: str = "") -> None:
    if head.role is not Role.OPD_HEAD:
        raise PermissionDenied("only an OPD head revokes admins")
    user = session.scalar(select(UserRow).where(UserRow.id == admin_id, UserRow.opd_id == head.opd_scope(),
                                                UserRow.role == str(Role.OPD_ADMIN)))
    if user is None:
        raise NotFound("no such admin")
    now = utcnow()
    user.active = False
    user.updated_at = now
    revoke_credentials(session, user.id, now)
    session.add(DispositionRow(opd_id=user.opd_id or 0, head_id=head.user_id, admin_id=user.id, action="revoke",
                               note=note.strip()[:2000], at=now))
    audit(session, head.username, "disposition.revoke", f"user:{user.id}", note.strip()[:200], at=now)


def usernames(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(select(UserRow.id, UserRow.display_name).where(UserRow.id.in_(ids)))
    return {row.id: row.display_name for row in rows}


def staff_members(session: Session) -> list[tuple[int, str]]:
    """Active engineers and supervisors as (id, name), for assigning complaints."""
    rows = session.execute(select(UserRow.id, UserRow.username, UserRow.display_name)
                           .where(UserRow.active.is_(True), UserRow.role.in_([str(r) for r in STAFF_ROLES]))
                           .order_by(UserRow.username))
    return [(row.id, row.display_name or row.username) for row in rows]


def staff_name(session: Session, user_id: int) -> str | None:
    """The name of an active engineer or supervisor, None for anyone else."""
    return dict(staff_members(session)).get(user_id)


DEMO_PASSWORD = "demo-password-1"  # noqa: S105  (printed by `make run`; demo mode only)


@cache
def _demo_hash() -> str:
    # One argon2 hash (about half a second) for every demo account, which share the printed password.
    return hash_password(DEMO_PASSWORD)


def ensure_demo_accounts(session: Session) -> list[tuple[str, str, str]]:
    """Demo mode: an engineer, a supervisor, and a head and admin for the first two OPDs. Returns (user, role, opd)."""
    wanted: list[tuple[str, Role, str | None]] = [("engineer", Role.ENGINEER, None),
                                                  ("supervisor", Role.SUPERVISOR, None)]
    opds = list(session.scalars(select(OpdRow).where(OpdRow.retired_at.is_(None)).order_by(OpdRow.id).limit(2)))
    for opd in opds:
        wanted += [(f"head-{opd.code}", Role.OPD_HEAD, opd.code), (f"admin-{opd.code}", Role.OPD_ADMIN, opd.code)]
    made = []
    for username, role, opd_code in wanted:
        if session.scalar(select(UserRow.id).where(UserRow.username == username)) is None:
            create_user(session, username=username, password=DEMO_PASSWORD, role=role, opd_code=opd_code,
                        actor="demo", password_hash=_demo_hash())
        made.append((username, str(role), opd_code or "-"))
    return made


# Failed logins matter for THROTTLE_WINDOW; a day keeps them for a look after an attack. A session past its expiry
# (or revoked) authenticates nobody; a day's grace keeps "why was I logged out?" answerable.
LOGIN_ATTEMPTS_RETENTION = timedelta(days=1)
SESSIONS_RETENTION = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Purged:
    login_attempts: int
    sessions: int


def purge_stale(session: Session, *, now: datetime | None = None) -> Purged:
    """Delete failed-login records and ended web sessions that no check reads any more."""
    now = now or utcnow()
    attempts = session.execute(delete(LoginAttemptRow).where(LoginAttemptRow.at < now - LOGIN_ATTEMPTS_RETENTION))
    cutoff = now - SESSIONS_RETENTION
    ended = session.execute(delete(WebSessionRow).where(
        or_(WebSessionRow.expires_at < cutoff, WebSessionRow.revoked_at < cutoff)))
    return Purged(login_attempts=int(getattr(attempts, "rowcount", 0) or 0),
                  sessions=int(getattr(ended, "rowcount", 0) or 0))
