"""Running a Tidings process: open the store, settle the API key, serve until signalled.

Owns the process life cycle (start-up order, signals, graceful shutdown). Roles (api,
worker) are chosen by the caller; this module never parses command lines.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from tidings.api.app import bind_socket, create_app, create_probe_app, serve_on
from tidings.api.auth import META_KEY, digest, new_api_key
from tidings.api.ws import push_live
from tidings.config import Settings
from tidings.engine.alerts import Alerter
from tidings.engine.dispatcher import Dispatcher, EngineOptions
from tidings.engine.groups import GroupWaker
from tidings.engine.limits import make_limiter
from tidings.engine.retention import Sweeper
from tidings.engine.signals import RedisSignals
from tidings.ingest.files import FolderWatcher
from tidings.notices import Notices
from tidings.realtime.hub import Hub
from tidings.realtime.relay import RedisRelay
from tidings.runtime import run_loop, tune_gc
from tidings.store.base import Store, open_store
from tidings.transports.registry import TransportOptions, Transports, build_transports
from tidings.transports.senders import auto_sender_processes

log = logging.getLogger(__name__)


class StartupError(Exception):
    """A start-up failure the operator fixes by hand (a taken port): one line, no traceback."""


def _bind(host: str, port: int, setting: str) -> socket.socket:
    try:
        return bind_socket(host, port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            hint = f"another process has it; set {setting} to another port (0 picks a free one)"
        else:
            hint = f"check TIDINGS_HOST and {setting}"
        raise StartupError(f"cannot listen on {host}:{port}: {reason}: {hint}") from exc


async def settle_api_key(settings: Settings, store: Store) -> list[str]:
    """The key digests the API accepts. With no TIDINGS_API_KEY, create one on first start,
    keep only its digest, and print the key once."""
    if settings.api_key:
        return [digest(settings.api_key)]
    candidate = new_api_key()
    stored = await store.set_meta_if_absent(META_KEY, digest(candidate))
    if stored == digest(candidate):
        print(
            f"Tidings created an API key (shown only this once; set TIDINGS_API_KEY to "
            f"replace it):\n\n    {candidate}\n",
            file=sys.stdout,
            flush=True,
        )
    return [stored]


class _EngineLinks:
    """What the API tells the engine: the worker in this process, if any, and every worker
    elsewhere through Redis, if configured."""

    def __init__(self, dispatcher: Dispatcher | None, signals: RedisSignals | None) -> None:
        self._dispatcher = dispatcher
        self._signals = signals

    def wake(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.wake()
        if self._signals is not None:
            self._signals.work()

    def destinations_changed(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.destinations_changed()
        if self._signals is not None:
            self._signals.destinations()


def _both(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    def call() -> None:
        first()
        second()

    return call


def _worker_id() -> str:
    return f"wkr_{socket.gethostname()}_{os.getpid()}_{secrets.token_hex(4)}"


def warn_about_allowances(settings: Settings) -> None:
    """Say first what lifts the SSRF guard, so nobody runs it in production unawares."""
    if settings.allow_private_targets:
        log.warning(
            "private targets allowed (TIDINGS_ALLOW_PRIVATE_TARGETS=1): webhooks may reach "
            "loopback, private and link-local addresses; for development and tests only"
        )
    elif settings.allow_loopback_targets:
        log.warning(
            "loopback targets allowed (TIDINGS_ALLOW_LOOPBACK_TARGETS=1): webhooks may "
            "reach 127.0.0.0/8 and ::1 on this host; for development only"
        )


async def run(settings: Settings, *, roles: frozenset[str]) -> None:
    warn_about_allowances(settings)
    # Ports first: a taken one must fail the start before a key is created and printed.
    api_sock = _bind(settings.host, settings.port, "TIDINGS_PORT") if "api" in roles else None
    probe_sock = None
    if "api" not in roles and settings.metrics_port is not None:
        probe_sock = _bind(settings.host, settings.metrics_port, "TIDINGS_METRICS_PORT")
    store = open_store(settings.database_url)
    store.inbox_max = settings.inbox_max
    await store.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    transports: Transports | None = None
    dispatcher: Dispatcher | None = None
    sweeper: Sweeper | None = None
    watcher: FolderWatcher | None = None
    relay: RedisRelay | None = None
    signals = (
        RedisSignals(settings.redis_url, prefix=settings.redis_prefix + "signal:")
        if settings.redis_url and not store.announces
        else None
    )
    notices = Notices(settings.log_notice_limit, settings.log_notice_window_s)
    waker = GroupWaker()
    summaries = asyncio.create_task(notices.flush_every(1.0), name="tidings-log-summaries")
    try:
        if "worker" in roles:
            processes = settings.sender_processes
            if processes is None:
                processes = auto_sender_processes(os.cpu_count())
            transports = build_transports(
                TransportOptions(
                    allow_private=settings.allow_private_targets,
                    allow_loopback=settings.allow_loopback_targets,
                    sender_processes=processes,
                    sender_nice=settings.sender_nice,
                    bus_allowed=settings.bus_prefixes,
                )
            )
            await transports.start()
            options = EngineOptions(
                owner=_worker_id(),
                pause_after_failures=settings.pause_after_failures,
                lease_margin_ms=settings.lease_margin_ms,
                poll_interval_s=settings.poll_interval_ms / 1000,
                drain_timeout_s=settings.drain_timeout_ms / 1000,
            )
            dispatcher = Dispatcher(
                store,
                transports,
                options,
                Alerter(transports.alerts),
                limiter=make_limiter(settings.redis_url, settings.redis_prefix),
                notices=notices,
            )
            await dispatcher.start()
            if signals is not None:
                signals.subscribe(
                    _both(dispatcher.wake, waker.wake), dispatcher.destinations_changed
                )
            sweeper = Sweeper(
                store,
                settings.retention_ttl_s,
                inbox_ttl_s=settings.inbox_ttl_s,
                inbox_acked_ttl_s=settings.inbox_acked_ttl_s,
            )
            sweeper.start()
            if probe_sock is not None:
                runner, port = await serve_on(create_probe_app(store), probe_sock)
                log.info("metrics on http://%s:%d/metrics", settings.host, port)
            log.info(
                "delivery worker started",
                extra={"worker": options.owner, "sender_pids": transports.pids()},
            )
        if api_sock is not None:
            digests = await settle_api_key(settings, store)
            links = _EngineLinks(dispatcher, signals)
            hub = Hub()
            if settings.redis_url:
                relay = RedisRelay(
                    settings.redis_url,
                    hub,
                    presence_ttl_s=settings.ws_presence_ttl_s,
                    prefix=settings.redis_prefix,
                )
                relay.install()
            if signals is not None and dispatcher is None:
                # Other nodes' new work wakes this node's long polls of pull groups.
                signals.subscribe(waker.wake, waker.wake)
            app = create_app(settings, store, digests, links, notices, hub, waker)
            runner, port = await serve_on(app, api_sock)
            log.info(
                "listening on http://%s:%d",
                settings.host,
                port,
                extra={"port": port, "database_url": settings.database_url},
            )
            if settings.watch_dir:
                watcher = FolderWatcher(
                    store,
                    Path(settings.watch_dir),
                    settings.watch_topic,
                    settings.watch_interval_ms / 1000,
                    links.wake,
                    max_payload_bytes=settings.max_payload_bytes,
                    message=settings.watch_message,
                    live=partial(push_live, app),
                )
                await watcher.start()
        tune_gc()
        await stop.wait()
        log.info("shutting down")
    finally:
        if watcher is not None:
            await watcher.stop()
        if runner is not None:
            await runner.cleanup()
        if relay is not None:
            await relay.close()
        if sweeper is not None:
            await sweeper.stop()
        if dispatcher is not None:
            await dispatcher.stop()
        if transports is not None:
            await transports.close()
        if signals is not None:
            await signals.close()
        summaries.cancel()
        await asyncio.wait([summaries])
        notices.flush(everything=True)  # what was held back since the last summary
        await store.close()


def run_forever(settings: Settings, *, roles: frozenset[str]) -> None:
    try:
        run_loop(run(settings, roles=roles))
    except StartupError as exc:
        print(f"tidings: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
