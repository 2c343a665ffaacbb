"""The delivery engine of one process: claim due lane heads, send them, record outcomes.

Three loops share one event loop:
- the claim loop asks the store for due lane heads, per destination, as many as that
  destination has room for: `max_in_flight` requests at once, plus as many again claimed
  ahead (a destination without a rate limit), so that a request that ends is followed at
  once by the next instead of waiting for a claim to commit. Each destination has its own
  budget, so a slow or failing one never holds up another; within a fifo destination only
  lane heads are claimable (the store's lane rule), so a lane never has two deliveries in
  flight. A delivery claimed ahead waits at most one timeout for a free slot, so its lease
  is twice the timeout plus the margin.
- the flush loop writes finished attempts in batches (one commit for all that finished
  while the previous write ran), then wakes the claim loop: a write may have promoted the
  next delivery of a lane.
- the maintenance loop refreshes destinations (other processes may change them) and
  takes back deliveries whose lease expired (their worker died) through the same retry
  policy as any failed attempt.

The loop sleeps until the earliest due time, a wake-up (new events, finished writes) or
the poll interval, never spinning. It owns no SQL and no wire protocol: the store and the
transports do that (one per destination kind, looked up by kind: `transports.base`; a
kind without a transport here is not claimed, nor are its leases taken back: a pull
group's deliveries are leased by its consumers through `api.groups`). Policy decisions are
`policy.outcome.decide`. What the operator must see (a dead letter, a pause) goes to
`Notices` once the store has written it; a pause (a run of failures, or a target gone)
is written by the same commit as the attempt that caused it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tidings.engine.alerts import Alerter
from tidings.engine.limits import LocalLimiter, RateLimiter
from tidings.metrics import ATTEMPT_LATENCY, ATTEMPTS, DELIVERIES, DESTINATION_PAUSED, child
from tidings.model import (
    AttemptResult,
    Claim,
    ClaimAsk,
    Completed,
    Completion,
    Destination,
    LostLease,
)
from tidings.notices import Notices
from tidings.policy.outcome import Transition, decide
from tidings.store.base import Store, StoreError
from tidings.timeutil import now_us
from tidings.transports.base import Transport

log = logging.getLogger(__name__)
CLAIM_BATCH = 100  # most deliveries one destination claims per round
LOST_BATCH = 500
STORE_RETRY_S = 0.5  # pause after the store failed, before trying again


@dataclass(frozen=True)
class EngineOptions:
    owner: str  # this worker's lease owner id
    pause_after_failures: int = 100  # 0: never pause
    lease_margin_ms: int = 5_000  # lease = destination timeout + margin
    poll_interval_s: float = 1.0
    refresh_interval_s: float = 1.0
    drain_timeout_s: float = 10.0  # on stop, how long in-flight deliveries may finish


@dataclass
class _Destination:
    """A destination as the engine sees it, with its live budget."""

    current: Destination
    transport: Transport | None  # of its kind; None: this process cannot send to it
    in_flight: int = 0  # requests under way
    ready: deque[Claim] = field(default_factory=deque)  # claimed ahead, waiting for a slot

    def update(self, d: Destination, transport: Transport | None) -> None:
        self.current = d
        self.transport = transport

    @property
    def ahead(self) -> int:
        """How many deliveries may wait claimed for a free slot: none for a rate-limited
        destination (tokens are taken at claim time, and sends held back would bunch).
        Those claimed when the destination is paused are still sent, like those already
        in flight: a pause stops claims, not sends already decided."""
        spec = self.current.spec
        return 0 if spec.rate_limit_per_s is not None else spec.max_in_flight

    @property
    def capacity(self) -> int:
        """The most deliveries this worker may hold for it: in flight plus claimed ahead."""
        return self.current.spec.max_in_flight + self.ahead

    @property
    def room(self) -> int:
        """How many more deliveries this worker may claim for it now."""
        return self.capacity - self.in_flight - len(self.ready)

    @property
    def low(self) -> bool:
        """A claim round is worth it: a quarter of what it may hold is free."""
        return self.room * 4 >= self.capacity


@dataclass
class Dispatcher:
    store: Store
    transports: Mapping[str, Transport]  # by destination kind
    options: EngineOptions
    alerter: Alerter | None = None
    limiter: RateLimiter = field(default_factory=LocalLimiter)
    rng: random.Random = field(default_factory=random.Random)
    notices: Notices = field(default_factory=Notices)
    on_flush: Callable[[], None] | None = None  # tests: observe writes

    def __post_init__(self) -> None:
        self._dests: dict[str, _Destination] = {}
        self._wake = asyncio.Event()
        self._flush_wake = asyncio.Event()
        self._completions: list[Completion] = []
        self._running: set[asyncio.Task[None]] = set()
        # Claimed by this worker and not yet written back: in flight, or finished with its
        # outcome still waiting for the flush (e.g. while the database is away). Lease
        # recovery must never take these for lost.
        self._unwritten: set[str] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self._refreshed_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        # Kept: asyncio.create_task looks the loop up, a getpid() system call each time.
        self._loop = asyncio.get_running_loop()
        await self._refresh()
        await self.store.listen(self.wake, self.destinations_changed)
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="tidings-claim"),
            asyncio.create_task(self._flush_loop(), name="tidings-flush"),
            asyncio.create_task(self._maintenance_loop(), name="tidings-maintenance"),
        ]

    async def stop(self) -> None:
        """Stop claiming; let in-flight deliveries finish for up to `drain_timeout_s`, then
        give back the rest (scheduled again at once); write every outcome; return."""
        self._stopping = True
        self._wake.set()
        self._give_back_ready()
        flush = self._loops[1] if len(self._loops) > 1 else None
        for task in self._loops:
            if task is not flush:
                task.cancel()
        if self._running:
            await asyncio.wait(set(self._running), timeout=self.options.drain_timeout_s)
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        self._flush_wake.set()
        if flush is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(flush), timeout=5)
            flush.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self.alerter is not None:
            await self.alerter.close()
        await self.limiter.close()

    def wake(self) -> None:
        """New deliveries may be due (called by ingest in the same process)."""
        self._wake.set()

    def destinations_changed(self) -> None:
        self._refreshed_at = 0.0
        self._wake.set()

    # ------------------------------------------------------------------ destinations
    async def _refresh(self) -> None:
        found = await self.store.all_destinations()
        seen = set()
        for d in found:
            seen.add(d.id)
            transport = self.transports.get(d.spec.kind)
            entry = self._dests.get(d.id)
            if entry is None:
                entry = self._dests[d.id] = _Destination(current=d, transport=transport)
            entry.update(d, transport)
        for gone in set(self._dests) - seen:
            if self._dests[gone].in_flight == 0 and not self._dests[gone].ready:
                del self._dests[gone]
        self._refreshed_at = time.monotonic()

    def _lease_us(self, d: Destination, queued: bool) -> int:
        waits = d.spec.timeout_ms if queued else 0  # for a slot: one request's timeout
        return (d.spec.timeout_ms + waits + self.options.lease_margin_ms) * 1000

    # ------------------------------------------------------------------ claiming
    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            wait = self.options.poll_interval_s
            try:
                if time.monotonic() - self._refreshed_at >= self.options.refresh_interval_s:
                    await self._refresh()
                due_in = await self._claim_round()
            except StoreError as exc:
                log.warning("claiming failed, retrying: %s", exc)
                await asyncio.sleep(STORE_RETRY_S)
                continue
            except Exception:
                log.exception("claim loop error")
                await asyncio.sleep(STORE_RETRY_S)
                continue
            if due_in is not None:
                wait = min(wait, max(due_in, 0.0005))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _claim_round(self) -> float | None:
        """Claim what is due and start it; answer seconds until something may be due."""
        wanted: dict[str, int] = {}
        for dest_id, entry in self._dests.items():
            d = entry.current
            if not d.deliverable or entry.transport is None:
                continue
            limit = min(entry.room, CLAIM_BATCH)
            if limit > 0:
                wanted[dest_id] = limit
        soonest, tokens = await self._take_tokens(wanted)
        asks = []
        for dest_id, limit in wanted.items():
            n = tokens.get(dest_id, limit)
            if n > 0:
                entry = self._dests[dest_id]
                free = entry.current.spec.max_in_flight - entry.in_flight
                queued = n > free
                lease = self._lease_us(entry.current, queued)
                asks.append(ClaimAsk(destination_id=dest_id, limit=n, lease_us=lease))
        if not asks:
            return soonest
        now = now_us()
        got: dict[str, int] = {}
        try:
            batch = await self.store.claim(self.options.owner, asks, now)
            for claim in batch.claims:
                got[claim.destination_id] = got.get(claim.destination_id, 0) + 1
                self._unwritten.add(claim.delivery_id)
                self._dests[claim.destination_id].ready.append(claim)
            for dest_id in got:
                self._pump(self._dests[dest_id])
        finally:
            await self._return_tokens(tokens, got)
        if batch.next_due is not None:
            due = (batch.next_due - now_us()) / 1e6
            soonest = due if soonest is None else min(soonest, due)
        return soonest

    async def _take_tokens(self, wanted: dict[str, int]) -> tuple[float | None, dict[str, int]]:
        """Rate-limit tokens for the rate-limited destinations among `wanted` (at most what
        each wants), and the soonest time one that got none may have one."""
        limited = [
            (dest_id, rate, n)
            for dest_id, n in wanted.items()
            if (rate := self._dests[dest_id].current.spec.rate_limit_per_s) is not None
        ]
        if not limited:
            return None, {}
        grants = await asyncio.gather(
            *(self.limiter.acquire(dest_id, rate, n) for dest_id, rate, n in limited)
        )
        soonest: float | None = None
        tokens: dict[str, int] = {}
        for (dest_id, _, _), grant in zip(limited, grants, strict=True):
            tokens[dest_id] = grant.granted
            if grant.granted == 0:
                # Jitter, so workers sharing one cluster-wide bucket do not all wake at once.
                wait = grant.retry_in_s * (1 + 0.2 * self.rng.random())
                soonest = wait if soonest is None else min(soonest, wait)
        return soonest, tokens

    async def _return_tokens(self, tokens: dict[str, int], used: dict[str, int]) -> None:
        """Tokens taken for deliveries that were not there go back to their bucket."""
        for dest_id, n in tokens.items():
            unused = n - used.get(dest_id, 0)
            rate = self._dests[dest_id].current.spec.rate_limit_per_s
            if unused > 0 and rate is not None:
                await self.limiter.give_back(dest_id, rate, unused)

    def _pump(self, entry: _Destination) -> None:
        """Start claimed deliveries while the destination has free slots."""
        if self._stopping:
            return
        ready, cap = entry.ready, entry.current.spec.max_in_flight
        while ready and entry.in_flight < cap:
            entry.in_flight += 1
            self._spawn(self._deliver(entry, ready.popleft()))

    def _give_back_ready(self) -> None:
        """Stopping: deliveries claimed ahead and never sent are due again at once."""
        for entry in self._dests.values():
            while entry.ready:
                claim = entry.ready.popleft()
                self._completions.append(
                    self._given_back(
                        entry.current, claim, "the worker stopped before sending", unsent=True
                    )
                )
        self._flush_wake.set()

    def _given_back(
        self, d: Destination, claim: Claim, why: str, unsent: bool = False
    ) -> Completion:
        now = now_us()
        return Completion(
            delivery_id=claim.delivery_id,
            destination_id=d.id,
            lane_key=claim.lane_key,
            owner=self.options.owner,
            attempt=AttemptResult(at=now, outcome="lost", error=why),
            state="scheduled",
            next_attempt_at=now,
            release_lane=False,
            failed=False,
            unsent=unsent,
        )

    # ------------------------------------------------------------------ delivering
    async def _deliver(self, entry: _Destination, claim: Claim) -> None:
        d, transport = entry.current, entry.transport
        spec = d.spec
        try:
            if transport is None:  # claimed, then its kind changed under it: a bug
                raise RuntimeError(f"no transport for kind {spec.kind}")
            result = await transport.deliver(claim, d)
        except asyncio.CancelledError:
            # Shutting down mid-request: give the delivery back now rather than leave it
            # to its lease. The receiver may have it already: at least once.
            self._completions.append(self._given_back(d, claim, "the worker stopped mid-request"))
            raise
        except Exception as exc:  # a bug, not a receiver's failure: record it and retry
            log.exception("delivery %s failed inside Tidings", claim.delivery_id)
            result = AttemptResult(
                at=now_us(), outcome="connection_error", error=f"internal: {exc}"
            )
        finally:
            entry.in_flight -= 1
        child(ATTEMPTS, d.id, result.outcome).inc()
        child(ATTEMPT_LATENCY, d.id).observe(result.latency_ms / 1000)
        transition = decide(result, claim.attempt, spec.retry, spec.on_dead, now_us(), self.rng)
        self._finish(
            claim.delivery_id,
            claim.lane_key,
            d,
            result,
            transition,
            self.options.owner,
            claim.event_id,
            claim.attempt,
        )
        if transition.disable_destination and d.state == "active":
            # Claim no more meanwhile; the flush writes the pause with this attempt.
            self._mark_paused(entry, result.gone or "the target is gone")
        self._pump(entry)
        if entry.low:
            self._wake.set()

    def _finish(
        self,
        delivery_id: str,
        lane_key: str,
        d: Destination,
        result: AttemptResult,
        transition: Transition,
        owner: str,
        event_id: str,
        attempt_number: int,
    ) -> Completion:
        done = Completion(
            delivery_id=delivery_id,
            destination_id=d.id,
            lane_key=lane_key,
            owner=owner,
            attempt=result,
            state=transition.state,
            next_attempt_at=transition.next_attempt_at,
            release_lane=transition.release_lane,
            failed=transition.failed,
            gone=result.gone if transition.disable_destination else None,
            event_id=event_id,
            attempt_number=attempt_number,
        )
        self._completions.append(done)
        self._flush_wake.set()
        return done

    @staticmethod
    def _mark_paused(entry: _Destination, reason: str) -> None:
        """Stop claiming for it at once (the store pauses it with the flush that writes
        the attempt which paused it, or has already)."""
        entry.current = msgspec.structs.replace(entry.current, state="paused", paused_reason=reason)

    # ------------------------------------------------------------------ writing outcomes
    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            batch, self._completions = self._completions, []
            if not batch:
                if self._stopping and not self._running:
                    return
                continue
            try:
                written = await self.store.complete(batch, self.options.pause_after_failures)
            except StoreError as exc:
                log.warning("writing %d outcomes failed, retrying: %s", len(batch), exc)
                self._completions[:0] = batch
                await asyncio.sleep(STORE_RETRY_S)
                self._flush_wake.set()
                continue
            self._unwritten.difference_update(c.delivery_id for c in batch)
            self._after_flush(batch, written)
            if self.on_flush is not None:
                self.on_flush()
            self._wake.set()
            if self._stopping and not self._running and not self._completions:
                return

    def _after_flush(self, batch: list[Completion], written: Completed) -> None:
        # Only the deliveries this write made dead: one whose lease was lost meanwhile is
        # another worker's to report.
        made_dead = set(written.dead)
        dead: dict[str, list[Completion]] = {}
        for c in batch:
            if c.state != "scheduled":
                child(DELIVERIES, c.destination_id, c.state).inc()
            if c.state == "dead" and c.delivery_id in made_dead:
                made_dead.discard(c.delivery_id)
                dead.setdefault(c.destination_id, []).append(c)
        for dest_id, completions in dead.items():
            entry = self._dests.get(dest_id)
            if entry is not None:
                for c in completions:
                    self.notices.dead(entry.current, c)
                if self.alerter is not None:
                    self.alerter.deliveries_dead(entry.current, completions)
        for paused in written.paused:
            DESTINATION_PAUSED.inc()
            entry = self._dests.get(paused.id)
            if entry is not None:
                entry.update(paused, entry.transport)
            # The attempt that paused it: the one saying its target is gone, else the
            # failure that ended the run.
            mine = [c for c in batch if c.destination_id == paused.id and c.failed]
            gone = next((c for c in reversed(mine) if c.gone is not None), None)
            last = gone or (mine[-1] if mine else None)
            reason = paused.paused_reason or "a run of failed attempts"
            self.notices.paused(paused, "gone" if gone else "failures", reason, last)
            if self.alerter is not None:
                self.alerter.destination_paused(paused)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = (self._loop or asyncio.get_running_loop()).create_task(coro)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    # ------------------------------------------------------------------ maintenance
    async def _maintenance_loop(self) -> None:
        while not self._stopping:
            try:
                await self._recover_lost()
            except StoreError as exc:
                log.warning("lease recovery failed: %s", exc)
            except Exception:
                log.exception("maintenance loop error")
            await asyncio.sleep(self.options.refresh_interval_s)

    async def _recover_lost(self) -> None:
        """Deliveries whose lease expired failed their attempt: retry them by policy.

        Only of destinations this process sends to: the leases of a kind without a
        transport here (a pull group's, held by its consumers) are not the engine's."""
        sent = [d for d, entry in self._dests.items() if entry.transport is not None]
        if not sent:
            return
        # Ours as the query starts, too: an outcome the flush writes while it runs has
        # left `_unwritten` by the time it answers, and its snapshot may still show the
        # lease expired (its lost attempt would then be recorded beside the real one).
        ours = set(self._unwritten)
        lost = await self.store.expired_leases(now_us(), LOST_BATCH, sent)
        for lease in lost:
            if lease.owner == self.options.owner and (
                lease.delivery_id in ours or lease.delivery_id in self._unwritten
            ):
                continue  # ours, running or with its outcome written or about to be
            entry = self._dests.get(lease.destination_id)
            if entry is None:
                continue
            self._recover(entry.current, lease)

    def _recover(self, d: Destination, lease: LostLease) -> None:
        now = now_us()
        result = AttemptResult(
            at=now,
            outcome="lost",
            error=f"the lease of worker {lease.owner} expired before it reported an outcome",
        )
        ATTEMPTS.labels(d.id, "lost").inc()
        transition = decide(result, lease.attempts, d.spec.retry, d.spec.on_dead, now, self.rng)
        self._finish(
            lease.delivery_id,
            lease.lane_key,
            d,
            result,
            transition,
            lease.owner,
            lease.event_id,
            lease.attempts,
        )
