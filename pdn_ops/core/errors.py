"""The one exception tree of pdn-ops: every error it raises on purpose is defined here, and nowhere else.

    PdnOpsError
    ├── ConfigError                 settings or inventory are wrong; a person must edit a file
    │   ├── InventoryError          carries every problem found, each as FILE:LINE: key.path: message
    │   └── YamlSyntaxError         a YAML file does not parse (its line and the parser's message)
    ├── DatabaseNotReady            the schema is missing or behind; run `pdn-ops db upgrade`
    ├── Overloaded                  a bounded queue is full or its wait ran out: answered 503 with Retry-After
    ├── Throttled                   one sender sent too much to a public form: answered 429 with Retry-After
    ├── InvalidInput                a form or request a person can correct; nothing was stored
    │   ├── FormInvalid             ``errors`` maps each bad field to a catalogue key
    │   │   ├── ComplaintInvalid    the complaint form
    │   │   ├── UserInvalid         the users screen
    │   │   └── RuleInvalid         an automatic rule ...
    │   │       └── WindowInvalid   ... or a maintenance window
    │   ├── SettingsInvalid         the complaint procedure's settings (``errors``: field -> FieldError)
    │   ├── PhotoRefused            an uploaded photo (``reason`` is a catalogue key)
    │   ├── WeakPassword            a new password too short
    │   ├── TextRefused             a text with a NUL byte, refused before the database (answered 422)
    │   ├── SurveyInvalid           a survey response that is not nine scores of 1-4, or an unknown period
    │   └── WebhookMalformed        a provider's webhook body of the wrong shape (answered 400)
    ├── LoginRefused                a login that does not happen
    │   ├── LoginFailed             unknown user, wrong password or inactive account: one answer for all three
    │   └── LoginThrottled          too many failed attempts recently
    ├── CollectorError              a collector could not observe its target
    │   ├── TargetUnreachable       transient: refused, timeout, DNS; retried on the next cycle
    │   ├── AuthFailed              permanent until a person acts: token revoked, key refused
    │   ├── HostKeyMismatch         security event: the SSH host key is not the pinned one
    │   └── UnexpectedResponse      the peer answered something we cannot interpret
    ├── RemediationError            an action could not be carried out
    │   ├── PolicyRefused           refused before any side effect (bad parameter, cooldown, approval)
    │   │   └── Refused             the pure rules' refusal (``pdn_ops.runs.model``)
    │   ├── CheckFailed             a playbook's check found the target where the playbook must stop
    │   └── HostKeyRefused          a remediation's SSH peer did not present the pinned host key
    ├── NotFound / Conflict / PermissionDenied   domain outcomes that the web layer maps to 404/409/403
    │                   └── TransitionError (a Conflict): the complaint's state does not allow the action
    ├── DeliveryError               a notification could not be handed to a provider
    │   ├── DeliveryRetryable       transient: provider down, 5xx, 429, refused; retried with backoff
    │   ├── DeliveryRejected        permanent: the provider refused this message (bad number, 4xx); failed
    │   └── DeliveryUnknown         the request may have reached the provider: outcome unknown, never blindly resent
    └── MediaRefused                an inbound photo is not an acceptable image (type, size, pixels, truncated)

Library errors (requests, paramiko, aiohttp, SQLAlchemy) are translated where they are caught and chained with
``raise ... from exc`` so the original stays in the traceback but never in a user-facing message.
A CollectorError also carries ``failure``, the bounded reason (a ``FailureClass`` value such as "auth" or
"node_offline") that collectors put in their observations and metrics. Some errors are also ``ValueError`` (the
pure models' refusals, a malformed webhook): callers that knew them as such still catch them.

Standard library only: the pure models import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


class PdnOpsError(Exception):
    """Base of every error pdn-ops raises on purpose."""

    transient: bool = False


class ConfigError(PdnOpsError):
    """Settings or inventory cannot be used as written."""


class InventoryError(ConfigError):
    """An inventory file with one or more problems; ``problems`` holds every one, already formatted."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class YamlSyntaxError(ConfigError):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


class DatabaseNotReady(PdnOpsError):
    """The database schema is missing or older than this version of pdn-ops."""


# --- input a person corrects --------------------------------------------------------------------------------------
class Overloaded(PdnOpsError):
    """An expensive part (password hashing, photo processing, PDF rendering) is at its limit and its queue is
    full or the wait ran out; nothing was done. ``retry_after`` is the advice given to the client, in seconds."""

    transient = True

    def __init__(self, what: str, retry_after: int = 5) -> None:
        self.what = what
        self.retry_after = retry_after
        super().__init__(f"{what}: too busy, retry in {retry_after} s")


class Throttled(PdnOpsError):
    """One sender (a keyed hash of its address) reached a public form's limit; ``retry_after`` in seconds."""

    def __init__(self, what: str, retry_after: int = 3600) -> None:
        self.retry_after = retry_after
        super().__init__(what)


