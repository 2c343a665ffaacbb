"""Pull groups' background work: waking long polls, and taking back expired leases.

`GroupWaker` is the in-process notifier a long poll (`POST /v1/groups/{name}/lease`)
waits on: ingest, retries, replays and acks that free a lane wake it here; other nodes'
work reaches it through the same wake-ups the engine gets (Redis "work", PostgreSQL
LISTEN). It is an accelerator: a long poll also polls, at most every `FALLBACK_S`.

`GroupReaper` runs beside the API (roles `serve` and `api`): once a second it turns the
expired leases of every group into failed attempts (outcome `lost`), retried on the
group's backoff and dead after `max_attempts`, exactly as a nack would. Owns no SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from tidings.metrics import ATTEMPTS, DELIVERIES, child
from tidings.model import Destination, GroupSpec
from tidings.policy.outcome import FailurePlan
from tidings.store.base import Store, StoreError
from tidings.timeutil import now_us

log = logging.getLogger(__name__)
REAP_EVERY_S = 1.0
REAP_BATCH = 500
FALLBACK_S = 1.0  # a long poll looks again this often without a wake-up (never < 0.25)


class GroupWaker:
    """Every waiter of the moment wakes at the next `wake()`; `generation` counts this
    process's changes of destinations (what a cache of groups checks against)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.generation = 0
        self.closing = False  # the server is stopping: long polls answer now

    def close(self) -> None:
        self.closing = True
        self.wake()

    def destinations_changed(self) -> None:
        self.generation += 1
        self.wake()

    def wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    def waiter(self) -> asyncio.Event:
        """The event the next `wake()` sets: take it before looking for work, so a wake
        between the look and the wait is not missed."""
        return self._event


def failure_plan(spec: GroupSpec, rng: random.Random | None = None) -> FailurePlan:
    return FailurePlan(retry=spec.retry, on_dead=spec.on_dead, rng=rng)


class GroupReaper:
    def __init__(self, store: Store, waker: GroupWaker, every_s: float = REAP_EVERY_S) -> None:
        self.store = store
        self.waker = waker
        self.every_s = every_s
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tidings-group-reaper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.reap()
            except StoreError as exc:
                log.warning("taking back expired group leases failed: %s", exc)
            except Exception:
                log.exception("group reaper error")
            await asyncio.sleep(self.every_s)

    async def reap(self) -> int:
        """Expire every group's lapsed leases now; answer how many."""
        total = 0
        for d in await self.store.all_destinations():
            if isinstance(d.spec, GroupSpec):
                total += await self.reap_group(d)
        if total:
            self.waker.wake()
        return total

    async def reap_group(self, d: Destination) -> int:
        assert isinstance(d.spec, GroupSpec)
        plan = failure_plan(d.spec, self._rng)
        total = 0
        while True:
            done = await self.store.expire_leases(d.id, plan, now_us(), REAP_BATCH)
            total += len(done.ok)
            if done.ok:
                child(ATTEMPTS, d.id, "lost").inc(len(done.ok))
            if done.dead:
                child(DELIVERIES, d.id, "dead").inc(len(done.dead))
            for delivery_id in done.dead:
                log.warning(
                    "delivery %s of group %s is dead: its lease expired on its last attempt",
                    delivery_id,
                    d.spec.name,
                )
            if len(done.ok) < REAP_BATCH:
                return total
