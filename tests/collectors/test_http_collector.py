"""The site collector against real HTTP(S) servers on loopback addresses, with certificates made here."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from collectors.http.client import SiteClient
from collectors.http.collector import SiteCollector, run_cycle
from pdn_ops.core.inventory import Site
from pdn_ops.health.observations import FailureClass
from tests.collectors.tls_certs import make_ca, make_leaf
from tests.support import free_port

KEYWORD = "Dinas Kesehatan"
PAGE = f"<html><body><h1>Selamat datang di {KEYWORD}</h1></body></html>"


async def ok(_: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def missing(_: web.Request) -> web.Response:
    return web.Response(status=404, text="not here")


async def redirect(_: web.Request) -> web.Response:
    raise web.HTTPFound("/ok")


async def loop(request: web.Request) -> web.Response:
    n = int(request.query.get("n", "0"))
    raise web.HTTPFound(f"/loop?n={n + 1}")


async def big(_: web.Request) -> web.StreamResponse:
    # The keyword sits after 2 MiB of filler: beyond the body cap.
    return web.Response(body=b"x" * (2 * 1024 * 1024) + KEYWORD.encode(), content_type="text/html")


async def hang(_: web.Request) -> web.Response:
    await asyncio.sleep(60)
    return web.Response(text="too late")


async def stall_body(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = 100_000
    await response.prepare(request)
    await response.write(b"<html>")
    await asyncio.sleep(60)
    return response


@dataclass
class World:
    http: str  # base URLs
    https_valid: str
    https_expired: str
    https_unknown_ca: str
    https_wrong_name: str
    silent: str
    refused: str
    ca_file: str
    valid_not_after: dt.datetime
    expired_not_after: dt.datetime


class _Servers:
    """aiohttp sites and a silent TCP listener on their own event loop in a thread, shared by the module."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: web.AppRunner | None = None
        self.silent: asyncio.Server | None = None
        self.held: list[asyncio.StreamWriter] = []

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def start(self, tls: dict[str, ssl.SSLContext | None], port: int, silent_host: str) -> None:
        app = web.Application()
        app.add_routes([web.get("/ok", ok), web.get("/missing", missing), web.get("/redirect", redirect),
                        web.get("/loop", loop), web.get("/big", big), web.get("/hang", hang),
                        web.get("/stall-body", stall_body)])
        self.runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self.runner.setup()
        for host, ctx in tls.items():
            await web.TCPSite(self.runner, host, port, ssl_context=ctx).start()

        async def accept_and_say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.held.append(writer)

        self.silent = await asyncio.start_server(accept_and_say_nothing, silent_host, port)

    async def stop(self) -> None:
        for writer in self.held:
            writer.transport.abort()
        if self.silent is not None:
            self.silent.close()
        if self.runner is not None:
            await self.runner.cleanup()


def _server_ctx(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(certfile), str(keyfile))
    return ctx


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    pki = tmp_path_factory.mktemp("site-pki")
    ca, stranger = make_ca(pki, "pdn-test-ca"), make_ca(pki, "unknown-ca")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    valid_until, expired_at = now + dt.timedelta(days=20), now - dt.timedelta(days=3)
    hosts = {name: f"127.0.31.{i}" for i, name in enumerate(
        ("http", "valid", "expired", "unknown", "wrong", "silent", "refused"), start=1)}
    port = free_port(hosts["http"])
    tls = {
        hosts["http"]: None,
        hosts["valid"]: _server_ctx(*make_leaf(ca, pki, "valid", [hosts["valid"]], not_after=valid_until)),
        hosts["expired"]: _server_ctx(*make_leaf(ca, pki, "expired", [hosts["expired"]], not_after=expired_at)),
        hosts["unknown"]: _server_ctx(*make_leaf(stranger, pki, "unknown", [hosts["unknown"]],
                                                 not_after=valid_until)),
        hosts["wrong"]: _server_ctx(*make_leaf(ca, pki, "wrong", ["127.0.31.99"], not_after=valid_until)),
    }
    servers = _Servers()
    servers.call(servers.start(tls, port, hosts["silent"]))
    try:
        yield World(
            http=f"http://{hosts['http']}:{port}",
            https_valid=f"https://{hosts['valid']}:{port}",
            https_expired=f"https://{hosts['expired']}:{port}",
            https_unknown_ca=f"https://{hosts['unknown']}:{port}",
            https_wrong_name=f"https://{hosts['wrong']}:{port}",
            silent=f"http://{hosts['silent']}:{port}",
            refused=f"http://{hosts['refused']}:{port}",
            ca_file=str(ca.pem_file),
            valid_not_after=valid_until,
            expired_not_after=expired_at,
        )
    finally:
        servers.call(servers.stop())
        servers.loop.call_soon_threadsafe(servers.loop.stop)
        servers.thread.join(10)
        servers.loop.close()


def site(url: str, **kwargs) -> Site:
    return Site(url=url, opd="dinkes", **{"timeout": 3.0, **kwargs})


async def check_one(world: World, target: Site, **client_kwargs):
    async with SiteClient(ca_file=world.ca_file, **client_kwargs) as client:
        return (await SiteCollector(client).collect([target]))[0]


