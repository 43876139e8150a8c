"""Rendering, photo checks, webhook signatures, settings and metrics: the pure parts of notifications."""

from __future__ import annotations

import io
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from PIL import Image
from prometheus_client import CollectorRegistry, generate_latest

from pdn_ops.core.errors import MediaRefused
from pdn_ops.core.settings import load_settings
from pdn_ops.notify import rendering as templates
from pdn_ops.notify.channels import whatsapp_webhook as webhook
from pdn_ops.notify.media import MAX_BYTES, check_photo
from pdn_ops.notify.metrics import NotifyCollector
from pdn_ops.notify.model import Channel
from pdn_ops.notify.outbox import OutboxSnapshot
from pdn_ops.notify.policy import RetryPolicy, quiet_until
from tests.support import require_binary

JAKARTA = ZoneInfo("Asia/Jakarta")


def image(fmt: str, size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buffer, format=fmt)
    return buffer.getvalue()


def test_user_text_is_data_never_template_source() -> None:
    params = {"number": "PDN-1", "reason": "{{ 7*7 }} <script>alert(1)</script> {0.__class__}",
              "link": "javascript:alert(1)"}
    message = templates.render(idempotency_key="k", event="complaint_returned", channel=Channel.EMAIL,
                               address="a@b.example", language="id", params=params)
    assert "{{ 7*7 }}" in message.text and "49" not in message.text
    assert "{0.__class__}" in message.text
    assert message.html is not None
    assert "{{ 7*7 }}" in message.html and "49" not in message.html
    assert "<script>" not in message.html and "&lt;script&gt;" in message.html
    assert 'href="javascript:' not in message.html, "only http(s) links become anchors"


def test_email_is_rendered_in_the_recipients_language() -> None:
    params = {"number": "PDN-7", "link": "https://pdn.example.go.id/complaints/7"}
    id_msg = templates.render(idempotency_key="k", event="complaint_fixed", channel=Channel.EMAIL,
                              address="a@b.example", language="id", params=params)
    en_msg = templates.render(idempotency_key="k", event="complaint_fixed", channel=Channel.EMAIL,
                              address="a@b.example", language="en", params=params)
    assert id_msg.subject == "Pengaduan PDN-7 selesai dikerjakan" and en_msg.subject == "Complaint PDN-7 has been fixed"
    assert '<html lang="en">' in (en_msg.html or "") and "Open in PDN Services" in (en_msg.html or "")
    assert 'href="https://pdn.example.go.id/complaints/7"' in (id_msg.html or "")


def test_whatsapp_template_messages_carry_the_ordered_parameters() -> None:
    message = templates.render(idempotency_key="k", event="complaint_returned", channel=Channel.WHATSAPP,
                               address="+6281200000001", language="id",
                               params={"number": "PDN-9", "reason": "foto buram", "link": "https://x.example/9"},
                               use_templates=True)
    assert message.template_name == "pdn_complaint_returned"
    assert message.template_params == ("PDN-9", "foto buram", "https://x.example/9")


def test_every_event_renders_in_both_languages() -> None:
    from pdn_ops.notify.model import EVENTS

    for event in EVENTS:
        params = {name: "x" for name in templates.required_params(event)}
        for lang in ("id", "en"):
            for channel in Channel:
                message = templates.render(idempotency_key="k", event=event, channel=channel,
                                           address="a@b.example", language=lang, params=params)
                assert message.subject and message.text


def test_photos_are_accepted_or_refused_by_content() -> None:
    for fmt, mime in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")):
        assert check_photo(image(fmt)).mime_type == mime
    refusals = {
        "script": b"<script>alert(1)</script>",
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "gif": image("GIF"),
        "truncated": image("PNG", (300, 300))[:400],
        "oversized": b"\xff\xd8\xff" + b"\0" * MAX_BYTES,
        "bomb": _png_bomb(),
    }
    reasons = {}
    for name, content in refusals.items():
        with pytest.raises(MediaRefused) as caught:
            check_photo(content)
        reasons[name] = caught.value.args[0]
    assert reasons == {"script": "notify.media.type", "svg": "notify.media.type", "gif": "notify.media.type",
                       "truncated": "notify.media.broken", "oversized": "notify.media.size",
                       "bomb": "notify.media.pixels"}


