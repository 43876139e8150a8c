"""Accounts: users, roles, sessions, API tokens, the OPD heads' dispositions, the users screen.

This module is the feature's public face: other features import from here, never from its modules."""

from __future__ import annotations

from pdn_ops.accounts.deps import (
    CurrentUser,
    OpdAdmin,
    OpdUser,
    Staff,
    Supervisor,
    confirmed_principal_in,
    current_principal,
    current_principal_in,
    guarded_principal_in,
    require_staff,
)
from pdn_ops.accounts.model import Principal, Role
from pdn_ops.accounts.service import principal_of, staff_members, staff_name, token_still_valid, usernames
from pdn_ops.accounts.tables import UserRow

__all__ = [
    "CurrentUser",
    "OpdAdmin",
    "OpdUser",
    "Principal",
    "Role",
    "Staff",
    "Supervisor",
    "UserRow",
    "confirmed_principal_in",
    "current_principal",
    "current_principal_in",
    "guarded_principal_in",
    "principal_of",
    "require_staff",
    "staff_members",
    "staff_name",
    "token_still_valid",
    "usernames",
]
