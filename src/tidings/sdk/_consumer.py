"""`Consumer`: handlers of a pull group's events in the user's own process.

Owns the consuming loop: leasing in batches with long polls (up to `concurrency` +
`batch` leases held), running each event's handler (async on the loop, sync in a
thread of its own pool), extending the leases of handlers that run long, acking on
return (acks sent in batches), nacking with the traceback's last line on exception
(the group's backoff applies), and stopping gracefully on SIGTERM/SIGINT. Which handler
takes an event and what a failure's text is are tidings.policy.consuming's. Must never
block the event loop, and never import the server (`import tidings` stays light).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tidings.policy.consuming import Cause, Routes, due_for_extension, error_text
from tidings.sdk._async_client import AsyncClient
from tidings.sdk._context import CAUSE, CURRENT, stamps
from tidings.sdk._errors import TidingsError
from tidings.sdk._models import Lease, LeasedEvent, Published
from tidings.sdk._sync_client import Client

log = logging.getLogger("tidings.consumer")
Handler = Callable[[LeasedEvent], Any]
F = TypeVar("F", bound=Handler)
MAX_IDS = 1000  # the API's most ids per ack/nack/extend
DEFAULT_WAIT_MS = 20_000
FAILURE_PAUSE_S = 1.0  # after a lease call fails (server down): before the next try


@dataclass
class _Held:
    lease: Lease
    renewed_at: float  # monotonic time of the lease or the last extension
    lost: bool = False


@dataclass
class _Stats:
    handled: int = 0
    acked: int = 0
    nacked: int = 0
    lost: int = 0
    unhandled: int = 0
    errors: list[str] = field(default_factory=list)


class Consumer:
    """Handlers for the events of pull group `group`.

    `url` and `api_key` default to TIDINGS_URL and TIDINGS_API_KEY. `concurrency`
    handlers run at once; `batch` is the most leases asked for per call (default
    `concurrency`); `lease_ms` defaults to the group's; `wait_ms` is the long poll's
    wait. Register handlers with `@consumer.handler("order.*")`, then `consumer.run()`
    (blocking, stops on SIGTERM/SIGINT) or `await consumer.serve()`.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        group: str,
        concurrency: int = 10,
        batch: int | None = None,
        lease_ms: int | None = None,
        wait_ms: int = DEFAULT_WAIT_MS,
        stop_timeout_s: float = 30.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if batch is not None and not 1 <= batch <= MAX_IDS:
            raise ValueError(f"batch must be 1 to {MAX_IDS}")
        if not 0 <= wait_ms <= 30_000:
            raise ValueError("wait_ms must be 0 to 30000")
        self.url = url
        self.api_key = api_key
        self.group = group
        self.concurrency = concurrency
        self.batch = batch or min(concurrency, MAX_IDS)
        self.lease_ms = lease_ms
        self.wait_ms = wait_ms
        self.stop_timeout_s = stop_timeout_s
        self.stats = _Stats()
        self._routes: Routes[Handler] = Routes()
        self._is_async: dict[Handler, bool] = {}
        self._client: AsyncClient | None = None
        self._sync_client: Client | None = None
        self._sync_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._held: dict[str, _Held] = {}
        self._acks: list[str] = []
        self._acks_waiting: asyncio.Event | None = None
        self._room = asyncio.Event()  # set when a held lease is done: the leaser looks again

    # Registration

    def handler(self, *patterns: str) -> Callable[[F], F]:
        """Register a function (sync: run in a thread; or async) for the events whose
        topic matches one of `patterns` (`order.created`, `order.*`, `*`). An event goes
        to the first handler registered that matches; one that none matches is acked."""
        if not patterns:
            raise ValueError("handler() needs at least one topic pattern")

        def register(fn: F) -> F:
            self._is_async[fn] = inspect.iscoroutinefunction(fn)
            for pattern in patterns:
                self._routes.add(pattern, fn)
            return fn

        return register

    # Inside handlers

    @property
    def client(self) -> AsyncClient:
        """The consumer's `AsyncClient` (while it runs): its `publish` inside a handler
        stamps the handled event as the cause."""
        if self._client is None:
            raise RuntimeError("the consumer is not running")
        return self._client

    @property
    def current(self) -> Lease | None:
        """The lease being handled in this handler (attempt, delivery id), else None."""
        lease: Lease | None = CURRENT.get()
        return lease

    async def apublish(self, topic: str, payload: Any = None, **kw: Any) -> Published:
        """`AsyncClient.publish` from an async handler: `causation_id` and
        `correlation_id` default to the handled event's."""
        kw["causation_id"], kw["correlation_id"] = stamps(
            kw.get("causation_id"), kw.get("correlation_id")
        )
        return await self.client.publish(topic, payload, **kw)

    def publish(self, topic: str, payload: Any = None, **kw: Any) -> Published:
        """`Client.publish` from a sync handler (or any thread but the consumer's
        loop): `causation_id` and `correlation_id` default to the handled event's. In an
        async handler, `await consumer.apublish(...)`."""
        if self._loop is not None and _running_loop() is self._loop:
            raise RuntimeError("publish() blocks: in an async handler, await apublish()")
        kw["causation_id"], kw["correlation_id"] = stamps(
            kw.get("causation_id"), kw.get("correlation_id")
        )
        with self._sync_lock:
            if self._sync_client is None:
                self._sync_client = Client(self.url, api_key=self.api_key)
        return self._sync_client.publish(topic, payload, **kw)

    # Running

    def run(self) -> None:
        """Consume until SIGTERM or SIGINT (then stop gracefully); blocks."""
        asyncio.run(self.serve(signals=True))

    def stop(self) -> None:
        """Stop leasing, finish (or nack) what is held, then `serve` returns. Safe
        from any thread."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            loop.call_soon_threadsafe(stopping.set)

    async def serve(self, *, signals: bool = False) -> None:
        """Consume until `stop()` (or SIGTERM/SIGINT when `signals`)."""
        if not self._routes.patterns:
            raise RuntimeError("no handler registered: use @consumer.handler(...)")
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._acks_waiting = asyncio.Event()
        self._held = {}
        self._acks = []
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._on_signal)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="tidings-handler")
        async with AsyncClient(self.url, api_key=self.api_key) as client:
            self._client = client
            try:
                await self._consume(client, pool)
            finally:
                self._client = None
                pool.shutdown(wait=False, cancel_futures=True)
                if signals:
                    for sig in (signal.SIGTERM, signal.SIGINT):
                        self._loop.remove_signal_handler(sig)
                with self._sync_lock:
                    if self._sync_client is not None:
                        self._sync_client.close()
                        self._sync_client = None

    def _on_signal(self) -> None:
        assert self._stopping is not None
        if self._stopping.is_set():  # a second signal: do not wait for handlers
            self.stop_timeout_s = 0
        log.info("stopping: finishing the events held")
        self._stopping.set()

    async def _consume(self, client: AsyncClient, pool: ThreadPoolExecutor) -> None:
        assert self._stopping is not None
        if self.lease_ms is None:
            group = await client.get_destination(self.group)
            if group.kind != "group" or group.lease_ms is None:
                raise TidingsError(
                    "not_a_group", f"destination {self.group!r} is a {group.kind}, not a group"
                )
            self.lease_ms = group.lease_ms
        # `concurrency` workers take the leased events from a queue, one after the
        # other (no task per event); up to `batch` more leases wait there, so a worker
        # that is done never waits for the next lease call.
        queue: asyncio.Queue[Lease | None] = asyncio.Queue()
        self._room = asyncio.Event()
        workers = [
            asyncio.create_task(self._work(client, pool, queue)) for _ in range(self.concurrency)
        ]
        acker = asyncio.create_task(self._ack_loop(client))
        extender = asyncio.create_task(self._extend_loop(client))
        leaser = asyncio.create_task(self._lease_loop(client, queue))
        await self._stopping.wait()
        leaser.cancel()
        await asyncio.gather(leaser, return_exceptions=True)
        for _ in workers:  # wakes the idle ones; a busy one stops after its handler
            queue.put_nowait(None)
        _, late = await asyncio.wait(workers, timeout=self.stop_timeout_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        left = [h.lease.lease_id for h in self._held.values() if not h.lost]
        if left:  # not started, or still running past the timeout: others take them
            await self._nack(client, left, "consumer stopped before the handler returned", 0)
        extender.cancel()
        acker.cancel()
        await asyncio.gather(extender, acker, return_exceptions=True)
        await self._flush_acks(client)

    async def _lease_loop(self, client: AsyncClient, queue: asyncio.Queue[Lease | None]) -> None:
        most = self.concurrency + self.batch
        while True:
            # Lease a whole batch when there is room for one, or whatever fits when the
            # workers have nothing left to do.
            while True:
                free = most - len(self._held)
                if free >= self.batch or (free > 0 and queue.empty()):
                    break
                self._room.clear()
                await self._room.wait()
            try:
                leased = await client.lease(
                    self.group,
                    max=min(free, self.batch),
                    lease_ms=self.lease_ms,
                    wait_ms=self.wait_ms,
                )
            except TidingsError as exc:
                log.warning("lease failed (%s); trying again", exc)
                await asyncio.sleep(FAILURE_PAUSE_S)
                continue
            now = time.monotonic()
            for lease in leased.items:
                self._held[lease.lease_id] = _Held(lease, now)
                queue.put_nowait(lease)

    async def _work(
        self, client: AsyncClient, pool: ThreadPoolExecutor, queue: asyncio.Queue[Lease | None]
    ) -> None:
        assert self._stopping is not None
        while True:
            lease = await queue.get()
            if lease is None or self._stopping.is_set():
                return  # not started before the stop: nacked at once, for others
            try:
                await self._handle(client, pool, lease)
            finally:
                self._room.set()

    async def _handle(self, client: AsyncClient, pool: ThreadPoolExecutor, lease: Lease) -> None:
        fn = self._routes.find(lease.event.topic)
        if fn is None:
            self.stats.unhandled += 1
            self._ack(lease.lease_id)
            return
        try:
            await self._call(fn, lease, pool)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            text = error_text(exc)
            self.stats.errors.append(text)
            del self.stats.errors[:-100]
            log.warning(
                "handler of %s (%s, attempt %d) failed: %s",
                lease.event.id,
                lease.event.topic,
                lease.attempt,
                text,
            )
            self._held.pop(lease.lease_id, None)
            await self._nack(client, [lease.lease_id], text, None)
            return
        self.stats.handled += 1
        self._ack(lease.lease_id)

    async def _call(self, fn: Handler, lease: Lease, pool: ThreadPoolExecutor) -> None:
        # The handled event as a context variable: publish inside the handler (any
        # client) stamps it as the cause. Sync handlers get a copy of the context.
        CURRENT.set(lease)
        CAUSE.set(Cause(lease.event.id, lease.event.correlation_id))
        if self._is_async[fn]:
            await fn(lease.event)
            return
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        result = await loop.run_in_executor(pool, ctx.run, fn, lease.event)
        if inspect.isawaitable(result):  # a sync callable that answered a coroutine
            await result

    def _ack(self, lease_id: str) -> None:
        held = self._held.pop(lease_id, None)
        if held is not None and held.lost:
            return
        self._acks.append(lease_id)
        assert self._acks_waiting is not None
        self._acks_waiting.set()

    async def _ack_loop(self, client: AsyncClient) -> None:
        # Whatever acks are waiting go in one call, whenever no ack call is in flight:
        # batches grow with the load, and a lone ack goes at once (a fifo lane waits on it).
        assert self._acks_waiting is not None
        while True:
            await self._acks_waiting.wait()
            self._acks_waiting.clear()
            await self._flush_acks(client)

    async def _flush_acks(self, client: AsyncClient) -> None:
        while self._acks:
            ids, self._acks = self._acks[:MAX_IDS], self._acks[MAX_IDS:]
            try:
                done = await client.ack(self.group, ids)
            except TidingsError as exc:
                # Not acked: the leases expire and the events come again (at least once).
                log.warning("ack of %d events failed (%s); they will come again", len(ids), exc)
                continue
            self.stats.acked += len(done.ok)
            self.stats.lost += len(done.lost)

    async def _nack(
        self, client: AsyncClient, ids: Sequence[str], error: str, delay_ms: int | None
    ) -> None:
        for start in range(0, len(ids), MAX_IDS):
            chunk = list(ids[start : start + MAX_IDS])
            try:
                done = await client.nack(self.group, chunk, error=error, delay_ms=delay_ms)
            except TidingsError as exc:
                log.warning("nack failed (%s); the leases will expire instead", exc)
                continue
            self.stats.nacked += len(done.ok)
            self.stats.lost += len(done.lost)

    async def _extend_loop(self, client: AsyncClient) -> None:
        assert self.lease_ms is not None
        lease_s = self.lease_ms / 1000
        while True:
            await asyncio.sleep(lease_s / 6)
            now = time.monotonic()
            due = due_for_extension(
                ((i, h.renewed_at) for i, h in self._held.items() if not h.lost), now, lease_s
            )
            for start in range(0, len(due), MAX_IDS):
                chunk = due[start : start + MAX_IDS]
                try:
                    done = await client.extend(self.group, chunk, lease_ms=self.lease_ms)
                except TidingsError as exc:
                    log.warning("extending %d leases failed (%s)", len(chunk), exc)
                    continue
                for lease_id in done.ok:
                    if (held := self._held.get(lease_id)) is not None:
                        held.renewed_at = now
                for lease_id in done.lost:
                    if (held := self._held.get(lease_id)) is not None:
                        held.lost = True  # its event may be handled elsewhere too
                        log.warning("lease of %s was lost", held.lease.event.id)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def load(target: str) -> Consumer:
    """The `Consumer` named by `MODULE:ATTRIBUTE` (`tidings consume`)."""
    import importlib

    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{target!r} is not MODULE:ATTRIBUTE (like app.consumers:consumer)")
    module = importlib.import_module(module_name)
    found = getattr(module, attribute, None)
    if not isinstance(found, Consumer):
        raise ValueError(f"{target} is not a tidings.Consumer (found {type(found).__name__})")
    return found
