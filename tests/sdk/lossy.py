"""A misbehaving HTTP front of a real Tidings, for the SDK's retry tests.

`Lossy(upstream)` listens on 127.0.0.1 (a random port) in the test's event loop and
forwards every request to `upstream`, except that faults planned per `"METHOD /path"`
are played first, one per request, in order:

- `"drop"`: forward the request (the server does it), then cut the client's connection
  without a word, as when the answer is lost on the way back;
- `"cut"`: cut the connection without forwarding (the server never sees it);
- `"503"` / `"429"`: answer that status with the API's error body, and a `Retry-After`
  of `retry_after` seconds unless that is None.

`attempts` records every request that arrived as (method, path, Idempotency-Key).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tidings.api.app import start_site

_FORWARDED = ("Authorization", "Content-Type", "Idempotency-Key")


@dataclass
class Lossy:
    upstream: str
    retry_after: str | None = "1"
    plan: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    attempts: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    async def start(self) -> Lossy:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession()
        self._runner, port = await start_site(app, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        await self._session.close()
        await self._runner.cleanup()

    def fault(self, route: str, *faults: str) -> None:
        self.plan[route].extend(faults)

    def tried(self, route: str) -> list[str | None]:
        """The Idempotency-Key of every request that came to `route`."""
        return [key for method, path, key in self.attempts if f"{method} {path}" == route]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        route = f"{request.method} {request.path}"
        self.attempts.append((request.method, request.path, request.headers.get("Idempotency-Key")))
        fault = self.plan[route].pop(0) if self.plan[route] else None
        if fault in ("503", "429"):
            headers = {} if self.retry_after is None else {"Retry-After": self.retry_after}
            error = {"code": "unavailable", "message": "planned", "field": None}
            return web.json_response({"error": error}, status=int(fault), headers=headers)
        if fault == "cut":
            return self._cut(request)
        headers = {k: v for k, v in request.headers.items() if k in _FORWARDED}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            raw = await answer.read()
            status, content_type = answer.status, answer.content_type
        if fault == "drop":
            return self._cut(request)
        return web.Response(body=raw, status=status, content_type=content_type)

    @staticmethod
    def _cut(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()  # RST: the client gets no answer at all
        return web.Response(status=500)  # never sent: the connection is gone
