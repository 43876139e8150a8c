"""Rendering notifications from the one catalogue: plain text for WhatsApp, text + HTML for e-mail.

Message text comes from ``pdn_ops/core/i18n/catalogue/*.yaml`` (``notify.<event>.subject`` and ``.text``) formatted with
``str.format``: parameter *values* are never parsed as format fields, so a description reading ``{0.__class__}``
stays those characters. The HTML part is rendered by a sandboxed, autoescaping Jinja2 environment whose only
template source is the package's own file; user text enters it as data (escaped), never as template source.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from pdn_ops.core.i18n import translate
from pdn_ops.notify.model import EVENTS, Channel, OutboundMessage

TEMPLATES = Path(__file__).with_name("templates")
MAX_PARAM_CHARS = 2000  # a description is cut in a message; the full text lives in the complaint


@cache
def environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def required_params(event: str) -> set[str]:
    """Every placeholder the event's texts use in either language, plus its WhatsApp template fields."""
    spec = EVENTS[event]
    names = set(spec.template_params)
    for part in ("subject", "text"):
        for lang in ("id", "en"):
            template = translate(f"notify.{event}.{part}", lang)
            names |= {field for _, field, _, _ in string.Formatter().parse(template) if field}
    return names


def check_params(event: str, params: Mapping[str, object]) -> None:
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}")
    missing = sorted(required_params(event) - set(params))
    if missing:
        raise ValueError(f"notification {event!r} needs params {missing}")


def _clean(params: Mapping[str, object]) -> dict[str, str]:
    return {k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()}


def _safe_link(value: str) -> str | None:
    # Only http(s) links become anchors: a javascript: URL in params must not become clickable.
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def render(*, idempotency_key: str, event: str, channel: Channel, address: str, language: str,
           params: Mapping[str, object], use_templates: bool = False) -> OutboundMessage:
    values = _clean(params)
    subject = translate(f"notify.{event}.subject", language, **values)
    text = translate(f"notify.{event}.text", language, **values)
    html = None
    if channel is Channel.EMAIL:
        html = environment().get_template("email.html").render(
            lang=language, subject=subject, paragraphs=text.split("\n"),
            link=_safe_link(values.get("link", "")), t=lambda key: translate(key, language),
        )
        text = "\n\n".join((translate("notify.email.greeting", language), text,
                            translate("notify.email.footer", language)))
    spec = EVENTS[event]
    template_name = f"pdn_{event}" if use_templates and channel is Channel.WHATSAPP else None
    return OutboundMessage(
        idempotency_key=idempotency_key, event=event, channel=channel, address=address, language=language,
        subject=subject, text=text, html=html, template_name=template_name,
        template_params=tuple(values.get(name, "") for name in spec.template_params),
    )
