"""The aiohttp application: middlewares, routes and the server life cycle."""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from tidings.api import (
    auth,
    compat,
    deliveries,
    destinations,
    events,
    groups,
    ops,
    query,
    uploads,
    users,
    ws,
)
from tidings.api.errors import (
    Handler,
    answer_protocol_errors_as_json,
    error_answer,
    error_middleware,
)
from tidings.api.keys import (
    ENGINE,
    GROUP_WAKER,
    KEY_DIGESTS,
    NOTICES,
    OPENAPI,
    SETTINGS,
    SPOOL,
    STORE,
    EngineLink,
    NoEngine,
)
from tidings.api.openapi import build_openapi
from tidings.config import Settings
from tidings.dashboard import views as dashboard
from tidings.engine.groups import GroupReaper, GroupWaker
from tidings.ingest.spooled import SpooledUploads
from tidings.notices import Notices
from tidings.realtime.hub import Hub
from tidings.store.base import Store

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    store: Store,
    key_digests: Sequence[str],
    engine: EngineLink | None = None,
    notices: Notices | None = None,
    hub: Hub | None = None,
    group_waker: GroupWaker | None = None,
) -> web.Application:
    app = web.Application(
        middlewares=[api_middleware],
        client_max_size=settings.max_request_bytes,
    )
    app[STORE] = store
    app[SETTINGS] = settings
    app[KEY_DIGESTS] = tuple(key_digests)
    app[auth.RAW_DIGESTS] = auth.raw_digests(app[KEY_DIGESTS])
    app[OPENAPI] = build_openapi()
    waker = app[GROUP_WAKER] = group_waker or GroupWaker()
    app[ENGINE] = _WakingGroups(engine or NoEngine(), waker)
    app[_REAPER] = GroupReaper(store, waker)
    app[groups.GROUP_CACHE] = {}
    app[NOTICES] = notices or Notices()
    app[SPOOL] = SpooledUploads(
        store,
        Path(settings.upload_dir),
        settings.watch_topic,
        max_payload_bytes=settings.max_payload_bytes,
        wake=lambda: app[ENGINE].wake(),
        live=lambda events, appended: ws.push_live(app, events, appended),
    )
    gateway = app[ws.GATEWAY] = ws.Gateway(
        hub or Hub(),
        settings.ws_max_connections,
        settings.ws_connect_rate,
        settings.ws_send_queue,
    )
    # Offsets of the messages an append writes are worked out only for the users a push
    # can reach (looked up at each call: the Redis relay replaces the hub's answers).
    store.want_offsets(lambda: gateway.hub.reaches_anyone(), lambda: gateway.hub.reaches)
    app.on_startup.append(ws.load_secret)
    app.on_startup.append(_start_spool)
    app.on_startup.append(_start_reaper)
    app.on_shutdown.append(_end_long_polls)
    app.on_cleanup.append(_stop_spool)
    app.on_cleanup.append(_stop_reaper)
    query.install(app)
    for module in (events, destinations, deliveries, groups, uploads, users, ws, compat, ops):
        app.add_routes(module.routes)
    app.add_routes(ops.probe_routes)
    dashboard.install(app)
    return app


_REAPER = web.AppKey("group_reaper", GroupReaper)


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every API request: the key (a 401 first), then the query check, then the handler,
    any error answered with the standard body. One layer, not one per concern: each
    middleware layer is a coroutine frame and a wrapper call on every request."""
    try:
        refused = auth.refusal(request)
        if refused is not None:
            return refused
        query.check(request)
        return await handler(request)
    except Exception as exc:
        return error_answer(request, exc)


class _WakingGroups:
    """The engine link, which also wakes this process's long polls of pull groups: what
    makes deliveries due for a worker makes them due for a consumer too."""

    def __init__(self, engine: EngineLink, waker: GroupWaker) -> None:
        self._engine = engine
        self._waker = waker

    def wake(self) -> None:
        self._waker.wake()
        self._engine.wake()

    def destinations_changed(self) -> None:
        self._waker.destinations_changed()
        self._engine.destinations_changed()


async def _start_reaper(app: web.Application) -> None:
    # Other nodes' new work and destination changes (PostgreSQL NOTIFY) wake this node's
    # long polls too, and the latter make its cache of groups read them again.
    waker = app[GROUP_WAKER]
    await app[STORE].listen(waker.wake, waker.destinations_changed)
    app[_REAPER].start()


async def _end_long_polls(app: web.Application) -> None:
    """Before the server waits for requests to end: a long poll answers at once."""
    app[GROUP_WAKER].close()


async def _stop_reaper(app: web.Application) -> None:
    await app[_REAPER].stop()


async def _start_spool(app: web.Application) -> None:
    await app[SPOOL].start()


async def _stop_spool(app: web.Application) -> None:
    await app[SPOOL].stop()


def create_probe_app(store: Store) -> web.Application:
    """`/healthz`, `/readyz` and `/metrics` alone: what a worker process serves (no API,
    so no key; the same answers as the API's own)."""
    app = web.Application(middlewares=[error_middleware])
    app[STORE] = store
    app.add_routes(ops.probe_routes)
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); binding before anything else starts lets a
    taken port fail a process before it has done (or printed) anything."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def serve_on(app: web.Application, sock: socket.socket) -> tuple[web.AppRunner, int]:
    """Serve `app` on a socket from `bind_socket`; answer the runner and the bound port."""
    # auto_decompress=False: api.body undoes Content-Encoding itself, bounded, with 4xx
    # answers for bodies that are not what they claim (aiohttp's own answers 500).
    runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
    await runner.setup()
    answer_protocol_errors_as_json(runner)
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, int(sock.getsockname()[1])


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; answer the runner and the bound port (port 0 picks a free one)."""
    return await serve_on(app, bind_socket(host, port))
