"""Retention: delete events whose deliveries are all delivered once they are old enough.

Runs in every worker (deletes are idempotent). An event is deleted when it was received
more than `ttl_s` ago and none of its deliveries is pending, in flight, scheduled or
dead: dead deliveries keep their event until they are replayed and delivered, or purged.
With `ttl_s = 0` events go within about a second of their last delivery. An event named
by a user's inbox message stays while the message does (issue 15): inbox messages go
`inbox_acked_ttl_s` after their ack, or `inbox_ttl_s` after they were received, acked or
not; each sweep deletes those first. Owns no SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tidings.metrics import INBOX_SWEPT
from tidings.store.base import Store, StoreError
from tidings.timeutil import US, now_us

log = logging.getLogger(__name__)
CHUNK = 1000  # events deleted per transaction, so a sweep never stalls ingest for long
MAX_CHUNKS = 100  # per sweep; the next sweep goes on


def sweep_interval_s(ttl_s: int) -> float:
    return min(60.0, max(1.0, ttl_s / 10))


class Sweeper:
    def __init__(
        self,
        store: Store,
        ttl_s: int,
        *,
        inbox_ttl_s: int = 30 * 86_400,
        inbox_acked_ttl_s: int = 86_400,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.inbox_ttl_s = inbox_ttl_s
        self.inbox_acked_ttl_s = inbox_acked_ttl_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="tidings-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sweep_inbox_once(self) -> int:
        now = now_us()
        acked_before = now - self.inbox_acked_ttl_s * US
        received_before = now - self.inbox_ttl_s * US
        total = 0
        for _ in range(MAX_CHUNKS):
            deleted = await self.store.sweep_inbox(acked_before, received_before, CHUNK)
            total += deleted
            if deleted < CHUNK:
                break
        if total:
            INBOX_SWEPT.inc(total)
        return total

    async def sweep_once(self) -> int:
        await self.sweep_inbox_once()
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
