"""The complaint procedure of the regency's service standard as a state machine, pure.

    submitted --verify--> verified --start--> in_progress --fix--> fixed --confirm / auto_close--> closed
        |  ^                  |                    ^                 |
      return resubmit         +--------fix---------+<----reopen------+
        v  |
      returned
    submitted | returned | verified | in_progress --merge--> merged (a duplicate of another complaint)

Who may do what is decided here from the role alone; which complaint a user may touch at all (tenancy) is
decided by the services' scoped queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pdn_ops.accounts.model import OPD_ROLES, STAFF_ROLES, Role
from pdn_ops.core.errors import TransitionError


class State(StrEnum):
    SUBMITTED = "submitted"
    RETURNED = "returned"
    VERIFIED = "verified"
    IN_PROGRESS = "in_progress"
    FIXED = "fixed"
    CLOSED = "closed"
    MERGED = "merged"


class Category(StrEnum):
    SITE_DOWN = "site_down"
    SLOW = "slow"
    VM_UNREACHABLE = "vm_unreachable"
    DISK_FULL = "disk_full"
    MORE_RESOURCES = "more_resources"
    DATA_RESTORE = "data_restore"
    OTHER = "other"


class Priority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


# A service that is down outranks one that is slow, which outranks a request for more.
_BY_CATEGORY = {Category.SITE_DOWN: Priority.HIGH, Category.VM_UNREACHABLE: Priority.HIGH,
                Category.SLOW: Priority.MEDIUM, Category.DISK_FULL: Priority.MEDIUM,
                Category.DATA_RESTORE: Priority.MEDIUM, Category.MORE_RESOURCES: Priority.LOW,
                Category.OTHER: Priority.LOW}
_ORDER = (Priority.LOW, Priority.MEDIUM, Priority.HIGH)


def priority_from_impact(category: Category | str, *, other_reports: int = 0, opds_affected: int = 1) -> Priority:
    """The priority a complaint starts with: its kind of failure, raised one level when it is not alone
    (other open complaints about the same asset, or the asset serves several OPDs). Staff may change it."""
    base = _BY_CATEGORY.get(Category(category), Priority.LOW)
    if other_reports > 0 or opds_affected > 1:
        return _ORDER[min(_ORDER.index(base) + 1, len(_ORDER) - 1)]
    return base



class Action(StrEnum):
    SUBMIT = "submit"
    RETURN = "return"
    RESUBMIT = "resubmit"
    VERIFY = "verify"
    START = "start"
    FIX = "fix"
    CONFIRM = "confirm"
    REOPEN = "reopen"
    AUTO_CLOSE = "auto_close"
    MERGE = "merge"


# The SLA clock runs in these states, pauses in RETURNED and stops in the others.
RUNNING_STATES = frozenset({State.SUBMITTED, State.VERIFIED, State.IN_PROGRESS})
OPEN_STATES = frozenset({State.SUBMITTED, State.RETURNED, State.VERIFIED, State.IN_PROGRESS, State.FIXED})
SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Rule:
    sources: frozenset[State]
    target: State
    roles: frozenset[Role]
    needs_reason: bool = False


RULES: dict[Action, Rule] = {
    Action.RETURN: Rule(frozenset({State.SUBMITTED}), State.RETURNED, STAFF_ROLES, needs_reason=True),
    Action.RESUBMIT: Rule(frozenset({State.RETURNED}), State.SUBMITTED, frozenset({Role.OPD_ADMIN})),
    Action.VERIFY: Rule(frozenset({State.SUBMITTED}), State.VERIFIED, STAFF_ROLES),
    Action.START: Rule(frozenset({State.VERIFIED}), State.IN_PROGRESS, STAFF_ROLES),
    Action.FIX: Rule(frozenset({State.VERIFIED, State.IN_PROGRESS}), State.FIXED, STAFF_ROLES),
    Action.CONFIRM: Rule(frozenset({State.FIXED}), State.CLOSED, OPD_ROLES),
    Action.REOPEN: Rule(frozenset({State.FIXED}), State.IN_PROGRESS, OPD_ROLES, needs_reason=True),
    Action.AUTO_CLOSE: Rule(frozenset({State.FIXED}), State.CLOSED, frozenset()),
    Action.MERGE: Rule(frozenset({State.SUBMITTED, State.RETURNED, State.VERIFIED, State.IN_PROGRESS}),
                       State.MERGED, STAFF_ROLES, needs_reason=False),
}

# Actions a person starts from the complaint page (SUBMIT and AUTO_CLOSE come from elsewhere).
MANUAL_ACTIONS = (Action.VERIFY, Action.RETURN, Action.START, Action.FIX, Action.CONFIRM, Action.REOPEN,
                  Action.MERGE)



def next_state(state: State, action: Action, role: Role | None, reason: str = "") -> State:
    """The state after ``action``; ``role`` None means the system (scheduler) acts."""
    rule = RULES.get(action)
    if rule is None:
        raise TransitionError(f"unknown action {action}")
    if role is None:
        if action is not Action.AUTO_CLOSE:
            raise TransitionError(f"only people may {action}")
    elif role not in rule.roles:
        raise TransitionError(f"role {role} may not {action}")
    if state not in rule.sources:
        raise TransitionError(f"cannot {action} a complaint that is {state}")
    if rule.needs_reason and not reason.strip():
        raise TransitionError(f"{action} needs a reason")
    return rule.target


def available_actions(state: State, role: Role) -> list[Action]:
    return [a for a in MANUAL_ACTIONS if role in RULES[a].roles and state in RULES[a].sources]
