"""Retention: delete events whose deliveries are all delivered once they are old enough.

Runs in every worker (deletes are idempotent). An event is deleted when it was received
more than `ttl_s` ago and none of its deliveries is pending, in flight, scheduled or
dead: dead deliveries keep their event until they are replayed and delivered, or purged.
With `ttl_s = 0` events go within about a second of their last delivery. An event named
by a user's inbox message stays while the message does (issue 15): inbox messages go
`inbox_acked_ttl_s` after their ack, or `inbox_ttl_s` after they were received, acked or
not; each sweep deletes those first. Owns no SQL.

A pass walks the events in seq order in chunks of CHUNK, each chunk starting after the
last one looked at, so the events it keeps (a destination's backlog, dead letters) are
read once per pass, not once per chunk. A pass is at most MAX_CHUNKS chunks; one cut off
there is behind: the next pass starts at once where it stopped, instead of after the
interval, so deletes keep up with any ingest rate the store can write. A pass that
reached the cutoff ends the walk; the next one starts again from the oldest event
(kept events may have been delivered since).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from tidings.metrics import (
    INBOX_SWEPT,
    RETENTION_BEHIND,
    RETENTION_DELETED,
    RETENTION_KEPT,
    RETENTION_PASS_SECONDS,
)
from tidings.store.base import Store, StoreError
from tidings.timeutil import US, now_us

log = logging.getLogger(__name__)
CHUNK = 1000  # events looked at per transaction, so a sweep never stalls ingest for long
MAX_CHUNKS = 100  # per pass; a pass cut off here is behind, and the next goes on at once


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
        self._after = 0  # where the next pass starts: 0, or where a pass cut off stopped
        self.behind = False  # the last pass was cut off with more to look at

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
        """One pass: the inbox, then up to MAX_CHUNKS chunks of events; answer how many
        events it deleted."""
        started = time.monotonic()
        await self.sweep_inbox_once()
        cutoff = now_us() - self.ttl_s * US
        total = kept = 0
        after = self._after
        behind = True
        done = False  # the walk reached the cutoff: the next one starts from the oldest
        try:
            for _ in range(MAX_CHUNKS):
                swept = await self.store.sweep(cutoff, CHUNK, after)
                total += swept.deleted
                kept += swept.kept
                if swept.upto is None:
                    behind, done = False, True
                    break
                after = swept.upto
        except BaseException:
            behind = False  # failed: the loop waits its interval, then goes on from `after`
            raise
        finally:
            self._after = 0 if done else after
            self.behind = behind
            RETENTION_BEHIND.set(1 if behind else 0)
            RETENTION_DELETED.inc(total)
            RETENTION_KEPT.inc(kept)
            RETENTION_PASS_SECONDS.observe(time.monotonic() - started)
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
                self.behind = False  # wait the interval before trying again
            except Exception:  # a driver error not mapped to StoreError, a deadlock: go on
                log.exception("retention sweep failed")
                self.behind = False
            # Behind: go on at once (a yield, so the loop's other tasks run between passes).
            await asyncio.sleep(0 if self.behind else interval)
