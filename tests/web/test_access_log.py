"""A real uvicorn server's access log never carries a secret sent in the query string (Meta's verify token)."""

from __future__ import annotations

import logging
import time
import urllib.request

from pdn_ops.web import access_log
from tests.support import serve_in_thread


async def _app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_query_secrets_are_masked_in_uvicorn_access_lines() -> None:
    lines = _Lines()
    with serve_in_thread(_app) as base:
        access_log.install()  # after uvicorn configured its loggers, as pdn_ops.app.cli does
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
        logging.getLogger("uvicorn.access").addHandler(lines)
        try:
            url = f"{base}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=s3cret-Verify&hub.challenge=12345&Token=abc"
            assert urllib.request.urlopen(url, timeout=5).read() == b"ok"
            deadline = time.monotonic() + 5
            while not lines.lines and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            logging.getLogger("uvicorn.access").removeHandler(lines)
    assert lines.lines, "uvicorn wrote an access line"
    text = "\n".join(lines.lines)
    assert "s3cret-Verify" not in text and "abc" not in text
    assert "hub.verify_token=[redacted]" in text and "hub.challenge=12345" in text, text


def test_redaction_keeps_the_rest_of_the_path() -> None:
    assert access_log.redact("/x?a=1&password=p&b=2") == "/x?a=1&password=[redacted]&b=2"
    assert access_log.redact("/tokens/5?tokenize=1") == "/tokens/5?tokenize=1"
