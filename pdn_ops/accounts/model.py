"""Who is asking: roles and the principal every request runs as. Tenancy rules live here, pure.

An OPD user (head or admin) is bound to exactly one OPD and sees only that OPD's assets and complaints;
Diskominfo staff (engineers, supervisors) see every OPD.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    OPD_HEAD = "opd_head"
    OPD_ADMIN = "opd_admin"
    ENGINEER = "engineer"
    SUPERVISOR = "supervisor"


STAFF_ROLES = frozenset({Role.ENGINEER, Role.SUPERVISOR})
OPD_ROLES = frozenset({Role.OPD_HEAD, Role.OPD_ADMIN})


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    role: Role
    opd_id: int | None  # set for OPD roles, None for staff
    language: str = "id"

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    def opd_scope(self) -> int | None:
        """The OPD every query must be limited to, or None for staff (all OPDs)."""
        if self.is_staff:
            return None
        if self.opd_id is None:  # an OPD role without an OPD must see nothing, not everything
            raise ValueError(f"user {self.username} has role {self.role} but no OPD")
        return self.opd_id

    def can_see_opd(self, opd_id: int) -> bool:
        return self.is_staff or self.opd_id == opd_id