def _png_bomb() -> bytes:
    # A tiny file declaring 20000 x 20000 pixels: refused from its header, before any decoding.
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_signature_check_uses_the_raw_bytes() -> None:
    raw = b'{"object":"whatsapp_business_account","entry":[]}'
    header = webhook.sign(raw, "s3cret")
    assert webhook.signature_valid(raw, header, "s3cret")
    assert not webhook.signature_valid(raw + b" ", header, "s3cret")
    assert not webhook.signature_valid(raw, header.upper(), "s3cret")
    assert not webhook.signature_valid(raw, None, "s3cret")
    assert not webhook.signature_valid(raw, header, "")


def test_retry_backoff_doubles_up_to_the_cap_and_quiet_hours_wrap_midnight() -> None:
    policy = RetryPolicy(max_attempts=5, base_seconds=30, max_seconds=100)
    assert [policy.delay(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 100, 100]
    assert policy.exhausted(5) and not policy.exhausted(4)
    late = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # 23:00 Jakarta
    early = datetime(2026, 11, 30, 21, 0, tzinfo=UTC)  # 04:00 Jakarta next day
    noon = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    end = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # 06:00 Jakarta
    assert quiet_until(late, "22:00", "06:00", JAKARTA) == end
    assert quiet_until(early, "22:00", "06:00", JAKARTA) == end
    assert quiet_until(noon, "22:00", "06:00", JAKARTA) is None
    assert quiet_until(noon, "11:00", "13:00", JAKARTA) == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def test_secrets_come_from_files_and_never_show(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("EAAG-very-secret-token\n")
    settings = load_settings(demo=True, whatsapp_access_token_file=token_file, smtp_password="smtp-pass-123",
                             whatsapp_app_secret="app-secret-xyz")
    assert settings.whatsapp_access_token is not None
    assert settings.whatsapp_access_token.get_secret_value() == "EAAG-very-secret-token"
    shown = repr(settings) + str(settings.model_dump())
    for secret in ("EAAG-very-secret-token", "smtp-pass-123", "app-secret-xyz"):
        assert secret not in shown
    from pdn_ops.core.errors import ConfigError

    with pytest.raises(ConfigError, match="whatsapp_app_secret_file") as caught:
        load_settings(demo=True, whatsapp_app_secret_file=tmp_path / "missing")
    assert "missing" in str(caught.value)


def test_metrics_collector_reports_channels_outcomes_and_oldest_age(tmp_path: Path) -> None:
    snap = OutboxSnapshot(counts={("whatsapp", "sent"): 3, ("email", "failed"): 1}, oldest_undelivered_seconds=42.5,
                          inbound_pending=2)
    registry = CollectorRegistry()
    registry.register(NotifyCollector(lambda: snap))
    text = generate_latest(registry).decode()
    assert 'pdn_notifications{channel="whatsapp",status="sent"} 3.0' in text
    assert 'pdn_notifications{channel="email",status="failed"} 1.0' in text
    assert 'pdn_notifications{channel="email",status="queued"} 0.0' in text
    assert "pdn_notify_oldest_undelivered_seconds 42.5" in text
    assert "pdn_notify_inbound_pending 2.0" in text
    promtool = require_binary("promtool", "/usr/bin/promtool")
    out = tmp_path / "metrics.txt"
    out.write_text(text)
    with out.open("rb") as stdin:
        check = subprocess.run([promtool, "check", "metrics"], stdin=stdin, capture_output=True, timeout=30)
    assert check.returncode == 0, check.stderr.decode() + check.stdout.decode()


def test_incomplete_notification_settings_are_refused_at_start() -> None:
    from pdn_ops.core.errors import ConfigError

    with pytest.raises(ConfigError, match="WHATSAPP_ACCESS_TOKEN"):
        load_settings(demo=True, whatsapp_provider="meta")
    with pytest.raises(ConfigError, match="WHATSAPP_GATEWAY_URL"):
        load_settings(demo=True, whatsapp_provider="gateway")
    with pytest.raises(ConfigError, match="unencrypted"):
        load_settings(demo=True, smtp_host="mail.example.go.id", smtp_security="none", smtp_username="u")
    assert load_settings(demo=True, smtp_host="127.0.0.1", smtp_security="none", smtp_username="u").smtp_host
