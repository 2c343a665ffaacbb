"""Cross-process wake-ups over Redis pub/sub: "new work" and "destinations changed".

With `TIDINGS_REDIS_URL`, an API process announces new deliveries and destination changes
on two channels, and every worker subscribed wakes at once instead of at its next poll.
That is for SQLite, which has no LISTEN/NOTIFY: on PostgreSQL the store's NOTIFY does the
same job and these wake-ups are not used (`Store.announces`), as each would only repeat
one (a claim round more per ingest, 9% of a worker's loop). `tidings.realtime.relay`
carries inbox messages the same way. Redis is an accelerator only: a lost message costs
at most one poll interval, publishing never blocks or fails a request, and the
subscriber reconnects by itself. Owns no state of record and must never be relied on
for correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
WORK = "work"
DESTINATIONS = "destinations"
TIMEOUT_S = 0.5
RECONNECT_MAX_S = 5.0


async def close_quietly(pubsub: PubSub) -> None:
    """Close a subscription whose connection may be gone already."""
    # redis < 5.0.2 left aclose untyped and later ones type it; naming the type here
    # checks on both without an ignore that one of them flags.
    closer: Callable[[], Awaitable[object]] = pubsub.aclose
    with contextlib.suppress(Exception):
        await closer()


class RedisSignals:
    def __init__(self, url: str, *, prefix: str = "tidings:signal:") -> None:
        self._client = aioredis.Redis.from_url(
            url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S
        )
        self._prefix = prefix
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._failing = False

    # -------------------------------------------------------------- publishing
    def work(self) -> None:
        """Announce new due deliveries (fire and forget)."""
        self._publish(WORK)

    def destinations(self) -> None:
        self._publish(DESTINATIONS)

    def _publish(self, kind: str) -> None:
        task = asyncio.create_task(self._send(kind))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, kind: str) -> None:
        try:
            await self._client.publish(self._prefix + kind, b"")
        except (RedisError, OSError) as exc:
            if not self._failing:
                log.warning("Redis signals unavailable (%s); workers fall back to polling", exc)
            self._failing = True
        else:
            self._failing = False

    # -------------------------------------------------------------- subscribing
    def subscribe(self, on_work: Callable[[], None], on_destinations: Callable[[], None]) -> None:
        self._listener = asyncio.create_task(self._listen(on_work, on_destinations))

    async def _listen(
        self, on_work: Callable[[], None], on_destinations: Callable[[], None]
    ) -> None:
        delay = 0.2
        handlers = {
            (self._prefix + WORK).encode(): on_work,
            (self._prefix + DESTINATIONS).encode(): on_destinations,
        }
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(*handlers)
                delay = 0.2
                # Anything announced before we listened (at start, the worker's first
                # moments; later, while Redis was away) was missed: act as if it came.
                on_destinations()
                on_work()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10.0)
                    if message is not None and message["channel"] in handlers:
                        handlers[message["channel"]]()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.debug("Redis signal subscription lost (%s); reconnecting", exc)
            finally:
                await close_quietly(pubsub)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()
