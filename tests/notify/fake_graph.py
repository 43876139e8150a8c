"""A local server that speaks the parts of the WhatsApp Cloud API (Graph API) pdn-ops uses, on loopback.

It records every request, can fail on demand (HTTP status for the next N sends, or hold a send without answering),
serves media for GET /{version}/{media_id} and the URL it returns, and builds the signed status callbacks Meta
would post for the messages it accepted. It also answers the self-hosted gateway's POST /send/message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pdn_ops.notify.channels.whatsapp_webhook import sign

TOKEN = "test-access-token-0123456789"


@dataclass
class Accepted:
    wamid: str
    body: dict[str, Any]


@dataclass
class FakeGraph:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    accepted: list[Accepted] = field(default_factory=list)
    fail_status: int | None = None
    fail_count: int = 0
    reject_status: int | None = None  # answer every send with this status (a permanent refusal)
    hold_count: int = 0  # hold the next N sends (decided when each arrives, whatever the test does meanwhile)
    hold_seconds: float = 30.0  # how long a held send waits for its answer (beyond the client's timeout)
    accept_held: bool = True  # whether a held send counts as accepted (Meta got it) or is dropped
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    media_fail_count: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.lock = threading.Lock()

    # --- lifecycle ---
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._release = asyncio.Event()
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_post("/{version}/{phone_id}/messages", self._messages)
        app.router.add_get("/media-bytes/{media_id}", self._media_bytes)
        app.router.add_get("/{version}/{media_id}", self._media_info)
        app.router.add_post("/send/message", self._gateway_send)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, self.port)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        self._loop.run_forever()

    def start(self) -> FakeGraph:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("fake Graph API did not start")
        return self

    def stop(self) -> None:
        async def _shutdown() -> None:
            self._release.set()  # answer held requests now, so shutdown does not wait for them
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- handlers ---
    def _record(self, request: web.Request, body: dict[str, Any] | None) -> None:
        with self.lock:
            self.requests.append((request.method, request.path, body))

    async def _messages(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": {"message": "Invalid OAuth access token", "code": 190}}, status=401)
        if self.reject_status is not None:
            return web.json_response({"error": {"message": "Recipient not on WhatsApp", "code": 131026}},
                                     status=self.reject_status)
        with self.lock:
            failing = self.fail_count > 0
            if failing:
                self.fail_count -= 1
        if failing:
            return web.json_response({"error": {"message": "Service temporarily unavailable", "code": 2}},
                                     status=self.fail_status or 503)
        wamid = f"wamid.FAKE{next(self._ids):06d}"
        with self.lock:
            holding = self.hold_count > 0
            if holding:
                self.hold_count -= 1
        if holding:
            if self.accept_held:
                with self.lock:
                    self.accepted.append(Accepted(wamid, body))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.hold_seconds)
            return web.json_response({"messages": [{"id": wamid}]})
        with self.lock:
            self.accepted.append(Accepted(wamid, body))
        return web.json_response({"messaging_product": "whatsapp",
                                  "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
                                  "messages": [{"id": wamid}]})

    async def _media_info(self, request: web.Request) -> web.Response:
        self._record(request, None)
        if self.media_fail_count > 0:
            self.media_fail_count -= 1
            return web.json_response({"error": {"message": "temporarily unavailable", "code": 2}}, status=503)
        media_id = request.match_info["media_id"]
        if request.headers.get("Authorization") != f"Bearer {TOKEN}" or media_id not in self.media:
            return web.json_response({"error": {"message": "not found", "code": 100}}, status=404)
        content, mime = self.media[media_id]
        return web.json_response({"url": f"{self.url}/media-bytes/{media_id}", "mime_type": mime,
                                  "file_size": len(content), "id": media_id, "messaging_product": "whatsapp"})

    async def _media_bytes(self, request: web.Request) -> web.Response:
        self._record(request, None)
        media_id = request.match_info["media_id"]
        if request.headers.get("Authorization") != f"Bearer {TOKEN}" or media_id not in self.media:
            return web.Response(status=404)
        content, mime = self.media[media_id]
        return web.Response(body=content, content_type=mime)

    async def _gateway_send(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        if request.headers.get("Authorization") is None:
            return web.json_response({"code": "UNAUTHORIZED"}, status=401)
        with self.lock:
            failing = self.fail_count > 0
            if failing:
                self.fail_count -= 1
        if failing:
            return web.json_response({"code": "ERROR"}, status=self.fail_status or 503)
        message_id = f"3EB0FAKE{next(self._ids):06d}"
        with self.lock:
            self.accepted.append(Accepted(message_id, body))
        return web.json_response({"code": "SUCCESS", "message": "Success",
                                  "results": {"message_id": message_id, "status": "sent"}})

    # --- what Meta would post back ---
    def sends(self) -> list[dict[str, Any]]:
        with self.lock:
            return [b for m, p, b in self.requests if m == "POST" and b is not None]

    def status_callback(self, accepted: Accepted, status: str) -> dict[str, Any]:
        item: dict[str, Any] = {"id": accepted.wamid, "status": status, "timestamp": "1764300000",
                                "recipient_id": accepted.body.get("to")}
        if accepted.body.get("biz_opaque_callback_data"):
            item["biz_opaque_callback_data"] = accepted.body["biz_opaque_callback_data"]
        return envelope(statuses=[item])


def envelope(*, messages: list[dict[str, Any]] | None = None,
             statuses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": "622100000", "phone_number_id": "1234"}}
    if messages is not None:
        value["messages"] = messages
        value["contacts"] = [{"profile": {"name": "Admin"}, "wa_id": m["from"]} for m in messages]
    if statuses is not None:
        value["statuses"] = statuses
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": value}]}]}


def signed(payload: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return raw, {"X-Hub-Signature-256": sign(raw, secret), "Content-Type": "application/json"}
