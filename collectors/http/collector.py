"""Checks every site of a cycle concurrently, at most ``concurrency`` at once, each within its own timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from collectors.http import parse
from collectors.http.client import SiteClient
from pdn_ops.core.inventory import Site
from pdn_ops.health.observations import SiteCheck


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SiteCollector:
    kind = "http"

    def __init__(
        self, client: SiteClient, *, concurrency: int = 100, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self.client = client
        self.concurrency = concurrency
        self._clock = clock

    async def check(self, site: Site) -> SiteCheck:
        now = self._clock()
        raw = await self.client.fetch(site.url, time_limit=site.timeout, follow_redirects=site.follow_redirects)
        return parse.evaluate(raw, expect_status=site.expect_status, keyword=site.keyword, now=now)

    async def collect(self, sites: Iterable[Site]) -> list[SiteCheck]:
        """One check per site, in the order given; a failing site is a failed SiteCheck, never an exception."""
        gate = asyncio.Semaphore(self.concurrency)

        async def bounded(site: Site) -> SiteCheck:
            async with gate:
                return await self.check(site)

        return list(await asyncio.gather(*(bounded(site) for site in sites)))


def run_cycle(sites: Iterable[Site], *, ca_file: str | None = None, concurrency: int = 100) -> list[SiteCheck]:
    """A whole cycle from synchronous code (the scheduler's job thread): own event loop, own session."""

    async def main() -> list[SiteCheck]:
        async with SiteClient(ca_file=ca_file, concurrency=concurrency) as client:
            return await SiteCollector(client, concurrency=concurrency).collect(sites)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    # Called from a thread that already runs a loop (an async caller, Playwright's sync API): a loop of our own,
    # in a thread of our own, rather than failing the whole cycle.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdn-ops-sites") as pool:
        return pool.submit(asyncio.run, main()).result()