class InvalidInput(PdnOpsError):
    """A form or request with problems a person can correct; nothing was stored."""


class FormInvalid(InvalidInput):
    """The form has problems; ``errors`` maps a field to a catalogue key. Nothing was stored."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__(", ".join(f"{k}: {v}" for k, v in errors.items()))


class ComplaintInvalid(FormInvalid):
    """The complaint form has problems."""


class UserInvalid(FormInvalid):
    """The users screen's form has problems."""


class RuleInvalid(FormInvalid):
    """The automatic rule form has problems."""


class DutyInvalid(FormInvalid):
    """The on-duty roster's form has problems."""


class WindowInvalid(RuleInvalid):
    """The maintenance window form has problems."""


@dataclass(frozen=True, slots=True)
class FieldError:
    key: str  # a catalogue key
    params: Mapping[str, object] = field(default_factory=dict)


class SettingsInvalid(InvalidInput, ValueError):
    """The proposed settings have problems; nothing was stored. ``errors`` maps each bad field to its error."""

    def __init__(self, errors: Mapping[str, FieldError]) -> None:
        self.errors = dict(errors)
        super().__init__(", ".join(f"{k}: {v.key}" for k, v in self.errors.items()))


class PhotoRefused(InvalidInput):
    """An upload is not an acceptable photo; ``reason`` is a catalogue key, ``name`` the cleaned file name."""

    def __init__(self, reason: str, name: str) -> None:
        self.reason = reason
        self.name = name
        super().__init__(f"{name}: {reason}")


class WeakPassword(InvalidInput):
    """The password is too short."""


class TextRefused(InvalidInput, ValueError):
    """A text parameter of a statement holds a NUL byte (PostgreSQL cannot store one; SQLite would keep a text no
    other part expects). Refused before the statement runs, on both engines."""


class SurveyInvalid(InvalidInput, ValueError):
    """A survey response that is not nine scores of 1-4, a period that does not exist, an IKM off the scale."""


class WebhookMalformed(InvalidInput, ValueError):
    """The body is not JSON of the expected shape (answered 400, nothing processed)."""


# --- logging in ----------------------------------------------------------------------------------------------------
class LoginRefused(PdnOpsError):
    """A login that does not happen."""


class LoginFailed(LoginRefused):
    """Unknown user, wrong password or inactive account: one answer for all three."""


class LoginThrottled(LoginRefused):
    """Too many failed attempts recently."""


# --- collectors ----------------------------------------------------------------------------------------------------
class CollectorError(PdnOpsError):
    """A collector could not observe its target; ``failure`` is the bounded reason (a FailureClass value)."""

    default_failure = "error"

    def __init__(self, message: str, *, failure: str | None = None) -> None:
        super().__init__(message)
        self.failure = failure or self.default_failure


class TargetUnreachable(CollectorError):
    transient = True
    default_failure = "timeout"


class AuthFailed(CollectorError):
    """Credentials were refused; retrying will not help until a person acts."""

    default_failure = "auth"


class HostKeyMismatch(CollectorError):
    """The SSH server presented a host key other than the pinned one."""

    default_failure = "host_key"


class UnexpectedResponse(CollectorError):
    """The peer answered, but not in a form we can interpret."""

    default_failure = "protocol"


# --- remediation ---------------------------------------------------------------------------------------------------
class RemediationError(PdnOpsError):
    """A remediation action could not be carried out."""


class PolicyRefused(RemediationError):
    """Refused before any side effect: bad parameter, cooldown, missing approval, another run active."""


class Refused(PolicyRefused, ValueError):
    """A request the pure rules (``pdn_ops.runs.model``) refuse."""


class CheckFailed(RemediationError):
    """A check found the target in a state where the playbook must stop (refusal or failed verification)."""


class HostKeyRefused(RemediationError):
    """The server's host key is not the pinned one (or none is pinned)."""


# --- domain outcomes -----------------------------------------------------------------------------------------------
class NotFound(PdnOpsError):
    """The object does not exist, or the caller may not know that it exists."""


class Conflict(PdnOpsError):
    """The request conflicts with the current state (for example another active run)."""


class TransitionError(Conflict, ValueError):
    """The action does not apply to the complaint's state, or the role may not take it."""


class PermissionDenied(PdnOpsError):
    """The caller is known but may not do this."""


# --- notifications -------------------------------------------------------------------------------------------------
class DeliveryError(PdnOpsError):
    """A notification could not be handed to its provider."""


class DeliveryRetryable(DeliveryError):
    transient = True


class DeliveryRejected(DeliveryError):
    """The provider refused the message itself; sending it again would be refused again."""


class DeliveryUnknown(DeliveryError):
    """The request may have reached the provider (timeout after sending, connection lost mid-response)."""

    transient = True


class MediaRefused(PdnOpsError):
    """An inbound image that is not an acceptable JPEG, PNG or WebP; the message says why, in plain words."""
