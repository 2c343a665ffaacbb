"""A real aiohttp webhook receiver on 127.0.0.1 (random port) that records what it got.

Routes:
- `/ok` 200 "ok"; `/empty` 204; `/echo` 200 with the request body.
- `/status/{code}?size=N&retry_after=V&char=C`: that status, a body of N copies of C
  (default "x"), an optional Retry-After header.
- `/redirect`: 301 to /ok.
- `/slow`: waits until the test ends (bounded), then 200.
- `/stream`: streams up to 640 MB, to prove the client stops reading early.
- `/trickle`: 200 and the start of a body, then stalls until the test ends (bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from tidings.transports.webhook import WebhookTransport


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]


@dataclass
class Receiver:
    port: int
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/ok", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _app(rx: Receiver) -> web.Application:
    async def record(request: web.Request) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        rx.seen.append(
            Seen(
                request.path,
                dict(request.headers),
                await request.read(),
                (str(peer[0]), int(peer[1])) if peer else ("", 0),
            )
        )

    async def ok(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="ok")

    async def empty(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=204)

    async def echo(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=rx.seen[-1].body, content_type="application/json")

    async def status(request: web.Request) -> web.Response:
        await record(request)
        size = int(request.query.get("size", "0"))
        char = request.query.get("char", "x")
        text = (char * size).encode()
        headers = {}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        return web.Response(status=int(request.match_info["code"]), body=text, headers=headers)

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        raise web.HTTPMovedPermanently(location="/ok")

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(rx.release.wait(), 10)
        return web.Response(text="late")

    async def stream(request: web.Request) -> web.StreamResponse:
        await record(request)
        resp = web.StreamResponse(status=200)
        await resp.prepare(request)
        chunk = b"y" * 65536
        with contextlib.suppress(ConnectionError, RuntimeError):
            for _ in range(10_000):
                if rx.release.is_set():
                    break
                await resp.write(chunk)
        return resp

    async def trickle(request: web.Request) -> web.StreamResponse:
        await record(request)
        resp = web.StreamResponse(status=200)
        await resp.prepare(request)
        await resp.write(b"partial")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(rx.release.wait(), 10)
        return resp

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/empty", empty)
    app.router.add_post("/echo", echo)
    app.router.add_post("/status/{code}", status)
    app.router.add_post("/redirect", redirect)
    app.router.add_post("/slow", slow)
    app.router.add_post("/stream", stream)
    app.router.add_post("/trickle", trickle)
    return app


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver(port=0)
    runner = web.AppRunner(_app(rx), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rx.port = runner.addresses[0][1]
    try:
        yield rx
    finally:
        rx.release.set()
        await asyncio.wait_for(runner.cleanup(), 10)


@pytest.fixture
async def transport() -> AsyncIterator[WebhookTransport]:
    """A transport allowed to reach 127.0.0.1 (TIDINGS_ALLOW_PRIVATE_TARGETS=1)."""
    t = WebhookTransport(allow_private=True)
    await t.start()
    try:
        yield t
    finally:
        await asyncio.wait_for(t.close(), 10)


@pytest.fixture
async def guarded() -> AsyncIterator[WebhookTransport]:
    """A production transport: the SSRF guard is on."""
    t = WebhookTransport(allow_private=False)
    await t.start()
    try:
        yield t
    finally:
        await asyncio.wait_for(t.close(), 10)
