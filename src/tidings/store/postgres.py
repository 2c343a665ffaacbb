"""The PostgreSQL store: asyncpg with a pool, for many API and worker processes at once.

Every method runs in its own transaction on a pooled connection; PostgreSQL's own group
commit shares fsyncs between concurrent commits. What SQLite gets from its single
writer, this store gets from locks:
- a *lane lock* (a transaction-scoped advisory lock on a hash of destination and key)
  serializes everything that decides a lane's head: ingest of a fifo delivery (is the lane
  busy?), an outcome that frees the lane (who is next?), retry, replay and purge. Locks
  are taken in sorted order, so transactions never deadlock on them; ingest takes them
  before drawing event sequence numbers, so along a lane `seq` follows commit order;
- a *destination lock* (shared at ingest, exclusive when a destination's ordering or
  dead-letter policy changes) keeps those changes from racing with ingest;
- claims use `FOR UPDATE SKIP LOCKED`, so concurrent workers never lease one delivery.
New deliveries are announced with `NOTIFY` (those of ingest right after their commit, in
a statement of their own: see migration 0007); `listen` delivers those wake-ups
to the engine over a dedicated connection that reconnects by itself. Migrations run
under a session advisory lock, so processes starting together apply each one once.

Any connection-level failure surfaces as `StoreUnavailable` (the API answers 503 with
Retry-After; the engine backs off), and the pool reconnects when the server returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import accumulate, chain, repeat
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec

from tidings.ids import DELIVERY_PREFIX, DESTINATION_PREFIX, EVENT_PREFIX, IdFactory, member_id
from tidings.metrics import INBOX_DROPPED
from tidings.model import (
    Activity,
    Appended,
    Attempt,
    AttemptResult,
    AttemptSample,
    Backlog,
    Claim,
    ClaimAsk,
    ClaimBatch,
    Completed,
    Completion,
    Delivery,
    Destination,
    DestinationSpec,
    DestinationState,
    Event,
    EventIn,
    EventLink,
    InboxPage,
    Leased,
    LeaseRef,
    LostLease,
    Page,
    Retried,
    Secret,
    Settled,
    Swept,
    Upload,
)
from tidings.policy.batching import group_limit, split_answers, take_group
from tidings.policy.counting import estimated, per_slice, slices
from tidings.policy.inbox import (
    ack_level,
    assign_offsets,
    count_messages,
    everyone,
    messages_by_user,
    offsets_from,
)
from tidings.policy.outcome import FailurePlan
from tidings.policy.routing import Route, Router
from tidings.policy.streaks import Run, fold_runs, next_streak, pause_for
from tidings.policy.topics import pattern_prefix
from tidings.store.base import (
    Conflict,
    NotFound,
    Store,
    StoreError,
    StoreUnavailable,
    first_per_delivery,
)
from tidings.store.leases import (
    LEASE_EXPIRED,
    expired_of,
    lease_moves,
    leased,
    new_token,
    split_held,
)
from tidings.store.rows import (
    attempt_row,
    backlog_of,
    cursor_seq,
    deliveries_query,
    delivery_row,
    destination_row,
    event_link_row,
    event_row,
    events_query,
    inbox_page,
    page_of,
    queued_behind_heads,
)
from tidings.store.sql import load_queries, migrations
from tidings.timeutil import now_us

log = logging.getLogger(__name__)
if TYPE_CHECKING:
    Conn = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
Q = load_queries("postgres")
MIGRATION_LOCK = 0x7469_6469_6E67_7301  # "tidings" + 1: one migrator at a time
POOL_MAX = 20
ACQUIRE_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
OPEN_TIMEOUT_S = 60.0
APPEND_TRIES = 5
# Events per ingest group: bounds one commit's latency and its lane locks (PostgreSQL's
# lock table holds max_locks_per_transaction x max_connections entries for everyone).
MAX_GROUP_EVENTS = 1000
GROUPS_IN_FLIGHT = 3  # ingest groups of this process being written at once
# A burst is shared out over the free groups (policy.batching.group_limit), in groups of
# at least this many events: 4 batches of 100 go as 3 groups side by side (+40-50% here),
# while 32 single events stay one group (split in groups of 8 they cost twice the CPU
# per event, in the API and the database, for no gain).
MIN_GROUP_EVENTS = 64
DRAWN_NOTICE = "tidings: sequence drawn"  # tidings_append says so (migration 0006)
_encode = msgspec.json.encode
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


class _RoutesChanged(asyncpg.PostgresError):
    """`tidings_append` found the destinations changed since we routed (SQLSTATE TDRTE)."""

    sqlstate = "TDRTE"


@dataclass(slots=True)
class _Ingest:
    """An ingest request waiting for its group."""

    events: Sequence[EventIn]
    future: asyncio.Future[list[Appended]]


SAFE_ENCODINGS = frozenset({"UTF8", "SQL_ASCII", "LATIN1"})


def int_array(values: Sequence[int]) -> str:
    """Integers as a PostgreSQL array literal, for a `$n::text::bigint[]` parameter.
    asyncpg's binary array encoder checks each element against three abstract base
    classes (~0.2 us a check): for 10,000 integers that is ~1.7 ms of the client's CPU,
    where this literal costs ~0.1 ms and the server's parse of it ~0.3 ms (measured
    here); a batch with inbox messages sends 20,000-30,000 of them."""
    return (b"{" + _encode(values)[1:-1] + b"}").decode()


def text_array(values: Sequence[str]) -> str:
    """Strings as a PostgreSQL array literal, for a `$n::text::text[]` parameter: each
    element quoted, its backslashes and quotes escaped (array_in then takes every other
    character as it is). Half the CPU of asyncpg's binary encoding (see int_array) for
    a batch's ~6,300 user ids, client and server together (measured here)."""
    quoted = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    return "{" + ",".join(quoted) + "}"


@lru_cache(maxsize=4096)
def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory lock key for a destination or a lane (every
    process and version computes the same). Cached (a few MB at most): an ingest asks
    it twice per delivery (its destination's, its lane's), ~1 us each, and a
    destination's key and a busy lane's come again and again."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _keep_session(_conn: object) -> None:
    """A pooled connection goes back as it is: asyncpg still rolls back a transaction
    left open and drops its listeners, but skips its reset statement (advisory unlock,
    CLOSE ALL, UNLISTEN, RESET ALL), one more round trip at every release. Nothing here
    leaves session state: settings are SET LOCAL, locks transaction-scoped (the
    migrator's session lock is released in its `finally`), LISTEN has its own
    connection."""


def _set_on_close(event: asyncio.Event, _conn: object) -> None:
    event.set()


def _attempt_fields(a: AttemptResult) -> tuple[Any, ...]:
    """An attempt's columns after its delivery: at, outcome, status, latency, error, body."""
    return (a.at, a.outcome, a.status_code, a.latency_ms, a.error, a.response_body)


