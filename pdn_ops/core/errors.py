"""The one exception tree of pdn-ops.

    PdnOpsError
    ├── ConfigError                 settings or inventory are wrong; a person must edit a file
    │   └── InventoryError          carries every problem found, each as FILE:LINE: key.path: message
    ├── DatabaseNotReady            the schema is missing or behind; run `pdn-ops db upgrade`
    ├── CollectorError              a collector could not observe its target
    │   ├── TargetUnreachable       transient: refused, timeout, DNS; retried on the next cycle
    │   ├── AuthFailed              permanent until a person acts: token revoked, key refused
    │   ├── HostKeyMismatch         security event: the SSH host key is not the pinned one
    │   └── UnexpectedResponse      the peer answered something we cannot interpret
    ├── RemediationError            an action could not be carried out
    │   ├── PolicyRefused           refused before any side effect (bad parameter, cooldown, approval)
    │   └── ActionFailed            the side effect was attempted and failed
    ├── NotFound / Conflict / PermissionDenied   domain outcomes that the web layer maps to 404/409/403
    ├── DeliveryError               a notification could not be handed to a provider (issue 7)
    │   ├── DeliveryRetryable       transient: provider down, 5xx, 429, refused; retried with backoff
    │   ├── DeliveryRejected        permanent: the provider refused this message (bad number, 4xx); failed
    │   └── DeliveryUnknown         the request may have reached the provider: outcome unknown, never blindly resent
    └── MediaRefused                an inbound photo is not an acceptable image (type, size, pixels, truncated)

Library errors (requests, paramiko, aiohttp, SQLAlchemy) are translated where they are caught and chained with
``raise ... from exc`` so the original stays in the traceback but never in a user-facing message.
A CollectorError also carries ``failure``, the bounded reason (a ``FailureClass`` value such as "auth" or
"node_offline") that collectors put in their observations and metrics.
"""

from __future__ import annotations


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


class DatabaseNotReady(PdnOpsError):
    """The database schema is missing or older than this version of pdn-ops."""


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


class RemediationError(PdnOpsError):
    """A remediation action could not be carried out."""


class PolicyRefused(RemediationError):
    """Refused before any side effect: bad parameter, cooldown, missing approval, another run active."""


class ActionFailed(RemediationError):
    """The side effect was attempted and did not succeed."""


class NotFound(PdnOpsError):
    """The object does not exist, or the caller may not know that it exists."""


class Conflict(PdnOpsError):
    """The request conflicts with the current state (for example another active run)."""


class PermissionDenied(PdnOpsError):
    """The caller is known but may not do this."""


# --- notifications (issue 7) -------------------------------------------------------------------------------------
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
