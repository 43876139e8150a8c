"""A supervisor manages accounts: list, create, contacts, role, deactivate/reactivate, password reset.

Rules:
- Only a supervisor calls these (anyone else gets ``PermissionDenied``, answered as 404).
- A supervisor creates engineers, supervisors and OPD heads. OPD admins are assigned by their OPD's head (step 1
  of the procedure, a recorded disposition), so a supervisor neither creates one nor turns anyone into one.
- A role change never moves a person between an OPD and Diskominfo (that is a new account).
- Every role change, deactivation and password reset ends the user's server-side sessions and revokes their API
  tokens in the same transaction, and is audited with who, when, and the old and new value.
- No change may leave the service without an active supervisor (the last one cannot deactivate or demote
  themselves). The active supervisors are locked while counting, so two concurrent changes cannot both pass.

Form problems raise ``UserInvalid`` with ``{field: catalogue key}``, every problem at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pdn_ops.accounts import service as accounts
from pdn_ops.accounts.model import OPD_ROLES, STAFF_ROLES, Principal, Role
from pdn_ops.accounts.tables import UserRow
from pdn_ops.core import contacts
from pdn_ops.core.db.tables import AuditRow, OpdRow, utcnow
from pdn_ops.core.errors import Conflict, NotFound, PermissionDenied, UserInvalid, WeakPassword

# What a supervisor may create, or change a role to.
ASSIGNABLE = (Role.ENGINEER, Role.SUPERVISOR, Role.OPD_HEAD)
MAX_LISTED = 500
WEAK_PASSWORD = "auth.password_weak"  # noqa: S105  (a catalogue key, not a password)



class LastSupervisor(Conflict):
    """The change would leave no active supervisor."""


def _need_supervisor(actor: Principal) -> None:
    if actor.role is not Role.SUPERVISOR:
        raise PermissionDenied("only a supervisor manages accounts")


def _audit(session: Session, actor: Principal, action: str, user: UserRow, detail: str, now: datetime) -> None:
    session.add(AuditRow(at=now, actor=actor.username, action=action, subject=f"user:{user.id}",
                         detail=f"{user.username}: {detail}"[:4000]))


def normalise_phone(raw: str) -> str | None:
    """``+62 812-3456-7890`` -> ``+6281234567890``; empty -> None; anything but an Indonesian mobile number raises
    ValueError (the number is for WhatsApp)."""
    return contacts.whatsapp_number(raw) if raw.strip() else None


def normalise_email(raw: str) -> str | None:
    return contacts.email_address(raw) if raw.strip() else None


def _contacts(phone: str, email: str, errors: dict[str, str]) -> tuple[str | None, str | None]:
    found_phone = found_email = None
    try:
        found_phone = normalise_phone(phone)
    except ValueError:
        errors["phone"] = "users.error.phone"
    try:
        found_email = normalise_email(email)
    except ValueError:
        errors["email"] = "users.error.email"
    return found_phone, found_email


def _keep_a_supervisor(session: Session, user: UserRow) -> None:
    """Refuse when ``user`` is the last active supervisor; locks the supervisors while counting."""
    if user.role != str(Role.SUPERVISOR) or not user.active:
        return
    others = session.scalars(select(UserRow.id).where(
        UserRow.role == str(Role.SUPERVISOR), UserRow.active.is_(True), UserRow.id != user.id).with_for_update())
    if not list(others):
        raise LastSupervisor("the last active supervisor cannot be deactivated or demoted")


# --- reading ---------------------------------------------------------------------------------------------------

def list_users(session: Session, actor: Principal, *, role: str | None = None, opd_id: int | None = None,
               active: bool | None = None, by_id: bool = False, after_id: int | None = None,
               offset: int = 0, limit: int = MAX_LISTED) -> list[UserRow]:
    """Diskominfo first, then by OPD and name, from ``offset`` (the page); ``by_id`` after ``after_id`` (the API's
    keyset pages). At most ``MAX_LISTED`` rows either way."""
    _need_supervisor(actor)
    stmt = _filtered(select(UserRow), role, opd_id, active).limit(min(limit, MAX_LISTED))
    if by_id:
        if after_id is not None:
            stmt = stmt.where(UserRow.id > after_id)
        return list(session.scalars(stmt.order_by(UserRow.id)))
    return list(session.scalars(stmt.order_by(UserRow.opd_id.is_not(None), UserRow.opd_id, UserRow.username)
                                .offset(offset)))


def _filtered(stmt: Any, role: str | None, opd_id: int | None, active: bool | None) -> Any:
    if role:
        stmt = stmt.where(UserRow.role == role)
    if opd_id is not None:
        stmt = stmt.where(UserRow.opd_id == opd_id)
    if active is not None:
        stmt = stmt.where(UserRow.active.is_(active))
    return stmt


def count_users(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(UserRow)) or 0)


def get_user(session: Session, actor: Principal, user_id: int, *, for_update: bool = False) -> UserRow:
    _need_supervisor(actor)
    stmt = select(UserRow).where(UserRow.id == user_id)
    user = session.scalar(stmt.with_for_update() if for_update else stmt)
    if user is None:
        raise NotFound("no such user")
    return user


def history(session: Session, user: UserRow, limit: int = 30) -> list[AuditRow]:
    stmt = select(AuditRow).where(AuditRow.subject == f"user:{user.id}").order_by(AuditRow.id.desc()).limit(limit)
    return list(session.scalars(stmt))


# --- changes ---------------------------------------------------------------------------------------------------

def create(session: Session, actor: Principal, *, username: str, display_name: str, role: str,
           opd_code: str, password: str, phone: str = "", email: str = "", language: str = "id",
           now: datetime | None = None) -> UserRow:
    _need_supervisor(actor)
    now = now or utcnow()
    errors: dict[str, str] = {}
    name = username.strip().lower()
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum() \
            or not name.isascii():
        errors["username"] = "users.error.username"
    elif session.scalar(select(UserRow.id).where(UserRow.username == name)) is not None:
        errors["username"] = "users.error.exists"
    chosen: Role | None = None
    try:
        chosen = Role(role)
        if chosen not in ASSIGNABLE:
            errors["role"] = "users.error.role_admin"
    except ValueError:
        errors["role"] = "users.error.role"
    opd = None
    if chosen in OPD_ROLES:
        opd = session.scalar(select(OpdRow).where(OpdRow.code == opd_code.strip(), OpdRow.retired_at.is_(None)))
        if opd is None:
            errors["opd"] = "users.error.opd"
    elif chosen is not None and opd_code.strip():
        errors["opd"] = "users.error.opd_staff"
    if len(password) < accounts.MIN_PASSWORD:
        errors["password"] = WEAK_PASSWORD
    if language not in ("id", "en"):
        errors["language"] = "users.error.language"
    if len(display_name.strip()) > 200:
        errors["display_name"] = "users.error.display_name"
    found_phone, found_email = _contacts(phone, email, errors)
    if errors:
        raise UserInvalid(errors)
    assert chosen is not None
    user = accounts.create_user(session, username=name, password=password, role=chosen,
                                opd_code=opd.code if opd is not None else None,
                                display_name=display_name.strip(), language=language, actor=actor.username)
    user.phone, user.email = found_phone, found_email
    _audit(session, actor, "user.contact", user, f"phone: - -> {found_phone or '-'}; email: - -> {found_email or '-'}",
           now)
    return user


def set_contact(session: Session, actor: Principal, user_id: int, *, display_name: str, phone: str, email: str,
                language: str | None = None, now: datetime | None = None) -> UserRow:
    user = get_user(session, actor, user_id, for_update=True)
    now = now or utcnow()
    errors: dict[str, str] = {}
    found_phone, found_email = _contacts(phone, email, errors)
    name = display_name.strip()
    if len(name) > 200:
        errors["display_name"] = "users.error.display_name"
    if language is not None and language not in ("id", "en"):
        errors["language"] = "users.error.language"
    if errors:
        raise UserInvalid(errors)
    changes = []
    for label, old, new in (("name", user.display_name, name or user.username), ("phone", user.phone, found_phone),
                            ("email", user.email, found_email),
                            ("language", user.language, language if language is not None else user.language)):
        if old != new:
            changes.append(f"{label}: {old or '-'} -> {new or '-'}")
    if changes:
        user.display_name = name or user.username
        user.phone, user.email = found_phone, found_email
        if language is not None:
            user.language = language
        user.updated_at = now
        _audit(session, actor, "user.contact", user, "; ".join(changes), now)
    return user


def change_role(session: Session, actor: Principal, user_id: int, role: str,
                now: datetime | None = None) -> accounts.Revoked | None:
    """Returns what was revoked, or None when the role was already that."""
    user = get_user(session, actor, user_id, for_update=True)
    now = now or utcnow()
    try:
        wanted = Role(role)
    except ValueError:
        raise UserInvalid({"role": "users.error.role"}) from None
    if str(wanted) == user.role:
        return None
    if wanted not in ASSIGNABLE:
        raise UserInvalid({"role": "users.error.role_admin"})
    if (wanted in OPD_ROLES) != (Role(user.role) in OPD_ROLES) or not (wanted in STAFF_ROLES or user.opd_id):
        raise UserInvalid({"role": "users.error.role_move"})
    _keep_a_supervisor(session, user)
    old = user.role
    user.role = str(wanted)
    user.updated_at = now
    revoked = accounts.revoke_credentials(session, user.id, now)
    _audit(session, actor, "user.role", user, f"{old} -> {wanted}; {revoked}", now)
    return revoked


def set_active(session: Session, actor: Principal, user_id: int, active: bool,
               now: datetime | None = None) -> accounts.Revoked | None:
    """Deactivate (ends sessions, revokes tokens) or reactivate; None when it already was so."""
    user = get_user(session, actor, user_id, for_update=True)
    now = now or utcnow()
    if user.active == active:
        return None
    if not active:
        _keep_a_supervisor(session, user)
    user.active = active
    user.updated_at = now
    if active:
        _audit(session, actor, "user.reactivate", user, "inactive -> active", now)
        return accounts.Revoked(0, 0)
    revoked = accounts.revoke_credentials(session, user.id, now)
    _audit(session, actor, "user.deactivate", user, f"active -> inactive; {revoked}", now)
    return revoked


def reset_password(session: Session, actor: Principal, user_id: int, password: str,
                   now: datetime | None = None) -> accounts.Revoked:
    user = get_user(session, actor, user_id, for_update=True)
    now = now or utcnow()
    try:
        user.password_hash = accounts.hash_password(password)
    except WeakPassword:
        raise UserInvalid({"password": WEAK_PASSWORD}) from None
    user.updated_at = now
    revoked = accounts.revoke_credentials(session, user.id, now)
    # Never the password itself, old or new.
    _audit(session, actor, "user.password_reset", user, str(revoked), now)
    return revoked