def _on_drawn(event: asyncio.Event, _conn: object, message: object) -> None:
    if getattr(message, "message", None) == DRAWN_NOTICE:
        event.set()


def split_url(url: str) -> tuple[str, str]:
    """(connection URL, schema): a `schema=` query parameter names the schema to use."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), "public")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


class PostgresStore(Store):
    announces = True  # NOTIFY on commit reaches every process's `listen`

    def __init__(self, url: str) -> None:
        self.url, self.schema = split_url(url)
        if not self.schema.replace("_", "").isalnum():
            raise StoreError(f"schema {self.schema!r}: letters, digits and _ only")
        self.work_channel = f"tidings_{self.schema}_work"
        self.destinations_channel = f"tidings_{self.schema}_destinations"
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._ids = IdFactory()
        self._router = Router()
        self._fifo: dict[str, bool] = {}
        self._router_rev: str | None = "unloaded"
        self._router_lock = asyncio.Lock()
        self._last_received_at = 0
        self._listeners: list[asyncio.Task[None]] = []
        self._waiting: list[_Ingest] = []  # ingest requests waiting for the next group
        self._committer: asyncio.Task[None] | None = None
        self._announcer: asyncio.Task[None] | None = None
        self._announce_again = False
        # The last seq received before each of the latest retention cutoffs (the events'
        # and the inbox's): a pass asks its cutoff for each of its up to 100 chunks (a
        # binary search of ~25 short queries each time). Remembered, the answer can only
        # be low (events committed since with an earlier stamp, two nodes' clocks), so a
        # sweep deletes less, never more; the next pass has a new cutoff.
        self._seq_before: dict[int, int | None] = {}

    # ---------------------------------------------------------------- life cycle
    async def open(self) -> None:
        deadline = asyncio.get_running_loop().time() + OPEN_TIMEOUT_S
        delay = 0.2
        while True:
            try:
                self._pool = await asyncpg.create_pool(
                    self.url,
                    min_size=1,
                    max_size=POOL_MAX,
                    command_timeout=COMMAND_TIMEOUT_S,
                    server_settings={"search_path": self.schema},
                    reset=_keep_session,
                )
                break
            except _UNAVAILABLE as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise StoreUnavailable(f"cannot reach PostgreSQL: {exc}") from exc
                log.warning("PostgreSQL not reachable yet (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        await self._check_encoding()
        await self._migrate()

    async def _check_encoding(self) -> None:
        """Refuse a database whose bytewise ("C") order of text is not Python's order of
        str: ingest sorts users in Python to lock their counters and reads their new
        tops back in "C" order, position by position (migration 0010). UTF8, SQL_ASCII
        (bytes as sent: UTF-8) and LATIN1 (one byte a code point) agree; WIN1252 and
        the like do not."""
        async with self._conn() as conn:
            encoding = await conn.fetchval("SHOW server_encoding")
        if encoding not in SAFE_ENCODINGS:
            await self.close()
            raise StoreError(
                f"the PostgreSQL database's encoding is {encoding}; Tidings needs UTF8 "
                "(CREATE DATABASE ... ENCODING 'UTF8')"
            )

    async def close(self) -> None:
        if self._committer is not None:  # the requests already waiting are written first
            await asyncio.gather(self._committer, return_exceptions=True)
            self._committer = None
        if self._announcer is not None:
            await asyncio.gather(self._announcer, return_exceptions=True)
            self._announcer = None
        for task in self._listeners:
            task.cancel()
        await asyncio.gather(*self._listeners, return_exceptions=True)
        self._listeners.clear()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    async def _migrate(self) -> None:
        async with self._conn() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                current = 0
                if await conn.fetchval(Q["meta_exists"]):
                    current = int(await conn.fetchval(Q["schema_version"]) or 0)
                for version, name, script in migrations("postgres"):
                    if version <= current:
                        continue
                    async with conn.transaction():
                        await conn.execute(script)
                        await conn.execute(Q["set_schema_version"], str(version))
                    log.info("applied migration %s", name)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[Conn]:
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        try:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _tx(self, *, durable: bool = True) -> AsyncIterator[Conn]:
        """A transaction. `durable=False` (engine bookkeeping: claims, outcomes) commits
        without waiting for the WAL flush: a server crash can only undo the newest such
        commits, as a whole (WAL order), which at-least-once delivery repairs by sending
        again; every ingest commit still waits, and its flush covers all before it."""
        async with self._conn() as conn, conn.transaction():
            if not durable:
                await conn.execute("SET LOCAL synchronous_commit = off")
            yield conn

    # ---------------------------------------------------------------- wake-ups
    async def listen(
        self, on_work: Callable[[], None], on_destinations: Callable[[], None]
    ) -> None:
        task = asyncio.create_task(self._listen_forever(on_work, on_destinations))
        self._listeners.append(task)

    async def _listen_forever(
        self, on_work: Callable[[], None], on_destinations: Callable[[], None]
    ) -> None:
        delay = 0.2
        while True:
            conn: asyncpg.Connection[asyncpg.Record] | None = None
            try:
                conn = await asyncpg.connect(
                    self.url, server_settings={"search_path": self.schema}, timeout=5
                )
                lost = asyncio.Event()
                conn.add_termination_listener(partial(_set_on_close, lost))
                await conn.add_listener(self.work_channel, lambda *_: on_work())
                await conn.add_listener(self.destinations_channel, lambda *_: on_destinations())
                delay = 0.2
                # Work may have arrived while we were not listening.
                on_work()
                on_destinations()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), timeout=10)
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=5)  # notice a dead link
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _announce_work(self) -> None:
        """Wake the engines for deliveries just committed: NOTIFY from a statement of its
        own, after the commit. One is in flight at a time; a group that commits meanwhile
        asks for one more after it, so a burst of groups costs a couple of wake-ups."""
        if self._announcer is not None and not self._announcer.done():
            self._announce_again = True
            return
        self._announcer = asyncio.create_task(self._send_wakeups(), name="tidings-announce")

    async def _send_wakeups(self) -> None:
        while True:
            self._announce_again = False
            try:
                async with self._conn() as conn:
                    await conn.execute(Q["notify_unsynced"], self.work_channel)
            except Exception as exc:  # a wake-up is a hint: the engines poll anyway
                log.debug("wake-up not sent: %s", exc)
            if not self._announce_again:
                return

    # ---------------------------------------------------------------- meta
    async def get_meta(self, key: str) -> str | None:
        async with self._conn() as conn:
            value = await conn.fetchval(Q["get_meta"], key)
        return None if value is None else str(value)

    async def set_meta_if_absent(self, key: str, value: str) -> str:
        async with self._tx() as conn:
            await conn.execute(Q["insert_meta_if_absent"], key, value)
            return str(await conn.fetchval(Q["get_meta"], key))

    async def delete_expired_meta(self, prefix: str, now: int) -> int:
        async with self._tx(durable=False) as conn:  # a crash leaves them for next time
            status = await conn.execute(Q["delete_expired_meta"], prefix, now)
        return int(status.split()[-1])

    # ---------------------------------------------------------------- routing
    async def _current_router(self, conn: Conn) -> Router:
        rev = await conn.fetchval(Q["destinations_rev"])
        if rev != self._router_rev:
            async with self._router_lock:
                if rev != self._router_rev:
                    rows = await conn.fetch(Q["all_destinations"])
                    destinations = [destination_row(r) for r in rows]
                    self._router = Router.build(
                        Route(d.id, tuple(d.spec.topics), d.spec.filter, d.spec.enabled)
                        for d in destinations
                    )
                    self._fifo = {d.id: d.spec.ordering == "fifo" for d in destinations}
                    self._router_rev = rev
        return self._router

    async def _destinations_changed(self, conn: Conn) -> None:
        await conn.execute(Q["bump_destinations_rev"])
        await conn.execute(Q["notify"], self.destinations_channel, "")

    # ---------------------------------------------------------------- ingest
    async def append_events(self, events: Sequence[EventIn]) -> list[Appended]:
        if not events:
            return []
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Ingest(events, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_groups(), name="tidings-ingest")
        return await future

    async def _commit_groups(self) -> None:
        """Write the waiting ingest requests, a group at a time, until none waits: the
        requests that arrive while a group commits make up the next one. Up to
        GROUPS_IN_FLIGHT groups overlap (one waits for its commit's WAL flush while the
        next one runs), but each next one starts only once the one before has drawn its
        sequence numbers (or ended): groups draw them in the order their ids and times
        were drawn here, so that in this process seq, ids and received_at sort alike."""
        running: set[asyncio.Task[None]] = set()
        while True:
            while self._waiting:
                sizes = [len(job.events) for job in self._waiting]
                free = GROUPS_IN_FLIGHT - len(running)
                limit = group_limit(sum(sizes), free, MIN_GROUP_EVENTS, MAX_GROUP_EVENTS)
                n = take_group(sizes, limit)
                group, self._waiting = self._waiting[:n], self._waiting[n:]
                drawn = asyncio.Event()
                task = asyncio.create_task(self._write_group(group, drawn))
                running.add(task)
                task.add_done_callback(running.discard)
                handed = asyncio.create_task(drawn.wait())
                await asyncio.wait({task, handed}, return_when=asyncio.FIRST_COMPLETED)
                handed.cancel()
                while len(running) >= GROUPS_IN_FLIGHT:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            # Done only with nothing waiting and nothing running, checked with no await
            # between the check and the end: a request queued meanwhile starts a new one.
            if not running:
                return
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)

    async def _write_group(self, group: list[_Ingest], drawn: asyncio.Event) -> None:
        try:
            results = await self._run_group(group, drawn)
        finally:
            drawn.set()
        for job, (result, error) in zip(group, results, strict=True):
            if job.future.done():  # the caller went away; the write stands
                continue
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

    async def _run_group(
        self, group: list[_Ingest], drawn: asyncio.Event
    ) -> list[tuple[list[Appended], BaseException | None]]:
        """Each request's answer or error. A request whose events cannot be routed fails
        alone; if the group's write fails otherwise, each request is written again on its
        own, so that only the one at fault fails (a lost connection fails them all)."""
        try:
            events = [e for job in group for e in job.events]
            answers = await self._append_retrying(events, drawn)
            parts = split_answers([len(job.events) for job in group], answers)
            return [(part, None) for part in parts]
        except StoreUnavailable as exc:
            return [([], exc) for _ in group]
        except Exception as exc:
            if len(group) == 1:
                return [([], exc)]
        out: list[tuple[list[Appended], BaseException | None]] = []
        for job in group:
            try:
                out.append((await self._append_retrying(job.events, None), None))
            except Exception as exc:
                out.append(([], exc))
        return out

    async def _append_retrying(
        self, events: Sequence[EventIn], drawn: asyncio.Event | None
    ) -> list[Appended]:
        for attempt in range(APPEND_TRIES):
            try:
                return await self._append_group(events, drawn)
            except asyncpg.UniqueViolationError:
                # Another request stored one of these idempotency keys meanwhile: the
                # next try finds it and answers it as a duplicate.
                if attempt == APPEND_TRIES - 1:
                    raise
            except _RoutesChanged:
                # A destination we routed to changed or was deleted while we wrote:
                # route again.
                self._router_rev = "stale"
                if attempt == APPEND_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _append_group(
        self, events: Sequence[EventIn], drawn: asyncio.Event | None
    ) -> list[Appended]:
        """Events in one round trip (`tidings_append`, migrations 0006, 0007 and 0009): the call
        is its own transaction, committed when it answers, inbox messages included (each
        distinct recipient of an event written gets the user's next offset). Its notice
        that it has drawn its sequence numbers sets `drawn`. The engines are woken after
        the commit (`_announce_work`)."""
        async with self._conn() as conn:
            if self._router_rev in ("unloaded", "stale"):
                await self._current_router(conn)
            rev, route, fifo = self._router_rev, self._router.route, self._fifo
            sent: list[EventIn] = []
            slots: list[tuple[int, bool]] = []  # per event: its index in `sent`, a repeat?
            first: dict[str, int] = {}  # idempotency key -> index in `sent`
            targets_of: list[list[str]] = []
            for event in events:
                key = event.idempotency_key
                if key is not None and key in first:
                    slots.append((first[key], True))
                    continue
                if key is not None:
                    first[key] = len(sent)
                slots.append((len(sent), False))
                sent.append(event)
                targets_of.append(
                    route(event.topic, partial(msgspec.json.decode, bytes(event.payload)))
                )
            dest_locks: set[int] = set()
            lane_locks: set[int] = set()
            # id, event (1-based position in `sent`), destination, lane key, fifo?
            deliveries: tuple[list[str], list[int], list[str], list[str], list[int]]
            deliveries = ([], [], [], [], [])
            recipients: list[str | None] = []  # per event, the JSON of its recipients
            # Ids and times are drawn in the order the groups draw their sequence numbers
            # (_commit_groups), so along seq they never decrease in this process.
            now = self._last_received_at = max(now_us(), self._last_received_at)
            families = self._ids.families(len(sent))
            for n, (event, targets, family) in enumerate(
                zip(sent, targets_of, families, strict=True), 1
            ):
                for i, destination_id in enumerate(targets, 1):
                    ordered = fifo.get(destination_id, True)
                    # Shared, for every destination: its deletion waits for this group
                    # (deliveries have no foreign key since migration 0007).
                    dest_locks.add(lock_key(destination_id))
                    if ordered:
                        lane_locks.add(lock_key(destination_id, event.key))
                    deliveries[0].append(DELIVERY_PREFIX + member_id(family, i))
                    deliveries[1].append(n)
                    deliveries[2].append(destination_id)
                    deliveries[3].append(event.key)
                    deliveries[4].append(1 if ordered else 0)
                recipients.append(_encode(event.recipients).decode() if event.recipients else None)
            # Inboxes (issue 15): each event's distinct recipients, and per user (sorted:
            # the order their counters are locked in) its count and its messages'
            # events, user after user.
            per_event: list[list[str]] = []
            by_user: dict[str, list[int]] = {}
            if any(recipients):
                per_event, by_user = messages_by_user([e.recipients for e in sent])
            ordered_users = sorted(by_user)
            counts = [len(by_user[user]) for user in ordered_users]
            user_events = list(chain.from_iterable(map(by_user.__getitem__, ordered_users)))
            starts = list(accumulate(counts, initial=0))[:-1]
            places = list(chain.from_iterable(map(repeat, range(1, len(counts) + 1), counts)))
            listener = None if drawn is None else partial(_on_drawn, drawn)
            if listener is not None:
                conn.add_log_listener(listener)
            try:
                row = await conn.fetchrow(
                    Q["append_group"],
                    int_array(sorted(dest_locks)),
                    int_array(sorted(lane_locks)),
                    rev,
                    now,
                    [EVENT_PREFIX + f for f in families],
                    [e.topic for e in sent],
                    [e.key for e in sent],
                    [bytes(e.payload) for e in sent],
                    [e.idempotency_key for e in sent],
                    [e.causation_id for e in sent],
                    [e.correlation_id for e in sent],
                    recipients,
                    deliveries[0],
                    int_array(deliveries[1]),
                    deliveries[2],
                    deliveries[3],
                    int_array(deliveries[4]),
                    text_array(ordered_users),
                    int_array(counts),
                    int_array(starts),
                    int_array(user_events),
                    int_array(places),
                    self.inbox_max,
                )
            finally:
                if listener is not None:
                    conn.remove_log_listener(listener)
        assert row is not None  # the function answers one row
        dup_n, dup_id, dup_received_at, dup_deliveries, users_of, tops, dropped = row
        if deliveries[0]:
            self._announce_work()
        if dropped:
            INBOX_DROPPED.inc(dropped)
        dups = {
            n - 1: Appended(id=i, received_at=at, deliveries=d, duplicate=True)
            for n, i, at, d in zip(
                dup_n or (), dup_id or (), dup_received_at or (), dup_deliveries or (),
                strict=True,
            )
        }  # fmt: skip
        answers = [
            dups.get(n)
            or Appended(id=EVENT_PREFIX + family, received_at=now, deliveries=len(targets))
            for n, (family, targets) in enumerate(zip(families, targets_of, strict=True))
        ]
        reach = self.offsets_wanted() if by_user else None
        if reach is not None:
            # A duplicate writes no message; the others' offsets follow from the tops, as
            # tidings_append wrote them. The tops come in the order of the users sent,
            # unless duplicates changed the users (then answered): counted again here.
            inboxed = [n for n, users in enumerate(per_event) if users and n not in dups]
            written_users = [per_event[n] for n in inboxed]
            if dups:
                recounted = count_messages(written_users)
                tops_of = dict(zip(users_of or (), tops or (), strict=True))
                offsets = assign_offsets(written_users, recounted, tops_of)
            else:
                # only the users a push can reach (issue 15)
                first = {
                    user: top - n + 1
                    for user, top, n in zip(ordered_users, tops, counts, strict=True)
                    if reach is everyone or reach(user)
                }
                if not first:
                    inboxed, written_users = [], []
                elif reach is not everyone:
                    written_users = [[u for u in users if u in first] for users in written_users]
                offsets = offsets_from(written_users, first)
            for n, written in zip(inboxed, offsets, strict=True):
                if written:
                    answers[n] = msgspec.structs.replace(answers[n], inbox=tuple(written))
        return [
            msgspec.structs.replace(answers[i], duplicate=True, inbox=()) if again else answers[i]
            for i, again in slots
        ]

    # ---------------------------------------------------------------- inboxes (issue 15)
    async def read_inbox(self, user_id: str, after: int, limit: int) -> InboxPage:
        async with self._conn() as conn:
            rows = await conn.fetch(Q["inbox_after"], user_id, after, limit)
            # The counter after the messages: top is never below the last one read.
            state = await conn.fetchrow(Q["inbox_user"], user_id)
        return inbox_page(rows, state)

    async def ack_inbox(self, user_id: str, up_to: int, now: int) -> int:
        async with self._tx(durable=False) as conn:
            state = await conn.fetchrow(Q["inbox_user_for_update"], user_id)
            if state is None:
                return 0
            top, acked = state[0], state[1]
            level = ack_level(acked, up_to, top)
            if level > acked:
                await conn.execute(Q["set_inbox_acked"], user_id, level)
                await conn.execute(Q["mark_inbox_acked"], user_id, acked, level, now)
            return int(level)

    async def sweep_inbox(self, acked_before: int, received_before: int, limit: int) -> int:
        async with self._tx(durable=False) as conn:
            # Index scans only: with a LIMIT, a sequential scan of the inbox looks cheap to
            # the planner, and reads the whole table whenever nothing is due.
            await conn.execute("SET LOCAL enable_seqscan = off")
            acked = await conn.execute(Q["sweep_inbox_acked"], acked_before, limit)
            last = await self._last_seq_before_cutoff(conn, received_before)
            aged = "DELETE 0"
            if last is not None:
                aged = await conn.execute(Q["sweep_inbox_aged"], received_before, last, limit)
        return int(acked.split()[-1]) + int(aged.split()[-1])

    # ---------------------------------------------------------------- destinations
    async def create_destination(self, spec: DestinationSpec, secret: str) -> Destination:
        destination_id = self._ids.new(DESTINATION_PREFIX)
        try:
            async with self._tx() as conn:
                await conn.execute(
                    Q["insert_destination"],
                    destination_id,
                    spec.name,
                    _encode(spec),
                    _encode([Secret(value=secret)]),
                    "active",
                    now_us(),
                )
                await self._destinations_changed(conn)
                return await self._destination_in(conn, destination_id)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("name", f"a destination named {spec.name!r} exists") from exc

    @staticmethod
    async def _destination_in(conn: Conn, destination_id: str) -> Destination:
        row = await conn.fetchrow(Q["destination_by_id"], destination_id)
        if row is None:
            raise NotFound(destination_id)
        return destination_row(row)

    async def get_destination(self, ref: str) -> Destination | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(Q["destination_by_id"], ref)
            if row is None:
                row = await conn.fetchrow(Q["destination_by_name"], ref)
        return None if row is None else destination_row(row)

    async def list_destinations(self, limit: int, cursor: str | None) -> Page[Destination]:
        after = cursor_seq(cursor)
        async with self._conn() as conn:
            rows = await conn.fetch(Q["list_destinations"], after, limit + 1)
        return page_of([destination_row(r[1:]) for r in rows], [r[0] for r in rows], limit)

    async def update_destination(self, destination_id: str, spec: DestinationSpec) -> Destination:
        try:
            async with self._tx() as conn:
                await conn.execute(Q["lock_destination_exclusive"], lock_key(destination_id))
                before = await self._destination_in(conn, destination_id)
                await conn.execute(
                    Q["update_destination_spec"], destination_id, spec.name, _encode(spec), now_us()
                )
                await self._respec_lanes(conn, before.spec, spec, destination_id)
                await self._destinations_changed(conn)
                return await self._destination_in(conn, destination_id)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("name", f"a destination named {spec.name!r} exists") from exc

    async def _respec_lanes(
        self,
        conn: Conn,
        old: DestinationSpec,
        new: DestinationSpec,
        dest_id: str,
    ) -> None:
        now = now_us()
        if old.ordering == "fifo" and new.ordering == "none":
            await conn.execute(Q["unqueue_all"], dest_id, now)
        if old.ordering == "none" and new.ordering == "fifo":
            queued = queued_behind_heads(await conn.fetch(Q["lane_holders"], dest_id))
            if queued:
                await conn.execute(Q["queue_behind"], queued)
        if old.on_dead == "block" and new.on_dead == "skip":
            lanes = sorted({r[0] for r in await conn.fetch(Q["release_dead_heads"], dest_id)})
            if lanes:
                await conn.fetchval(
                    Q["lock_lanes"], sorted(lock_key(dest_id, lane) for lane in lanes)
                )
                await conn.execute(Q["promote_lanes"], [dest_id] * len(lanes), lanes, now)

    async def delete_destination(self, destination_id: str) -> bool:
        async with self._tx() as conn:
            # Exclusive: an ingest that routed to it commits first (its deliveries are
            # deleted here) or finds the destinations changed and routes again.
            await conn.execute(Q["lock_destination_exclusive"], lock_key(destination_id))
            deleted = await conn.execute(Q["delete_destination"], destination_id)
            if deleted.endswith(" 0"):
                return False
            await conn.execute(Q["delete_deliveries_of_destination"], destination_id)
            await self._destinations_changed(conn)
            return True

    async def rotate_secret(
        self, destination_id: str, new_secret: str, grace_until: int
    ) -> Destination:
        async with self._tx() as conn:
            current = await self._destination_in(conn, destination_id)
            now = now_us()
            kept = [
                Secret(value=s.value, expires_at=s.expires_at or grace_until)
                for s in current.secrets
                if s.expires_at is None or s.expires_at > now
            ]
            await conn.execute(
                Q["update_destination_secrets"],
                destination_id,
                _encode([Secret(value=new_secret), *kept]),
                now,
            )
            await self._destinations_changed(conn)
            return await self._destination_in(conn, destination_id)

    # ---------------------------------------------------------------- reads
    async def get_event(self, event_id: str) -> Event | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(Q["get_event"], event_id)
        return None if row is None else event_row(row)

    async def list_events(
        self,
        topic: str | None,
        limit: int,
        cursor: str | None,
        *,
        key: str | None = None,
        correlation_id: str | None = None,
    ) -> Page[Event]:
        exact = prefix = prefix_end = None
        pattern = pattern_prefix(topic) if topic else None
        if topic and pattern is None:
            exact = topic
        elif pattern:
            prefix, prefix_end = pattern, pattern[:-1] + chr(ord(pattern[-1]) + 1)
        async with self._conn() as conn:
            rows = await conn.fetch(
                Q[events_query(exact, key, correlation_id)],
                exact,
                prefix,
                prefix_end,
                cursor_seq(cursor),
                limit + 1,
                key,
                correlation_id,
            )
        return page_of([event_row(r) for r in rows], [r[0] for r in rows], limit)

    async def correlated_events(self, correlation_id: str, limit: int) -> list[EventLink]:
        async with self._conn() as conn:
            rows = await conn.fetch(Q["correlated_events"], correlation_id, limit)
        return [event_link_row(r) for r in rows]

    async def event_link(self, event_id: str) -> EventLink | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(Q["event_link"], event_id)
        return None if row is None else event_link_row(row)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(Q["get_delivery"], delivery_id)
        return None if row is None else delivery_row(row)

    async def list_deliveries(
        self,
        *,
        destination_id: str | None = None,
        state: str | None = None,
        event_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Delivery]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                Q[deliveries_query(destination_id, state, event_id)],
                destination_id,
                state,
                event_id,
                cursor_seq(cursor),
                limit + 1,
            )
        return page_of([delivery_row(r) for r in rows], [r[0] for r in rows], limit)

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        async with self._conn() as conn:
            rows = await conn.fetch(Q["attempts_of"], delivery_id)
        return [attempt_row(r) for r in rows]

    # ---------------------------------------------------------------- the delivery engine
    async def all_destinations(self) -> list[Destination]:
        async with self._conn() as conn:
            rows = await conn.fetch(Q["all_destinations"])
        return [destination_row(r) for r in rows]

    async def claim(self, owner: str, asks: Sequence[ClaimAsk], now: int) -> ClaimBatch:
        if not asks:
            return ClaimBatch(claims=[], next_due=None)
        claims: list[Claim] = []
        next_due: int | None = None
        # One statement, in a transaction block all the same: a statement sent on its own
        # commits even when the connection dies before its answer comes back, and leases
        # its worker never saw would wait for their expiry (taken for lost).
        async with self._conn() as conn, conn.transaction():
            rows = await conn.fetch(
                Q["claim_many"],
                [a.destination_id for a in asks],
                [a.limit for a in asks],
                [now + a.lease_us for a in asks],
                now,
                owner,
            )
        for (
            delivery_id,
            dest_id,
            attempts,
            lane_key,
            event_id,
            topic,
            body,
            received,
            due,
            *_,
        ) in rows:
            if delivery_id is None:
                next_due = due
                continue
            claims.append(
                Claim(
                    delivery_id=delivery_id,
                    destination_id=dest_id,
                    lane_key=lane_key,
                    attempt=attempts,
                    event_id=event_id,
                    topic=topic,
                    payload=body,
                    received_at=received,
                )
            )
        return ClaimBatch(claims=claims, next_due=next_due)

    async def complete(self, completions: Sequence[Completion], pause_after: int) -> Completed:
        if not completions:
            return Completed(applied=0, paused=[])
        if not any(c.failed or c.gone is not None for c in completions):
            return await self._complete_group(completions)
        async with self._tx(durable=False) as conn:
            releasing = sorted(
                {lock_key(c.destination_id, c.lane_key) for c in completions if c.release_lane}
            )
            if releasing:
                await conn.fetchval(Q["lock_lanes"], releasing)
            found = {
                r[1]: r
                for r in await conn.fetch(
                    Q["deliveries_for_completion"], [c.delivery_id for c in completions]
                )
            }
            now = now_us()
            attempt_cols: list[list[Any]] = [[] for _ in range(7)]
            update_cols: list[list[Any]] = [[] for _ in range(5)]
            released: set[tuple[str, str]] = set()
            applied: list[Completion] = []
            refunds: list[int] = []  # seqs of claims given back unsent
            for c in first_per_delivery(completions):
                row = found.get(c.delivery_id)
                if row is None:
                    continue  # deleted meanwhile
                a = c.attempt
                if not c.unsent:  # a claim given back unsent leaves no attempt behind
                    for column, value in zip(
                        attempt_cols,
                        (row[0], *_attempt_fields(a)),
                        strict=True,
                    ):
                        column.append(value)
                if row[2] != "in_flight" or row[3] != c.owner:
                    continue  # the lease was lost: keep the attempt, change nothing else
                for column, value in zip(
                    update_cols,
                    (
                        row[0],
                        c.state,
                        c.next_attempt_at,
                        0 if c.release_lane else 1,
                        None if c.state == "delivered" else a.error,
                    ),
                    strict=True,
                ):
                    column.append(value)
                if c.release_lane:
                    released.add((c.destination_id, c.lane_key))
                if c.unsent:
                    refunds.append(row[0])
                applied.append(c)
            if attempt_cols[0]:
                await conn.execute(Q["insert_attempts"], *attempt_cols)
            if update_cols[0]:
                await conn.execute(Q["complete_deliveries"], *update_cols, now)
            if refunds:
                await conn.execute(Q["refund_attempts"], refunds)
            if released:
                lanes = sorted(released)
                await conn.execute(
                    Q["promote_lanes"],
                    [lane[0] for lane in lanes],
                    [lane[1] for lane in lanes],
                    now,
                )
                await conn.execute(Q["notify"], self.work_channel, "")
            runs = fold_runs((c.destination_id, c.failed) for c in applied)
            gone = {c.destination_id: c.gone for c in applied if c.gone is not None}
            paused = [
                await self._destination_in(conn, d)
                for d in await self._apply_runs(conn, runs, gone, pause_after, now)
            ]
        dead = [c.delivery_id for c in applied if c.state == "dead"]
        return Completed(applied=len(applied), paused=paused, dead=dead)

    async def _complete_group(self, completions: Sequence[Completion]) -> Completed:
        """A flush without failures (nothing to pause) in one round trip."""
        firsts = first_per_delivery(completions)
        releasing = sorted(
            {lock_key(c.destination_id, c.lane_key) for c in firsts if c.release_lane}
        )
        columns: list[list[Any]] = [[] for _ in range(13)]
        for c in firsts:
            a = c.attempt
            for column, value in zip(
                columns,
                (
                    c.delivery_id,
                    c.owner,
                    c.state,
                    c.next_attempt_at,
                    0 if c.release_lane else 1,
                    None if c.state == "delivered" else a.error,
                    c.unsent,
                    *_attempt_fields(a),
                ),
                strict=True,
            ):
                column.append(value)
        async with self._conn() as conn, conn.transaction():  # see claim
            rows = await conn.fetch(
                Q["complete_group"], releasing, self.work_channel, now_us(), *columns
            )
        applied = {r[0] for r in rows}
        dead = [c.delivery_id for c in firsts if c.state == "dead" and c.delivery_id in applied]
        return Completed(applied=len(applied), paused=[], dead=dead)

    async def _apply_runs(
        self, conn: Conn, runs: dict[str, Run], gone: dict[str, str], pause_after: int, now: int
    ) -> list[str]:
        """Update each destination's failure streak; pause those it or `gone` (why a
        target is gone, by destination) pause; answer their ids."""
        paused: list[str] = []
        if not runs:
            return paused
        for destination_id, stored, state in await conn.fetch(
            Q["streaks_for_update"], sorted(runs)
        ):
            streak = next_streak(stored, runs[destination_id])
            reason = pause_for(streak, pause_after, state, gone.get(destination_id))
            if reason is not None:
                await conn.execute(
                    Q["set_destination_state"],
                    destination_id,
                    "paused",
                    reason,
                    streak,
                    now,
                )
                paused.append(destination_id)
            elif streak != stored:
                await conn.execute(Q["set_failure_streak"], destination_id, streak)
        if paused:
            await self._destinations_changed(conn)
        return paused

    async def expired_leases(
        self, now: int, limit: int, destination_ids: Sequence[str] | None = None
    ) -> list[LostLease]:
        ids = None if destination_ids is None else list(destination_ids)
        async with self._conn() as conn:
            rows = await conn.fetch(Q["expired_leases"], now, limit, ids)
        return [
            LostLease(
                delivery_id=r[1],
                destination_id=r[2],
                lane_key=r[3],
                attempts=r[4],
                owner=r[5],
                event_id=r[6],
            )
            for r in rows
        ]

    async def set_destination_state(
        self, destination_id: str, state: DestinationState, reason: str | None
    ) -> Destination:
        async with self._tx() as conn:
            current = await self._destination_in(conn, destination_id)
            if current.state != state or current.paused_reason != reason:
                await conn.execute(
                    Q["set_destination_state"],
                    destination_id,
                    state,
                    reason if state == "paused" else None,
                    0,
                    now_us(),
                )
                await self._destinations_changed(conn)
            return await self._destination_in(conn, destination_id)

    async def _requeue(self, conn: Conn, delivery_id: str, now: int) -> bool:
        """Put a finished or scheduled delivery back in its lane, ahead of any younger
        delivery that has not started; the caller holds its lane lock. False when it is
        pending or in flight already."""
        row = await conn.fetchrow(Q["delivery_for_requeue"], delivery_id)
        if row is None:
            raise NotFound(delivery_id)
        seq, destination_id, lane_key, state, holds_lane, event_seq = row
        if state in ("pending", "in_flight"):
            return False
        await self._current_router(conn)  # fresh ordering of every destination
        if holds_lane or not self._fifo.get(destination_id, True):
            holds = 1
        else:
            # A claim in flight on the head re-checks this WHERE after our row lock: a head
            # that started meanwhile keeps the lane.
            await conn.execute(Q["yield_lane_head"], destination_id, lane_key, event_seq)
            busy = await conn.fetchval(Q["lane_has_head"], destination_id, lane_key)
            holds = 0 if busy else 1
        await conn.execute(Q["requeue"], seq, holds, now)
        await conn.execute(Q["notify"], self.work_channel, "")
        return True

    async def _lock_lane_of(self, conn: Conn, delivery_id: str) -> None:
        row = await conn.fetchrow(Q["delivery_lane"], delivery_id)
        if row is None:
            raise NotFound(delivery_id)
        await conn.fetchval(Q["lock_lanes"], [lock_key(row[0], row[1])])

    async def retry_delivery(self, delivery_id: str, now: int) -> Delivery:
        async with self._tx() as conn:
            await self._lock_lane_of(conn, delivery_id)
            if not await self._requeue(conn, delivery_id, now):
                raise Conflict("state", "the delivery is already pending or in flight")
            row = await conn.fetchrow(Q["get_delivery"], delivery_id)
            assert row is not None  # we hold its lane lock and just updated it
            return delivery_row(row)

    async def retry_deliveries(self, delivery_ids: Sequence[str], now: int) -> Retried:
        wanted = list(dict.fromkeys(delivery_ids))
        async with self._tx() as conn:
            rows = await conn.fetch(Q["deliveries_lanes"], wanted)
            known = {r[0] for r in rows}
            if rows:  # sorted, so that two bulk retries never wait on each other in a cycle
                await conn.fetchval(Q["lock_lanes"], sorted({lock_key(r[1], r[2]) for r in rows}))
            found = []
            for delivery_id in wanted:
                if delivery_id in known:
                    row = await conn.fetchrow(Q["delivery_for_requeue"], delivery_id)
                    if row is not None:
                        found.append((row[5], delivery_id))
            retried, conflicts = 0, []
            for _, delivery_id in sorted(found):  # oldest event first
                if await self._requeue(conn, delivery_id, now):
                    retried += 1
                else:
                    conflicts.append(delivery_id)
            present = {delivery_id for _, delivery_id in found}
            missing = [d for d in wanted if d not in present]
            return Retried(retried=retried, not_found=missing, conflicts=conflicts)

    async def replay(
        self,
        destination_id: str,
        state: str,
        since: int | None,
        until: int | None,
        now: int,
        limit: int,
    ) -> int:
        async with self._tx() as conn:
            rows = await conn.fetch(
                Q["replay_candidates"], destination_id, state, since, until, limit
            )
            if not rows:
                return 0
            locks = sorted({lock_key(destination_id, r[1]) for r in rows})
            await conn.fetchval(Q["lock_lanes"], locks)
            done = 0
            for r in rows:
                try:
                    done += await self._requeue(conn, r[0], now)
                except NotFound:
                    continue  # swept since it was read: retention came first
            return done

    async def save_upload(self, upload: Upload) -> None:
        report = msgspec.json.encode(upload).decode()
        async with self._tx() as conn:
            await conn.execute(Q["save_upload"], upload.id, report, now_us())

    async def get_upload(self, upload_id: str) -> Upload | None:
        async with self._conn() as conn:
            report = await conn.fetchval(Q["get_upload"], upload_id)
        return None if report is None else msgspec.json.decode(report, type=Upload)

    async def list_uploads(self, limit: int, before: str | None) -> list[Upload]:
        async with self._conn() as conn:
            rows = await conn.fetch(Q["list_uploads"], before, limit)
        return [msgspec.json.decode(r[0], type=Upload) for r in rows]

    async def purge_delivery(self, delivery_id: str) -> bool:
        async with self._tx() as conn:
            try:
                await self._lock_lane_of(conn, delivery_id)
            except NotFound:
                return False
            row = await conn.fetchrow(Q["delivery_for_requeue"], delivery_id)
            if row is None:
                return False
            seq, destination_id, lane_key, state, holds_lane, _ = row
            if state != "dead":
                raise Conflict("state", "only a dead delivery can be purged")
            await conn.execute(Q["delete_delivery"], seq)
            if holds_lane:
                await conn.execute(Q["promote_lanes"], [destination_id], [lane_key], now_us())
                await conn.execute(Q["notify"], self.work_channel, "")
            return True

    async def sweep(self, cutoff: int, limit: int, after: int = 0) -> Swept:
        # A delete a crash undoes is done again by the next pass: no wait for the flush.
        async with self._tx(durable=False) as conn:
            last = await self._last_seq_before_cutoff(conn, cutoff)
            if last is None or last <= after:
                return Swept(deleted=0, upto=None)
            row = await conn.fetchrow(Q["sweep_window"], after, last, limit)
            assert row is not None  # aggregates: always one row
            n, upto, deleted = row
            if not n or upto is None:
                return Swept(deleted=0, upto=None)
            return Swept(
                deleted=int(deleted),
                upto=None if upto >= last else int(upto),
                kept=int(n) - int(deleted),
            )

    async def _last_seq_before_cutoff(self, conn: Conn, cutoff: int) -> int | None:
        """`_last_seq_before` for a retention cutoff, remembered for the latest few."""
        if cutoff not in self._seq_before:
            last = await _last_seq_before(conn, cutoff)
            while len(self._seq_before) >= 4:  # this pass's two and the pass before's
                del self._seq_before[next(iter(self._seq_before))]
            self._seq_before[cutoff] = last
        return self._seq_before[cutoff]

    # ---------------------------------------------------------------- pull groups (issue 16)
    async def lease_group(self, destination_id: str, limit: int, lease_us: int, now: int) -> Leased:
        token = new_token()
        expires = now + lease_us
        async with self._tx(durable=False) as conn:
            rows = await conn.fetch(
                Q["lease_group_heads"], destination_id, now, limit, token, expires
            )
            next_due = await conn.fetchval(Q["next_due"], destination_id)
        return Leased(
            leases=[leased(r[0], r[1], token, expires, r[2:], bytes(r[6])) for r in rows],
            next_due=next_due,
        )

    async def _lock_lanes(self, conn: Conn, destination_id: str, lanes: Sequence[str]) -> None:
        """Lane locks first, row locks after (the order every writer takes them in)."""
        keys = sorted({lock_key(destination_id, lane) for lane in lanes})
        if keys:
            await conn.fetchval(Q["lock_lanes"], keys)

    async def _held(
        self, conn: Conn, destination_id: str, refs: Sequence[LeaseRef], now: int
    ) -> tuple[list[tuple[LeaseRef, str, int]], list[LeaseRef], dict[str, int]]:
        """(held, lost, seq by delivery id), the held ones locked, their lanes too."""
        ids = [r.delivery_id for r in refs]
        lanes = await conn.fetch(Q["lanes_of_deliveries"], ids, destination_id)
        await self._lock_lanes(conn, destination_id, [r[0] for r in lanes])
        rows = await conn.fetch(Q["held_leases"], ids, destination_id, now)
        held, lost = split_held(refs, rows)
        return held, lost, {r[0]: r[4] for r in rows}

    async def _settle(
        self,
        conn: Conn,
        destination_id: str,
        settled: Sequence[tuple[LeaseRef, str, int]],
        seqs: dict[str, int],
        outcome: str,
        error: str | None,
        plan: FailurePlan | None,
        now: int,
    ) -> list[str]:
        """Record an attempt for each held lease and move its delivery on: delivered when
        `plan` is None, else as the plan says; answer the deliveries made dead."""
        if not settled:
            return []
        n = len(settled)
        await conn.execute(
            Q["insert_attempts"],
            [seqs[ref.delivery_id] for ref, _, _ in settled],
            [now] * n,
            [outcome] * n,
            [None] * n,
            [0.0] * n,
            [error] * n,
            [None] * n,
        )
        moves = lease_moves(settled, plan, error, now)
        cols: list[list[Any]] = [[] for _ in range(5)]
        for (state, next_at, holds, last_error), ids in moves.by_state.items():
            for delivery_id in ids:
                for column, value in zip(
                    cols, (seqs[delivery_id], state, next_at, holds, last_error), strict=True
                ):
                    column.append(value)
        await conn.execute(Q["complete_deliveries"], *cols, now)
        if moves.released:
            await conn.execute(
                Q["promote_lanes"], [destination_id] * len(moves.released), moves.released, now
            )
            await conn.execute(Q["notify"], self.work_channel, "")
        return moves.dead

    async def ack_leases(self, destination_id: str, refs: Sequence[LeaseRef], now: int) -> Settled:
        async with self._tx(durable=False) as conn:
            held, lost, seqs = await self._held(conn, destination_id, refs, now)
            await self._settle(conn, destination_id, held, seqs, "delivered", None, None, now)
        return Settled(ok=[h[0] for h in held], lost=lost)

    async def nack_leases(
        self,
        destination_id: str,
        refs: Sequence[LeaseRef],
        plan: FailurePlan,
        error: str | None,
        now: int,
    ) -> Settled:
        async with self._tx(durable=False) as conn:
            held, lost, seqs = await self._held(conn, destination_id, refs, now)
            dead = await self._settle(conn, destination_id, held, seqs, "nacked", error, plan, now)
        return Settled(ok=[h[0] for h in held], lost=lost, dead=dead)

    async def extend_leases(
        self, destination_id: str, refs: Sequence[LeaseRef], lease_us: int, now: int
    ) -> Settled:
        async with self._tx(durable=False) as conn:
            rows = await conn.fetch(
                Q["held_leases"], [r.delivery_id for r in refs], destination_id, now
            )
            held, lost = split_held(refs, rows)
            seqs = {r[0]: r[4] for r in rows}
            if held:
                await conn.execute(
                    Q["extend_leases"],
                    [seqs[ref.delivery_id] for ref, _, _ in held],
                    now + lease_us,
                    now,
                )
        return Settled(ok=[h[0] for h in held], lost=lost)

    async def expire_leases(
        self, destination_id: str, plan: FailurePlan, now: int, limit: int
    ) -> Settled:
        async with self._tx(durable=False) as conn:
            lanes = await conn.fetch(Q["expired_group_lanes"], destination_id, now, limit)
            if not lanes:
                return Settled()
            await self._lock_lanes(conn, destination_id, [r[0] for r in lanes])
            rows = await conn.fetch(Q["expired_group_leases"], destination_id, now, limit)
            expired = expired_of(rows)
            dead = await self._settle(
                conn,
                destination_id,
                expired,
                {r[0]: r[4] for r in rows},
                "lost",
                LEASE_EXPIRED,
                plan,
                now,
            )
        return Settled(ok=[e[0] for e in expired], dead=dead)

    async def deliveries_of_events(self, event_ids: Sequence[str]) -> list[Delivery]:
        async with self._conn() as conn:
            rows = await conn.fetch(Q["deliveries_of_events"], list(event_ids))
        return [delivery_row(r) for r in rows]

    async def backlog(self) -> list[Backlog]:
        async with self._conn() as conn, conn.transaction():
            # No JIT compile (the planner's estimates ask for one) for a read of milliseconds.
            await conn.execute("SET LOCAL jit = off")
            cap = self.backlog_exact_up_to
            rows = await conn.fetch(Q["backlog"], cap)
            estimates = {}
            for destination_id, state, n, _, first, last in rows:
                if n < cap:
                    continue
                parts = slices(first, last)
                found = await conn.fetch(
                    Q["backlog_slices"], destination_id, state, per_slice(cap),
                    [lo for lo, _ in parts], [hi for _, hi in parts],
                )  # fmt: skip
                walks = [
                    (part, int(r[1]), r[2], r[3]) for part, r in zip(parts, found, strict=True)
                ]
                estimates[(destination_id, state)] = estimated(cap, walks)
            return backlog_of(rows, estimates)

    async def activity(
        self, after_event_seq: int | None, after_attempt_seq: int | None
    ) -> Activity:
        async with self._conn() as conn:
            tops = await conn.fetchrow(Q["activity_tops"])
            assert tops is not None  # two aggregates: always one row
            events = 0
            if after_event_seq is not None:
                events = int(await conn.fetchval(Q["events_after"], after_event_seq))
            outcomes: dict[str, int] = {}
            if after_attempt_seq is not None:
                rows = await conn.fetch(Q["outcomes_after"], after_attempt_seq)
                outcomes = {str(r[0]): int(r[1]) for r in rows}
        return Activity(
            event_seq=int(tops[0] or 0),
            attempt_seq=int(tops[1] or 0),
            events=events,
            outcomes=outcomes,
        )

    async def event_seq_at(self, at: int) -> int | None:
        async with self._conn() as conn:
            last = await _last_seq_before(conn, at)
            row = await conn.fetchrow(Q["event_received_at_from"], (last or 0) + 1)
        return None if row is None else int(row[0])

    async def recent_attempts(self, limit: int) -> list[AttemptSample]:
        async with self._conn() as conn:
            rows = await conn.fetch(Q["recent_attempts"], limit)
        return [AttemptSample(r[0], r[1], float(r[2])) for r in rows]

    async def count_deliveries(
        self, destination_id: str, state: str, since: int | None, until: int | None, cap: int
    ) -> int:
        async with self._conn() as conn:
            return int(
                await conn.fetchval(Q["count_deliveries"], destination_id, state, since, until, cap)
            )


async def _last_seq_before(conn: Any, cutoff: int) -> int | None:
    """The last event seq received before `cutoff`. received_at grows with seq (nearly:
    concurrent commits may interleave by a few ms): a binary search, not a scan."""
    bounds = await conn.fetchrow(Q["event_seq_bounds"])
    low, high = (None, None) if bounds is None else (bounds[0], bounds[1])
    if low is None or high is None:
        return None
    last = None
    while low <= high:
        mid = (low + high) // 2
        row = await conn.fetchrow(Q["event_received_at_from"], mid)
        if row is not None and row[1] < cutoff:
            last = int(row[0])
            low = row[0] + 1
        else:
            high = mid - 1
    return last


__all__ = ["PostgresStore"]
