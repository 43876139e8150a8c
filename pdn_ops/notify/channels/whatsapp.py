"""WhatsApp providers: the Meta WhatsApp Business Cloud API, and a self-hosted HTTP gateway.

Both implement ``Sender`` (``send(message) -> SendResult``, raising the ``DeliveryError`` tree); the Cloud API also
fetches inbound media. Errors are mapped at this boundary so the outbox can decide what to do:

    connection refused / connect timeout, HTTP 5xx, 429, 401/403  -> DeliveryRetryable (nothing was sent, or the
                                                                     provider refused for a reason a person fixes)
    HTTP 400/404 and other 4xx                                     -> DeliveryRejected  (this message will never go)
    read timeout, connection lost after the request was written    -> DeliveryUnknown   (it may have been sent)

Every Cloud API message carries ``biz_opaque_callback_data`` = our idempotency key: Meta echoes it in the status
callbacks, which is how a message whose outcome was unknown is recognised as sent without sending it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from pydantic import SecretStr

from pdn_ops.core.errors import DeliveryRejected, DeliveryRetryable, DeliveryUnknown, MediaRefused
from pdn_ops.notify.media import MAX_BYTES
from pdn_ops.notify.model import Channel, OutboundMessage, SendResult

log = logging.getLogger(__name__)

# Hosts the Cloud API hands out media URLs on; our bearer token is sent to no other host.
MEDIA_HOST_SUFFIXES = (".fbsbx.com", ".facebook.com", ".whatsapp.net", ".fbcdn.net")


class Sender(Protocol):
    name: str
    channel: Channel
    # True when the provider itself drops a second request with the same idempotency key.
    idempotent: bool

    def send(self, message: OutboundMessage) -> SendResult: ...


class MediaSource(Protocol):
    def download_media(self, media_id: str) -> tuple[bytes, str | None]: ...


def _map_request_error(exc: requests.RequestException, what: str) -> Exception:
    if isinstance(exc, requests.ConnectTimeout):
        return DeliveryRetryable(f"{what}: connect timeout")
    if isinstance(exc, requests.exceptions.SSLError):
        return DeliveryRetryable(f"{what}: TLS handshake failed")  # before any request byte was sent
    if isinstance(exc, requests.ReadTimeout):
        return DeliveryUnknown(f"{what}: no answer in time; the request may have been processed")
    if isinstance(exc, requests.ConnectionError):
        text = repr(exc)
        # urllib3 names a refused or unresolvable connection NewConnectionError/NameResolutionError: never sent.
        if "NewConnectionError" in text or "NameResolutionError" in text or "Connection refused" in text:
            return DeliveryRetryable(f"{what}: connection refused")
        return DeliveryUnknown(f"{what}: connection lost after the request was sent")
    return DeliveryRetryable(f"{what}: {type(exc).__name__}")


def _map_status(response: requests.Response, what: str) -> Exception:
    code = response.status_code
    detail = ""
    try:
        err = response.json().get("error", {})
        # Only the provider's code and short message: never echo headers (they carry the token).
        detail = f" (code {err.get('code')}: {str(err.get('message', ''))[:200]})"
    except (ValueError, AttributeError):
        pass
    if code >= 500 or code in (401, 403, 408, 429):
        return DeliveryRetryable(f"{what}: HTTP {code}{detail}")
    return DeliveryRejected(f"{what}: HTTP {code}{detail}")


@dataclass
class MetaCloudProvider:
    """POST /{version}/{phone_number_id}/messages; GET /{version}/{media_id} then the media URL."""

    base_url: str
    api_version: str
    phone_number_id: str
    access_token: SecretStr
    timeout: float = 15.0
    name: str = "meta"
    channel: Channel = Channel.WHATSAPP
    idempotent: bool = False  # the Cloud API has no idempotency key; see biz_opaque_callback_data above

    def __post_init__(self) -> None:
        self._http = requests.Session()
        self.base_url = self.base_url.rstrip("/")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token.get_secret_value()}"}

    def payload(self, message: OutboundMessage) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.address.lstrip("+"),
            "biz_opaque_callback_data": message.idempotency_key,
        }
        if message.template_name:
            body["type"] = "template"
            body["template"] = {
                "name": message.template_name,
                "language": {"code": message.language},
                "components": [{"type": "body", "parameters": [
                    {"type": "text", "text": value} for value in message.template_params
                ]}] if message.template_params else [],
            }
        else:
            body["type"] = "text"
            body["text"] = {"preview_url": False, "body": message.text[:4096]}
        return body

    def send(self, message: OutboundMessage) -> SendResult:
        url = f"{self.base_url}/{self.api_version}/{self.phone_number_id}/messages"
        try:
            response = self._http.post(url, json=self.payload(message), headers=self._headers(),
                                       timeout=self.timeout)
        except requests.RequestException as exc:
            raise _map_request_error(exc, "WhatsApp Cloud API") from exc
        if response.status_code != 200:
            raise _map_status(response, "WhatsApp Cloud API")
        try:
            message_id = str(response.json()["messages"][0]["id"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            # It answered 200, so the message was accepted; we just cannot read its id. Callbacks carry our key.
            log.warning("WhatsApp Cloud API accepted a message without a readable id")
            raise DeliveryUnknown("WhatsApp Cloud API: 200 without a message id") from exc
        return SendResult(provider=self.name, provider_message_id=message_id)

    def _media_url_allowed(self, url: str) -> bool:
        parts, base = urlsplit(url), urlsplit(self.base_url)
        if (parts.scheme, parts.netloc) == (base.scheme, base.netloc):
            return True
        host = parts.hostname or ""
        return parts.scheme == "https" and host.endswith(MEDIA_HOST_SUFFIXES)

    def download_media(self, media_id: str) -> tuple[bytes, str | None]:
        """The media's bytes and declared type; at most MAX_BYTES are read (MediaRefused beyond)."""
        if not media_id.replace("_", "").replace("-", "").isalnum():
            raise MediaRefused("notify.media.type")
        try:
            meta = self._http.get(f"{self.base_url}/{self.api_version}/{media_id}", headers=self._headers(),
                                  timeout=self.timeout)
            if meta.status_code != 200:
                raise _map_status(meta, "WhatsApp media lookup")
            info = meta.json()
            url = str(info["url"])
            if int(info.get("file_size") or 0) > MAX_BYTES:
                raise MediaRefused("notify.media.size")
            if not self._media_url_allowed(url):
                raise DeliveryRejected("WhatsApp media URL on an unexpected host")
            with self._http.get(url, headers=self._headers(), timeout=self.timeout, stream=True) as response:
                if response.status_code != 200:
                    raise _map_status(response, "WhatsApp media download")
                chunks, size = [], 0
                for chunk in response.iter_content(65536):
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise MediaRefused("notify.media.size")
                    chunks.append(chunk)
        except requests.RequestException as exc:
            raise DeliveryRetryable(f"WhatsApp media: {type(exc).__name__}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise DeliveryRejected("WhatsApp media lookup: unreadable answer") from exc
        return b"".join(chunks), info.get("mime_type")


@dataclass
class GatewayProvider:
    """A self-hosted WhatsApp Web gateway (go-whatsapp-web-multidevice style): POST {url}/send/message.

    The gateway sends plain text only (it has no approved templates) and has no idempotency key, so the outbox
    treats an unknown outcome the same way as for the Cloud API.
    """

    base_url: str
    token: SecretStr | None = None  # "user:password" for HTTP basic auth, as the gateway expects
    timeout: float = 15.0
    name: str = "gateway"
    channel: Channel = Channel.WHATSAPP
    idempotent: bool = False

    def __post_init__(self) -> None:
        self._http = requests.Session()
        self.base_url = self.base_url.rstrip("/")

    def send(self, message: OutboundMessage) -> SendResult:
        auth = None
        if self.token is not None:
            user, _, password = self.token.get_secret_value().partition(":")
            auth = (user, password)
        body = {"phone": f"{message.address.lstrip('+')}@s.whatsapp.net", "message": message.text[:4096]}
        try:
            response = self._http.post(f"{self.base_url}/send/message", json=body, auth=auth,
                                       timeout=self.timeout)
        except requests.RequestException as exc:
            raise _map_request_error(exc, "WhatsApp gateway") from exc
        if response.status_code != 200:
            raise _map_status(response, "WhatsApp gateway")
        try:
            message_id = str(response.json()["results"]["message_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DeliveryUnknown("WhatsApp gateway: 200 without a message id") from exc
        return SendResult(provider=self.name, provider_message_id=message_id)