async def test_healthy_page_reports_status_timings_and_keyword(world):
    result = await check_one(world, site(world.http + "/ok", keyword=KEYWORD))
    assert result.ok, result.detail
    assert (result.status_code, result.keyword_found, result.failure) == (200, True, None)
    assert result.bytes_read == len(PAGE)
    assert result.ttfb_s is not None and result.total_s is not None
    assert 0 < result.ttfb_s <= result.total_s
    assert result.tls_days_left is None  # plain HTTP has no certificate


async def test_https_site_reports_certificate_expiry(world):
    result = await check_one(world, site(world.https_valid + "/ok", keyword=KEYWORD))
    assert result.ok, result.detail
    assert result.tls_expires_at == world.valid_not_after
    assert result.tls_days_left is not None and 19.9 < result.tls_days_left <= 20


async def test_expired_certificate_is_a_tls_failure_that_still_knows_its_expiry(world):
    result = await check_one(world, site(world.https_expired + "/ok"))
    assert (result.ok, result.failure) == (False, FailureClass.TLS)
    assert "expired" in result.detail
    assert result.status_code is None  # no request went over an unverified connection
    assert result.tls_expires_at == world.expired_not_after
    assert result.tls_days_left is not None and -3.1 < result.tls_days_left < -2.9


async def test_certificate_from_an_unknown_ca_is_refused(world):
    result = await check_one(world, site(world.https_unknown_ca + "/ok"))
    assert (result.ok, result.failure) == (False, FailureClass.TLS)
    assert "self-signed certificate in certificate chain" in result.detail  # the chain ends in a CA we do not trust
    assert result.status_code is None


async def test_certificate_for_another_name_is_refused(world):
    result = await check_one(world, site(world.https_wrong_name + "/ok"))
    assert (result.ok, result.failure) == (False, FailureClass.TLS)


async def test_system_trust_store_alone_does_not_trust_the_private_ca(world):
    async with SiteClient() as client:
        result = (await SiteCollector(client).collect([site(world.https_valid + "/ok")]))[0]
    assert result.failure is FailureClass.TLS


async def test_unexpected_status_is_a_status_failure(world):
    result = await check_one(world, site(world.http + "/missing"))
    assert (result.ok, result.failure, result.status_code) == (False, FailureClass.STATUS, 404)
    assert "expected 200" in result.detail


async def test_missing_keyword_is_a_keyword_failure(world):
    result = await check_one(world, site(world.http + "/ok", keyword="Dinas Sosial"))
    assert (result.ok, result.failure, result.keyword_found) == (False, FailureClass.KEYWORD, False)


async def test_redirects_are_followed_and_counted(world):
    result = await check_one(world, site(world.http + "/redirect", keyword=KEYWORD))
    assert result.ok and result.redirects == 1


async def test_redirect_not_followed_when_the_site_says_so(world):
    result = await check_one(world, site(world.http + "/redirect", follow_redirects=False, expect_status=302))
    assert result.ok and (result.status_code, result.redirects) == (302, 0)


async def test_redirect_loop_is_capped(world):
    result = await check_one(world, site(world.http + "/loop"), max_redirects=4)
    assert (result.ok, result.failure) == (False, FailureClass.STATUS)
    assert "redirects" in result.detail


async def test_body_read_is_capped(world):
    result = await check_one(world, site(world.http + "/big", keyword=KEYWORD), max_body=64 * 1024)
    assert result.bytes_read == 64 * 1024
    assert (result.failure, result.keyword_found) == (FailureClass.KEYWORD, False)
    assert "first 65536 bytes" in result.detail


async def test_server_that_accepts_tcp_and_never_answers_times_out_within_the_bound(world):
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await check_one(world, site(world.silent + "/", timeout=0.5))
    assert (result.ok, result.failure) == (False, FailureClass.TIMEOUT)
    assert loop.time() - started < 2.0


async def test_handler_that_hangs_before_headers_or_mid_body_times_out(world):
    async with SiteClient(ca_file=world.ca_file) as client:
        results = await SiteCollector(client).collect([
            site(world.http + "/hang", timeout=0.5), site(world.http + "/stall-body", timeout=0.5),
        ])
    assert [r.failure for r in results] == [FailureClass.TIMEOUT, FailureClass.TIMEOUT]
    assert results[1].status_code == 200  # headers came, the body never finished


async def test_refused_connection(world):
    result = await check_one(world, site(world.refused + "/"))
    assert (result.ok, result.failure) == (False, FailureClass.REFUSED)


async def test_name_that_does_not_resolve_is_a_dns_failure(world):
    result = await check_one(world, site("http://no-such-site.invalid/"))
    assert (result.ok, result.failure) == (False, FailureClass.DNS)


async def test_concurrency_is_bounded_and_results_keep_their_order(world):
    urls = [world.http + "/ok", world.http + "/missing"] * 20
    async with SiteClient(ca_file=world.ca_file, concurrency=3) as client:
        results = await SiteCollector(client, concurrency=3).collect([site(u) for u in urls])
        assert client._session is not None
        assert client._session.connector is not None and client._session.connector.limit == 3
    assert [r.url for r in results] == urls
    assert [r.status_code for r in results] == [200, 404] * 20


def test_run_cycle_works_from_synchronous_code(world):
    results = run_cycle([site(world.https_valid + "/ok"), site(world.refused + "/")], ca_file=world.ca_file)
    assert [r.failure for r in results] == [None, FailureClass.REFUSED]


def test_free_port_helper_is_on_loopback():
    with socket.socket() as sock:
        sock.bind(("127.0.31.1", 0))
        assert sock.getsockname()[0] == "127.0.31.1"
