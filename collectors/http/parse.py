"""One fetched site -> a SiteCheck. Pure: no I/O, the time is an argument.

The input is what the client saw, for example (an HTTPS site that redirected once and answered 200)::

    RawFetch(url="https://dinkes.example.go.id/", status=200, body=b"<html>...Dinas Kesehatan...",
             truncated=False, redirects=1, ttfb_s=0.031, total_s=0.034,
             cert_not_after=datetime(2027, 1, 31, 23, 59, 59, tzinfo=UTC))

or, for a failure, ``RawFetch(url=..., failure=FailureClass.TLS, detail="certificate has expired",
cert_not_after=...)``; the certificate's expiry is known even when verification failed, so an expired
certificate still reports how many days ago it expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pdn_ops.health.observations import FailureClass, SiteCheck


@dataclass(frozen=True, slots=True)
class RawFetch:
    url: str
    status: int | None = None
    body: bytes = b""
    truncated: bool = False
    redirects: int = 0
    ttfb_s: float | None = None
    total_s: float | None = None
    cert_not_after: datetime | None = None
    failure: FailureClass | None = None
    detail: str = ""


def days_left(not_after: datetime | None, now: datetime) -> float | None:
    if not_after is None:
        return None
    return round((not_after - now).total_seconds() / 86400, 3)


def evaluate(raw: RawFetch, *, expect_status: int, keyword: str | None, now: datetime) -> SiteCheck:
    """Judge a fetch: transport failure first, then the status, then the keyword (searched in the capped body)."""
    failure, detail, found = raw.failure, raw.detail, None
    if failure is None and raw.status != expect_status:
        failure, detail = FailureClass.STATUS, f"HTTP {raw.status}, expected {expect_status}"
    elif failure is None and keyword:
        found = keyword.encode("utf-8") in raw.body
        if not found:
            where = f"the first {len(raw.body)} bytes" if raw.truncated else "the page"
            failure, detail = FailureClass.KEYWORD, f"keyword not found in {where}"
    return SiteCheck(
        url=raw.url,
        at=now,
        ok=failure is None,
        status_code=raw.status,
        total_s=raw.total_s,
        ttfb_s=raw.ttfb_s,
        keyword_found=found,
        redirects=raw.redirects,
        bytes_read=len(raw.body),
        tls_expires_at=raw.cert_not_after,
        tls_days_left=days_left(raw.cert_not_after, now),
        failure=failure,
        detail=detail,
    )
