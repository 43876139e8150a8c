"""The WhatsApp Cloud API webhook, pure: signature check and payload parsing (no I/O, no database).

Sample POST body (one inbound text, one status callback)::

    {"object": "whatsapp_business_account",
     "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
         "messaging_product": "whatsapp",
         "metadata": {"display_phone_number": "62211234", "phone_number_id": "1234"},
         "messages": [{"from": "6281234567890", "id": "wamid.A", "timestamp": "1764300000",
                       "type": "text", "text": {"body": "situs kami mati"}}],
         "statuses": [{"id": "wamid.B", "status": "delivered", "timestamp": "1764300001",
                       "recipient_id": "6281234567890", "biz_opaque_callback_data": "complaint:7:verified"}]}}]}]}

The signature header is ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>``:
computed over the exact bytes received, compared in constant time, before the body is parsed at all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Final

from pdn_ops.core.errors import WebhookMalformed
from pdn_ops.notify.model import Channel, InboundMedia, InboundMessage, Status, StatusUpdate

MAX_BODY_BYTES: Final = 1024 * 1024  # Meta batches at most a few KB per delivery; 1 MB is generous
SIGNATURE_PREFIX: Final = "sha256="
_STATUSES: Final = {"sent": Status.SENT, "delivered": Status.DELIVERED, "read": Status.READ,
                    "failed": Status.FAILED}



def sign(raw_body: bytes, app_secret: str) -> str:
    return SIGNATURE_PREFIX + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def signature_valid(raw_body: bytes, header: str | None, app_secret: str) -> bool:
    if not header or not app_secret or not header.startswith(SIGNATURE_PREFIX):
        return False
    expected = sign(raw_body, app_secret)
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def _text_of(message: dict[str, Any]) -> tuple[str, tuple[InboundMedia, ...]]:
    kind = message.get("type")
    if kind == "text":
        return str((message.get("text") or {}).get("body", "")), ()
    if kind == "image":
        image = message.get("image") or {}
        media = (InboundMedia(str(image["id"]), image.get("mime_type")),) if image.get("id") else ()
        return str(image.get("caption", "")), media
    if kind == "document":
        # A photo sent "as a file" arrives as a document; its content decides whether it is acceptable.
        doc = message.get("document") or {}
        media = (InboundMedia(str(doc["id"]), doc.get("mime_type")),) if doc.get("id") else ()
        return str(doc.get("caption", "")), media
    return "", ()


def parse(raw_body: bytes) -> tuple[list[InboundMessage], list[StatusUpdate]]:
    try:
        data = json.loads(raw_body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookMalformed("body is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("entry", []), list):
        raise WebhookMalformed("body is not a webhook object")
    messages: list[InboundMessage] = []
    statuses: list[StatusUpdate] = []
    if data.get("object") != "whatsapp_business_account":
        return messages, statuses
    for entry in data.get("entry", []):
        changes = entry.get("changes", []) if isinstance(entry, dict) else []
        for change in changes if isinstance(changes, list) else []:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            for item in value.get("messages") or []:
                if not isinstance(item, dict) or not item.get("id") or not item.get("from"):
                    continue
                text, media = _text_of(item)
                sender = "+" + str(item["from"]).lstrip("+")
                messages.append(InboundMessage(Channel.WHATSAPP, str(item["id"]), sender, text, media))
            for item in value.get("statuses") or []:
                if not isinstance(item, dict) or item.get("status") not in _STATUSES or not item.get("id"):
                    continue
                errors = item.get("errors") or []
                error = None
                if errors and isinstance(errors[0], dict):
                    error = f"{errors[0].get('code')}: {str(errors[0].get('title', ''))[:200]}"
                timestamp = str(item.get("timestamp", ""))
                statuses.append(StatusUpdate(
                    provider_message_id=str(item["id"]), status=_STATUSES[item["status"]],
                    at_epoch=int(timestamp) if timestamp.isdigit() else None,
                    idempotency_key=item.get("biz_opaque_callback_data") or None, error=error,
                ))
    return messages, statuses
