"""The Proxmox VE API over proxmoxer: token auth, TLS always verified, bounded timeouts, errors mapped.

TLS is verified one of two ways, as the inventory says:

- ``ca_file``: the usual chain and hostname verification against that CA bundle;
- ``fingerprint``: the server certificate's SHA-256 must equal the pinned value. The pin *is* the trust
  anchor (a self-signed PVE certificate has no chain to verify), so chain validation is replaced by urllib3's
  ``assert_fingerprint``, which checks the peer certificate after the handshake and aborts before any request
  byte (and so the token) is sent on a mismatch.

Every library error is translated here into the pdn_ops error tree, with the bounded failure class:

    401, 403                  -> AuthFailed            (auth)
    595, 596                  -> TargetUnreachable     (node_offline)   pveproxy could not reach the node
    other 5xx                 -> UnexpectedResponse    (server_error)
    other 4xx, non-JSON body  -> UnexpectedResponse    (protocol)
    timeout                   -> TargetUnreachable     (timeout)
    name does not resolve     -> TargetUnreachable     (dns)
    refused / reset           -> TargetUnreachable     (refused)
    TLS / pin mismatch        -> CollectorError        (tls)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from proxmoxer import ProxmoxAPI, ResourceException
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NameResolutionError

from pdn_ops.core.errors import AuthFailed, CollectorError, TargetUnreachable, UnexpectedResponse
from pdn_ops.core.inventory import Cluster, resolve_secret
from pdn_ops.health.observations import FailureClass

# pveproxy's pseudo statuses for a node it could not reach (AnyEvent::HTTP: connect error, TLS/timeout).
NODE_UNREACHABLE = (595, 596)


class PinnedFingerprintAdapter(HTTPAdapter):
    """Trust exactly one server certificate, named by its SHA-256 fingerprint.

    Chain validation is switched off only inside this adapter and only because ``assert_fingerprint`` takes its
    place: urllib3 compares the peer certificate with the pin right after the handshake and raises an SSLError
    on any difference, so no request is ever sent to a server that does not hold the pinned certificate.
    """

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint.replace(":", "").lower()
        if len(self.fingerprint) != 64:
            raise ValueError("a SHA-256 fingerprint has 32 bytes")
        super().__init__()

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:
        host_params, typed_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        pool_kwargs: dict[str, Any] = dict(typed_kwargs)
        pool_kwargs.pop("ca_certs", None)
        pool_kwargs.pop("ca_cert_dir", None)
        pool_kwargs["cert_reqs"] = "CERT_NONE"  # replaced by the pin below, never used without it
        pool_kwargs["assert_fingerprint"] = self.fingerprint
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # requests re-applies CA verification to each pooled connection here; the pin stays in force instead.
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]  # untyped in types-requests
        conn.cert_reqs = "CERT_NONE"
        conn.ca_certs = None
        conn.ca_cert_dir = None
        conn.assert_fingerprint = self.fingerprint


def _host_and_port(api_url: str) -> tuple[str, int]:
    parts = urlsplit(api_url)
    if parts.scheme != "https" or not parts.hostname:
        raise CollectorError(f"Proxmox API URL must be https://HOST[:PORT], got {api_url!r}", failure="error")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return host, parts.port or 8006


def _urllib3_reason(exc: requests.exceptions.ConnectionError) -> object:
    inner = exc.args[0] if exc.args else None
    return inner.reason if isinstance(inner, MaxRetryError) else inner


def translate(exc: Exception, what: str) -> CollectorError:
    """One library error as a pdn_ops error; ``what`` names the call (never a secret)."""
    if isinstance(exc, ResourceException):
        code = int(exc.status_code)
        reason = str(exc.content or exc.status_message or "").strip()
        reason = reason.splitlines()[0][:200] if reason else ""
        text = f"{what}: HTTP {code} {reason}".rstrip()
        if code in (401, 403):
            return AuthFailed(text, failure=FailureClass.AUTH)
        if code in NODE_UNREACHABLE:
            return TargetUnreachable(text, failure=FailureClass.NODE_OFFLINE)
        if code >= 500:
            return UnexpectedResponse(text, failure=FailureClass.SERVER_ERROR)
        return UnexpectedResponse(text, failure=FailureClass.PROTOCOL)
    if isinstance(exc, requests.exceptions.SSLError):
        return CollectorError(f"{what}: TLS verification failed", failure=FailureClass.TLS)
    if isinstance(exc, requests.exceptions.Timeout):
        return TargetUnreachable(f"{what}: timed out", failure=FailureClass.TIMEOUT)
    if isinstance(exc, requests.exceptions.ConnectionError):
        if isinstance(_urllib3_reason(exc), NameResolutionError):
            return TargetUnreachable(f"{what}: the API host name does not resolve", failure=FailureClass.DNS)
        return TargetUnreachable(f"{what}: connection failed", failure=FailureClass.REFUSED)
    if isinstance(exc, requests.exceptions.RequestException | ValueError):
        return UnexpectedResponse(f"{what}: unreadable answer", failure=FailureClass.PROTOCOL)
    return CollectorError(f"{what}: {type(exc).__name__}", failure=FailureClass.ERROR)


class ProxmoxClient:
    """One cluster's API. ``calls`` counts every request sent, so tests and metrics can see the API cost."""

    def __init__(self, api: Any, *, name: str) -> None:
        self._api = api
        self.name = name
        self.calls = 0

    @classmethod
    def for_cluster(
        cls,
        cluster: Cluster,
        *,
        base_dir: Path | None = None,
        secret: Callable[[str, Path | None], Any] = resolve_secret,
    ) -> ProxmoxClient:
        """A client for an inventory cluster; the token secret is resolved now and kept only in the session."""
        host, port = _host_and_port(cluster.api_url)
        user, _, token_name = cluster.token_id.partition("!")
        token_value = secret(cluster.token_secret, base_dir).get_secret_value()
        if cluster.tls.ca_file is not None:
            ca_path = Path(cluster.tls.ca_file)
            if base_dir is not None and not ca_path.is_absolute():
                ca_path = base_dir / ca_path
            verify: str | bool = str(ca_path)
        else:
            verify = True
        # connect and read bounds; a cycle makes only a handful of calls, so the cycle is bounded too
        timeout = (min(cluster.timeout, 5.0), cluster.timeout)
        api = ProxmoxAPI(
            host,
            port=port,
            user=user,
            token_name=token_name,
            token_value=token_value,
            verify_ssl=verify,
            timeout=timeout,
        )
        if cluster.tls.fingerprint is not None:
            api._store["session"].mount("https://", PinnedFingerprintAdapter(cluster.tls.fingerprint))
        return cls(api, name=cluster.name)

    def get(self, *path: str | int, **params: Any) -> Any:
        """GET one API path such as ``get("cluster", "resources")``; raises a CollectorError on any failure."""
        what = "GET /" + "/".join(str(p) for p in path)
        resource = self._api
        for part in path:
            resource = resource(str(part))
        self.calls += 1
        try:
            return resource.get(**params)
        except Exception as exc:
            raise translate(exc, what) from exc

    def close(self) -> None:
        session = self._api._store.get("session")
        if session is not None:
            session.close()
