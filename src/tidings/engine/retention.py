"""Retention: delete events whose deliveries are all delivered once they are old enough.

Runs in every worker (deletes are idempotent). An event is deleted when it was received
more than `ttl_s` ago and none of its deliveries is pending, in flight, scheduled or
dead: dead deliveries keep their event until they are replayed and delivered, or purged.
With `ttl_s = 0` events go within about a second of their last delivery. Owns no SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tidings.store.base import Store, StoreError
from tidings.timeutil import US, now_us

log = logging.getLogger(__name__)
CHUNK = 1000  # events deleted per transaction, so a sweep never stalls ingest for long
MAX_CHUNKS = 100  # per sweep; the next sweep goes on


def sweep_interval_s(ttl_s: int) -> float:
    return min(60.0, max(1.0, ttl_s / 10))


class Sweeper:
    def __init__(self, store: Store, ttl_s: int) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="tidings-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sweep_once(self) -> int:
        cutoff = now_us() - self.ttl_s * US
        total = 0
        for _ in range(MAX_CHUNKS):
            deleted = await self.store.sweep(cutoff, CHUNK)
            total += deleted
            if deleted < CHUNK:
                break
        return total

    async def _loop(self) -> None:
        interval = sweep_interval_s(self.ttl_s)
        while True:
            try:
                deleted = await self.sweep_once()
                if deleted:
                    log.info("retention deleted %d delivered events", deleted, extra={"n": deleted})
            except StoreError as exc:
                log.warning("retention sweep failed: %s", exc)
            await asyncio.sleep(interval)
