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
