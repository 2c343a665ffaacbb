"""The embedded SQLite store: WAL, group commit on one writer thread, fsync before answering.

Every write is a job run by a single writer thread that owns the only writing
connection. The thread takes every job waiting in its queue, runs them all in one
`BEGIN IMMEDIATE` transaction and commits once. It does not wait for the disk: the
commit writes the WAL (`synchronous=NORMAL`) and the group's answers go to a syncer
thread, which `fdatasync`s the WAL file and only then resolves the callers' futures, so a
caller is answered only after its write is on disk, as with `synchronous=FULL`, while the
writer already runs the next group (one sync covers every group committed before it).
Answers leave in commit order: once a group waits for a sync, every later one (engine
bookkeeping that needs no sync of its own included) is answered after it, so no caller
ever acts on a write that a power loss could still undo. Under load, jobs pile up while a
group runs, so the group grows by itself; idle, a lone job commits at once.

A failing job fails alone: the jobs first run with no savepoints (each statement costs a
GIL hand-over), and only when one fails does the group run again, each job in a
SAVEPOINT of its own. Consecutive ingest jobs of a group run as one append (one
statement per table for all their events).

Reads run on a small pool of reader threads with their own connections (WAL lets them
read the last commit while the writer works; a read may see a commit in the moment
between it and its sync, before the writing caller is answered). Checkpoints (copying
the WAL back into the database file, with its fsync) run on a thread of their own every
`CHECKPOINT_EVERY_S`, not inside the writer's commits, where SQLite would run them by
default; the writer only checkpoints itself as a backstop, if the WAL outgrows
`BACKSTOP_PAGES`. The event loop never blocks on SQLite. Fan-out routing is decided
inside the writer, from a destination cache that only the writer changes, so an event
and its deliveries always commit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from tidings.ids import (
    DELIVERY_PREFIX,
    DESTINATION_PREFIX,
    EVENT_PREFIX,
    MAX_MEMBERS,
    IdFactory,
    member_id,
)
from tidings.metrics import INBOX_DROPPED
from tidings.model import (
    Activity,
    Appended,
    Attempt,
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
from tidings.policy.batching import split_answers
from tidings.policy.counting import SLICES, estimated, per_slice
from tidings.policy.inbox import (
    ack_level,
    count_messages,
    first_offsets,
    place_messages,
    recipients_of,
    trim_from,
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
T = TypeVar("T")
Q = load_queries("sqlite")
MAX_GROUP = 512  # jobs per transaction; bounds the latency one commit can add
READERS = 2
CHECKPOINT_EVERY_S = 0.2
BACKSTOP_PAGES = 16_384  # 64 MiB of WAL at 4 KiB pages
# Inbox messages per generation of the by-user index (migration 0008): small enough that a
# batch's random (user_id, pos) entries land on few pages, large enough that a read (one
# seek per generation) stays short.
GENERATION_MESSAGES = 65_536

_spec_decoder = msgspec.json.Decoder(DestinationSpec)
_secrets_decoder = msgspec.json.Decoder(list[Secret])
_encode = msgspec.json.encode
_rows_decoder = msgspec.json.Decoder(list[list[Any]])
_gen_decoder = msgspec.json.Decoder(tuple[int, int])


@dataclass
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    durable: bool = True
    events: Sequence[EventIn] | None = None  # an ingest job: merged with its neighbours
    committed: Callable[[], None] | None = None  # called on `loop` once the job commits


def _no_payload() -> Any:
    raise AssertionError("a router without filters never reads a payload")


def _units(group: list[_Job]) -> list[list[_Job]]:
    """The group in order, consecutive ingest jobs gathered into one unit."""
    units: list[list[_Job]] = []
    for job in group:
        if job.events is not None and units and units[-1][-1].events is not None:
            units[-1].append(job)
        else:
            units.append([job])
    return units


def _split(
    unit: list[_Job], appended: list[Appended]
) -> list[tuple[_Job, Any, BaseException | None]]:
    """The answers of one append over merged ingest jobs, back to the jobs in order."""
    parts = split_answers([len(job.events or ()) for job in unit], appended)
    return [(job, part, None) for job, part in zip(unit, parts, strict=True)]


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller went away; the write happened all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _resolve_all(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        _resolve(future, result, error)


_Results = list[tuple[_Job, Any, BaseException | None]]


def _answer(results: _Results) -> None:
    """Resolve the callers' futures: one wake-up per event loop, not one per job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, Any]]] = {}
    for job, result, error in results:
        by_loop.setdefault(job.loop, []).append((job.future, result, error))
    for loop, outcomes in by_loop.items():
        # A closed loop's callers are gone; the writer and syncer must go on for the rest.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve_all, outcomes)


def _tell_committed(results: _Results) -> None:
    """Call the `committed` hook of every job of a committed group that succeeded."""
    for job, _, error in results:
        if job.committed is not None and error is None:
            with contextlib.suppress(RuntimeError):  # a closed loop: its caller is gone
                job.loop.call_soon_threadsafe(job.committed)


def _take_waiting(
    items: queue.SimpleQueue[Any], limit: int | None = None
) -> tuple[list[Any], bool]:
    """Block for one item, then take every other item already waiting (at most `limit`
    in all); True if a None (stop) came, which ends the list and is not in it."""
    first = items.get()
    if first is None:
        return [], True
    taken = [first]
    while limit is None or len(taken) < limit:
        try:
            item = items.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return taken, True
        taken.append(item)
    return taken, False


# The WAL's data reaches the disk (fdatasync: its size too, not other metadata); macOS
# has no fdatasync, and SQLite itself uses fsync there.
_sync_file: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


def _connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    # Statement journals (a multi-row INSERT keeps one, to undo just that statement) in
    # memory, not in a file created and unlinked in the temp directory at every commit.
    conn.execute("PRAGMA temp_store = MEMORY")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: the WAL is fsynced at every commit, so a 202 survives power loss.
        conn.execute("PRAGMA synchronous = FULL")
    return conn


def _statements(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


class SQLiteStore(Store):
    def __init__(self, path: str) -> None:
        self.path = path
        self._ids = IdFactory()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        # Owned by the writer thread only:
        self._router = Router()
        self._fifo: dict[str, bool] = {}  # destination id -> ordering is fifo
        self._destinations_dirty = True
        self._destinations_rev: str | None = None
        self._last_received_at = 0
        self._last_seq = 0
        # Answers waiting for a sync of the WAL, in commit order; None stops the syncer.
        self._answers: queue.SimpleQueue[tuple[bool, _Results] | None] = queue.SimpleQueue()
        self._answers_lock = threading.Lock()
        self._answers_waiting = 0  # groups handed to the syncer and not yet answered
        self._syncer: threading.Thread | None = None
        self._wal_fd: int | None = None
        self._sync_wal = _sync_file  # tests replace it to hold or fail the sync
        self._routes_checked = False  # this transaction has seen destinations_rev
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()

    # ---------------------------------------------------------------- life cycle
    async def open(self) -> None:
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="tidings-sqlite-read")
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()
        self._writer = threading.Thread(
            target=self._run_writer, args=(loop, ready), name="tidings-sqlite-write", daemon=True
        )
        self._writer.start()
        await ready
        self._syncer = threading.Thread(
            target=self._run_syncs, name="tidings-sqlite-sync", daemon=True
        )
        self._syncer.start()
        self._stop_checkpoints.clear()
        self._checkpointer = threading.Thread(
            target=self._run_checkpoints, name="tidings-sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._stop_checkpoints.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._syncer is not None:  # after the writer: its last answers are queued
            self._answers.put(None)
            await asyncio.to_thread(self._syncer.join)
            self._syncer = None
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    # ---------------------------------------------------------------- the writer
    def _run_writer(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            Path(self.path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            conn = _connect(self.path)
            conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
            # Commits write the WAL without waiting for the disk; the syncer thread syncs
            # it before any answer (SQLite still syncs around checkpoints and WAL resets).
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
            self._reload_destinations(conn)
            row = conn.execute(Q["max_received_at"]).fetchone()
            self._last_received_at = row[0] if row else 0
            # The WAL exists now (the reads above opened it) and stays while this
            # connection is open; any descriptor of the file syncs it.
            self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except BaseException as exc:  # report any start-up failure to open()
            loop.call_soon_threadsafe(_resolve, ready, None, StoreUnavailable(str(exc)))
            return
        loop.call_soon_threadsafe(_resolve, ready, None, None)
        try:
            self._serve_jobs(conn)
        finally:
            conn.close()

    def _run_checkpoints(self) -> None:
        """PASSIVE checkpoints: never block the writer or a reader; SQLite restarts the
        WAL from its beginning once a checkpoint has copied all of it."""
        try:
            conn = _connect(self.path)
        except sqlite3.Error as exc:
            log.error("sqlite checkpoints disabled, cannot connect: %s", exc)
            return
        try:
            while not self._stop_checkpoints.wait(CHECKPOINT_EVERY_S):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # e.g. busy: the next round tries again
                    log.debug("sqlite checkpoint failed: %s", exc)
        finally:
            conn.close()

    def _run_syncs(self) -> None:
        """Answer the groups the writer committed, in order, each after a sync of the WAL
        that began after its commit (one sync for every group waiting)."""
        stopping = False
        while not stopping:
            batch, stopping = _take_waiting(self._answers)
            # Every group here is committed: its pipelined callers may go on before the
            # sync. Told from this thread, not the writer's: waking their event loop is
            # a write to its socket, which hands the GIL over (7% of the writer's time
            # in a file ingest, when the writer did it).
            for _, results in batch:
                _tell_committed(results)
            error: BaseException | None = None
            if any(durable for durable, _ in batch):
                try:
                    if self._wal_fd is None:
                        raise OSError("the WAL file is not open")
                    self._sync_wal(self._wal_fd)
                except OSError as exc:
                    # The commits stand in the WAL but may not be on disk: fail their
                    # callers (a retry may duplicate, never lose, the write).
                    log.error("sqlite: syncing the WAL failed: %s", exc)
                    error = StoreUnavailable(f"could not sync the database to disk: {exc}")
            for durable, results in batch:
                if error is not None and durable:
                    results = [(job, None, exc or error) for job, _, exc in results]
                _answer(results)
            with self._answers_lock:
                self._answers_waiting -= len(batch)

    def _hand_over(self, results: _Results, durable: bool) -> None:
        """Answer a committed group: after a sync of the WAL if it wrote anything that
        must be durable, or if an earlier group still waits for one (answers keep commit
        order); at once otherwise."""
        with self._answers_lock:
            direct = not durable and self._answers_waiting == 0
            if not direct:
                self._answers_waiting += 1
        if direct:
            _tell_committed(results)
            _answer(results)
        else:
            self._answers.put((durable, results))

    def _serve_jobs(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            group, stopping = _take_waiting(self._jobs, MAX_GROUP)
            if group:
                self._run_group(conn, group)

    def _begin(self, conn: sqlite3.Connection, group: list[_Job]) -> bool:
        """Open the group's transaction; False (every job answered with the error) if the
        database refuses."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            _answer([(job, None, StoreUnavailable(str(exc))) for job in group])
            return False
        self._routes_checked = False
        return True

    def _run_group(self, conn: sqlite3.Connection, group: list[_Job]) -> None:
        # Every statement hands the GIL over twice, and under load each time back costs
        # a wait for the event loop's thread: that wait, not SQLite, is most of a group's
        # time. Hence no statement a group can do without: the jobs run one after the
        # other with no savepoint between them, and only if one fails does the group run
        # again, each job in a savepoint of its own, so that only that one fails.
        durable = any(job.durable for job in group)
        if not self._begin(conn, group):
            return
        try:
            results = self._run_bare(conn, group)
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._destinations_dirty = True  # the router may hold rolled-back changes
            self._reload_destinations(conn)
            if len(group) == 1:
                if isinstance(exc, sqlite3.OperationalError):
                    exc = StoreUnavailable(str(exc))
                _answer([(group[0], None, exc)])
                return
            if not self._begin(conn, group):
                return
            results = []
            for job in group:
                self._run_in_savepoint(conn, job, results)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("sqlite commit failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            results = [(job, None, StoreUnavailable(str(exc))) for job, _, _ in results]
            self._destinations_dirty = True  # the router may hold rolled-back changes
        finally:
            if self._destinations_dirty:
                self._reload_destinations(conn)
        self._hand_over(results, durable)

    def _run_in_savepoint(
        self,
        conn: sqlite3.Connection,
        job: _Job,
        results: list[tuple[_Job, Any, BaseException | None]],
    ) -> None:
        conn.execute("SAVEPOINT job")
        try:
            result = job.fn(conn)
        except BaseException as exc:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            if isinstance(exc, sqlite3.OperationalError):
                exc = StoreUnavailable(str(exc))
            results.append((job, None, exc))
        else:
            conn.execute("RELEASE job")
            results.append((job, result, None))
        if self._destinations_dirty:
            # Later jobs of this group must route by the destinations as they are now
            # (a delivery to a destination deleted earlier in the group breaks its FK).
            self._reload_destinations(conn)

    def _run_bare(self, conn: sqlite3.Connection, group: list[_Job]) -> _Results:
        """Every job of the group, consecutive ingest jobs as one append (one statement
        per table for all their events). Raises what the first failing job raised."""
        results: list[tuple[_Job, Any, BaseException | None]] = []
        for unit in _units(group):
            if len(unit) == 1:
                results.append((unit[0], unit[0].fn(conn), None))
            else:
                events = [e for job in unit for e in job.events or ()]
                results.extend(_split(unit, self._append(conn, events)))
            if self._destinations_dirty:
                # Later jobs must route by the destinations as they are now (a delivery
                # to a destination deleted earlier in the group breaks its FK).
                self._reload_destinations(conn)
        return results

    def _migrate(self, conn: sqlite3.Connection) -> None:
        for version, name, script in migrations("sqlite"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                current = conn.execute("PRAGMA user_version").fetchone()[0]
                if current >= version:
                    conn.execute("ROLLBACK")
                    continue
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(version)}")
                conn.execute("COMMIT")
                log.info("applied migration %s", name)
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _reload_destinations(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(Q["all_destinations"]).fetchall()
        destinations = [destination_row(r) for r in rows]
        self._router = Router.build(
            Route(d.id, tuple(d.spec.topics), d.spec.filter, d.spec.enabled) for d in destinations
        )
        self._fifo = {d.id: d.spec.ordering == "fifo" for d in destinations}
        rev = conn.execute(Q["destinations_rev"]).fetchone()
        self._destinations_rev = rev[0] if rev else None
        self._destinations_dirty = False

    def _check_routes(self, conn: sqlite3.Connection) -> None:
        """Reload the destinations if another process changed them since we last looked.
        Once per transaction: while it lasts, nobody else can write."""
        if not self._routes_checked:
            row = conn.execute(Q["destinations_rev"]).fetchone()
            self._routes_at(conn, row[0] if row else None)

    def _routes_at(self, conn: sqlite3.Connection, rev: str | None) -> None:
        """`_check_routes` with destinations_rev read by the caller already."""
        if not self._routes_checked and rev != self._destinations_rev:
            self._destinations_dirty = True
            self._reload_destinations(conn)
        self._routes_checked = True

    def _destinations_changed(self, conn: sqlite3.Connection) -> None:
        conn.execute(Q["bump_destinations_rev"])
        self._destinations_dirty = True

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        durable: bool = True,
        events: Sequence[EventIn] | None = None,
        committed: Callable[[], None] | None = None,
    ) -> T:
        """Run `fn` in the writer. `durable=False` (engine bookkeeping: claims, outcomes)
        lets a group of only such jobs be answered without a sync of the WAL (unless an
        earlier group still waits for one): a crash of the process loses nothing (the
        WAL is in the OS's cache), and a power loss can only undo the newest such commits
        as a whole, which at-least-once delivery repairs by sending again. A group with
        any durable job is answered after a sync, which covers every earlier commit too."""
        if self._writer is None:
            raise StoreUnavailable("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(fn, loop, future, durable, events, committed))
        return await future

    # ---------------------------------------------------------------- readers
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise StoreUnavailable("store is not open")

        def run() -> T:
            try:
                return fn(self._reader())
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(str(exc)) from exc

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    # ---------------------------------------------------------------- meta
    async def get_meta(self, key: str) -> str | None:
        row = await self._read(lambda c: c.execute(Q["get_meta"], {"key": key}).fetchone())
        return None if row is None else str(row[0])

    async def set_meta_if_absent(self, key: str, value: str) -> str:
        def job(conn: sqlite3.Connection) -> str:
            conn.execute(Q["insert_meta_if_absent"], {"key": key, "value": value})
            return str(conn.execute(Q["get_meta"], {"key": key}).fetchone()[0])

        return await self._write(job)

    async def delete_expired_meta(self, prefix: str, now: int) -> int:
        def job(conn: sqlite3.Connection) -> int:
            params = {"prefix": prefix, "now": now}
            return int(conn.execute(Q["delete_expired_meta"], params).rowcount)

        return await self._write(job)

    # ---------------------------------------------------------------- ingest
    async def append_events(self, events: Sequence[EventIn]) -> list[Appended]:
        return await self._write(lambda conn: self._append(conn, events), events=events)

    async def append_events_pipelined(
        self, events: Sequence[EventIn], committed: Callable[[], None]
    ) -> list[Appended]:
        # The writer runs the next append while this one's WAL is synced: the answers
        # still leave in commit order, each after a sync that covers it.
        return await self._write(
            lambda conn: self._append(conn, events), events=events, committed=committed
        )

    def _append(self, conn: sqlite3.Connection, events: Sequence[EventIn]) -> list[Appended]:
        now = max(now_us(), self._last_received_at)
        out: list[Appended] = []
        rows: list[tuple[Any, ...]] = []  # see insert_events_json
        payloads: list[bytes] = []
        offset = 1  # substr() counts from 1
        deliveries: list[list[Any]] = []  # [id, event_seq, destination_id, lane_key, holds]
        families = iter(self._ids.families(len(events)))  # one per new event, some spare
        first_of_key: dict[str, Appended] = {}  # keys first seen in this call
        inboxed: list[tuple[int, int, list[str]]] = []  # (index in out, event seq, users)
        # Sequence numbers are assigned here (we hold the write lock) so that the events go
        # in with one statement; never below a number handed out before, even if the
        # newest events were deleted since.
        top, rev, newest_gen = conn.execute(Q["max_event_seq_and_rev"]).fetchone()
        seq = max(top or 0, self._last_seq)
        self._routes_at(conn, rev)
        route = self._router.route
        # Without filters, a topic's destinations are those of its first event (a file's
        # rows all have one topic).
        by_topic: dict[str, list[str]] | None = {} if self._router.by_topic_only else None
        known = self._known_keys(conn, events)
        for event in events:
            if event.idempotency_key is not None:
                earlier = first_of_key.get(event.idempotency_key)
                if earlier is not None:
                    out.append(msgspec.structs.replace(earlier, duplicate=True))
                    continue
                stored = known.get(event.idempotency_key)
                if stored is not None:
                    out.append(stored)
                    continue
            payload = bytes(event.payload)
            payloads.append(payload)
            family = next(families)
            event_id = EVENT_PREFIX + family
            seq += 1
            rows.append(
                (
                    seq,
                    event_id,
                    event.topic,
                    event.key,
                    offset,
                    len(payload),
                    _encode(event.recipients).decode() if event.recipients else None,
                    event.idempotency_key,
                    event.causation_id,
                    event.correlation_id,
                )
            )
            if event.recipients:  # inboxes (issue 15): written after the events
                users = recipients_of(event.recipients)
                inboxed.append((len(out), seq, users))
            offset += len(payload)
            if by_topic is None:
                targets = route(event.topic, partial(msgspec.json.decode, payload))
            else:
                cached = by_topic.get(event.topic)
                if cached is None:
                    cached = by_topic[event.topic] = route(event.topic, _no_payload)
                targets = cached
            if len(targets) > MAX_MEMBERS:
                raise StoreError(f"an event may go to at most {MAX_MEMBERS} destinations")
            for i, destination_id in enumerate(targets, 1):
                deliveries.append(
                    [DELIVERY_PREFIX + member_id(family, i), seq, destination_id, event.key, 1]
                )
            appended = Appended(id=event_id, received_at=now, deliveries=len(targets))
            if event.idempotency_key is not None:
                first_of_key[event.idempotency_key] = appended
            out.append(appended)
        if rows:
            conn.execute(
                Q["insert_events_json"],
                {"rows": _encode(rows).decode(), "payloads": b"".join(payloads), "now": now},
            )
            self._last_seq = seq
            if inboxed:
                self._append_inboxes(conn, inboxed, out, newest_gen)
        if deliveries:
            self._queue_behind_heads(deliveries)
            conn.execute(
                Q["insert_deliveries_json"], {"rows": _encode(deliveries).decode(), "now": now}
            )
        self._last_received_at = now
        return out

    # ---------------------------------------------------------------- inboxes (issue 15)
    def _append_inboxes(
        self,
        conn: sqlite3.Connection,
        inboxed: list[tuple[int, int, list[str]]],
        out: list[Appended],
        newest_gen: str | None,
    ) -> None:
        """One message per recipient at the user's next offset, in the append's own
        transaction (the writer thread holds the only write lock: offsets are drawn in
        commit order); the offsets go into the events' answers in `out`. The messages go
        into the newest generation, or open the next one once that one is full."""
        per_event = [users for _, _, users in inboxed]
        counts = count_messages(per_event)
        tops: dict[str, int] = {}
        trims: list[tuple[str, int]] = []
        limit = self.inbox_max
        for user_id, top, kept_from in conn.execute(
            Q["bump_inbox_tops_json"], {"counts": _encode(counts).decode()}
        ).fetchall():
            tops[user_id] = top
            cut = trim_from(top, kept_from, limit)
            if cut is not None:
                trims.append((user_id, cut))
        first = first_offsets(counts, tops)
        offsets, rows = place_messages(per_event, [seq for _, seq, _ in inboxed], first)
        gen, held = _gen_decoder.decode(newest_gen) if newest_gen else (0, 0)
        if held >= GENERATION_MESSAGES:
            gen += 1
        conn.execute(Q["insert_inbox_json"], {"rows": _encode(rows).decode(), "gen": gen})
        conn.execute(
            Q["count_inbox_gen"],
            {"gen": gen, "first_seq": inboxed[0][1], "messages": sum(counts.values())},
        )
        for (index, _, _), written in zip(inboxed, offsets, strict=True):
            out[index] = msgspec.structs.replace(out[index], inbox=tuple(written))
        dropped = 0
        for user_id, cut in trims:  # a full inbox drops its oldest messages
            params = {"user_id": user_id, "kept_from": cut}
            dropped += conn.execute(Q["trim_inbox"], params).rowcount
            conn.execute(Q["set_inbox_kept_from"], params)
        if dropped:
            INBOX_DROPPED.inc(dropped)

    async def read_inbox(self, user_id: str, after: int, limit: int) -> InboxPage:
        def read(conn: sqlite3.Connection) -> InboxPage:
            params = {"user_id": user_id, "after": after, "limit": limit}
            rows = conn.execute(Q["inbox_after"], params).fetchall()
            # The counter after the messages: top is never below the last one read.
            state = conn.execute(Q["inbox_user"], params).fetchone()
            return inbox_page(rows, state)

        return await self._read(read)

    async def ack_inbox(self, user_id: str, up_to: int, now: int) -> int:
        def job(conn: sqlite3.Connection) -> int:
            params: dict[str, Any] = {"user_id": user_id}
            state = conn.execute(Q["inbox_user"], params).fetchone()
            if state is None:
                return 0
            top, acked = state
            level = ack_level(acked, up_to, top)
            if level > acked:
                conn.execute(Q["set_inbox_acked"], {**params, "acked": level})
                conn.execute(
                    Q["mark_inbox_acked"],
                    {**params, "from_pos": acked, "to_pos": level, "now": now},
                )
            return level

        return await self._write(job, durable=False)

    async def sweep_inbox(self, acked_before: int, received_before: int, limit: int) -> int:
        def job(conn: sqlite3.Connection) -> int:
            acked = 0
            gens = conn.execute(Q["inbox_acked_gens"], {"cutoff": acked_before}).fetchall()
            for (gen,) in gens:
                params = {"gen": gen, "cutoff": acked_before, "limit": limit - acked}
                acked += conn.execute(Q["sweep_inbox_acked"], params).rowcount
                if acked >= limit:
                    break
            aged = 0
            for (gen,) in conn.execute(Q["inbox_gens"]).fetchall():
                params = {"gen": gen, "cutoff": received_before, "limit": limit - aged}
                aged += conn.execute(Q["sweep_inbox_aged"], params).rowcount
                # A generation left with messages is where the cutoff falls: every later
                # one is younger.
                if aged >= limit or conn.execute(Q["inbox_gen_has_messages"], params).fetchone()[0]:
                    break
            if acked or aged:
                conn.execute(Q["sweep_inbox_gens"])
            return int(acked + aged)

        return await self._write(job, durable=False)

    def _known_keys(
        self, conn: sqlite3.Connection, events: Sequence[EventIn]
    ) -> dict[str, Appended]:
        """The events already stored under the idempotency keys of `events`, as the
        duplicates' answers, looked up with one statement (a file's chunk has a key per
        row: one lookup each was a quarter of the writer's time)."""
        keys = [e.idempotency_key for e in events if e.idempotency_key is not None]
        if not keys:
            return {}
        rows = conn.execute(Q["events_by_idempotency_keys"], {"keys": _encode(keys).decode()})
        return {
            key: Appended(id=event_id, received_at=received_at, deliveries=n, duplicate=True)
            for key, event_id, received_at, n in rows
        }

    def _queue_behind_heads(self, deliveries: list[list[Any]]) -> None:
        """Mark (index 4) each new fifo delivery as queued behind an earlier one of its
        lane in this list (0) or as its lane's head unless the store holds one (2: the
        insert asks the store); unordered ones keep 1."""
        fifo = self._fifo
        seen: set[tuple[str, str]] = set()
        for d in deliveries:
            if not fifo.get(d[2], True):
                continue  # unordered destination: every delivery goes at once
            lane = (d[2], d[3])
            if lane in seen:
                d[4] = 0
            else:
                seen.add(lane)
                d[4] = 2

    def _takes_head(
        self, conn: sqlite3.Connection, destination_id: str, lane_key: str, busy: set[Any]
    ) -> int:
        """1 if a new delivery may go at once (its lane is free or unordered), else 0."""
        if not self._fifo.get(destination_id, True):
            return 1
        lane = (destination_id, lane_key)
        if lane in busy:
            return 0
        busy.add(lane)
        taken = conn.execute(
            Q["lane_has_head"], {"destination_id": destination_id, "lane_key": lane_key}
        ).fetchone()
        return 0 if taken else 1

    # ---------------------------------------------------------------- destinations
    async def create_destination(self, spec: DestinationSpec, secret: str) -> Destination:
        def job(conn: sqlite3.Connection) -> Destination:
            now = now_us()
            destination_id = self._ids.new(DESTINATION_PREFIX)
            try:
                conn.execute(
                    Q["insert_destination"],
                    {
                        "id": destination_id,
                        "name": spec.name,
                        "spec": _encode(spec),
                        "secrets": _encode([Secret(value=secret)]),
                        "state": "active",
                        "now": now,
                    },
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict("name", f"a destination named {spec.name!r} exists") from exc
            self._destinations_changed(conn)
            return self._destination_in(conn, destination_id)

        return await self._write(job)

    @staticmethod
    def _destination_in(conn: sqlite3.Connection, destination_id: str) -> Destination:
        row = conn.execute(Q["destination_by_id"], {"ref": destination_id}).fetchone()
        if row is None:
            raise NotFound(destination_id)
        return destination_row(row)

    async def get_destination(self, ref: str) -> Destination | None:
        def read(conn: sqlite3.Connection) -> Destination | None:
            row = conn.execute(Q["destination_by_id"], {"ref": ref}).fetchone()
            if row is None:
                row = conn.execute(Q["destination_by_name"], {"ref": ref}).fetchone()
            return None if row is None else destination_row(row)

        return await self._read(read)

    async def list_destinations(self, limit: int, cursor: str | None) -> Page[Destination]:
        after = cursor_seq(cursor)

        def read(conn: sqlite3.Connection) -> Page[Destination]:
            rows = conn.execute(
                Q["list_destinations"], {"cursor": after, "limit": limit + 1}
            ).fetchall()
            return page_of([destination_row(r[1:]) for r in rows], [r[0] for r in rows], limit)

        return await self._read(read)

    async def update_destination(self, destination_id: str, spec: DestinationSpec) -> Destination:
        def job(conn: sqlite3.Connection) -> Destination:
            before = self._destination_in(conn, destination_id)
            try:
                conn.execute(
                    Q["update_destination_spec"],
                    {
                        "id": destination_id,
                        "name": spec.name,
                        "spec": _encode(spec),
                        "now": now_us(),
                    },
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict("name", f"a destination named {spec.name!r} exists") from exc
            self._destinations_changed(conn)
            self._respec_lanes(conn, before.spec, spec, destination_id)
            return self._destination_in(conn, destination_id)

        return await self._write(job)

    async def delete_destination(self, destination_id: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            deleted = conn.execute(Q["delete_destination"], {"id": destination_id}).rowcount > 0
            if deleted:
                self._destinations_changed(conn)
            return deleted

        return await self._write(job)

    async def rotate_secret(
        self, destination_id: str, new_secret: str, grace_until: int
    ) -> Destination:
        def job(conn: sqlite3.Connection) -> Destination:
            current = self._destination_in(conn, destination_id)
            now = now_us()
            kept = [
                Secret(value=s.value, expires_at=s.expires_at or grace_until)
                for s in current.secrets
                if s.expires_at is None or s.expires_at > now
            ]
            conn.execute(
                Q["update_destination_secrets"],
                {
                    "id": destination_id,
                    "secrets": _encode([Secret(value=new_secret), *kept]),
                    "now": now,
                },
            )
            self._destinations_changed(conn)
            return self._destination_in(conn, destination_id)

        return await self._write(job)

    # ---------------------------------------------------------------- reads
    async def get_event(self, event_id: str) -> Event | None:
        row = await self._read(lambda c: c.execute(Q["get_event"], {"id": event_id}).fetchone())
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
        params: dict[str, Any] = {
            "topic": None,
            "prefix": None,
            "prefix_end": None,
            "key": key,
            "correlation_id": correlation_id,
            "cursor": cursor_seq(cursor),
            "limit": limit + 1,
        }
        prefix = pattern_prefix(topic) if topic else None
        if topic and prefix is None:
            params["topic"] = topic
        elif prefix:
            params["prefix"] = prefix
            params["prefix_end"] = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        query = Q[events_query(params["topic"], key, correlation_id)]

        def read(conn: sqlite3.Connection) -> Page[Event]:
            rows = conn.execute(query, params).fetchall()
            return page_of([event_row(r) for r in rows], [r[0] for r in rows], limit)

        return await self._read(read)

    async def correlated_events(self, correlation_id: str, limit: int) -> list[EventLink]:
        params = {"correlation_id": correlation_id, "limit": limit}
        rows = await self._read(lambda c: c.execute(Q["correlated_events"], params).fetchall())
        return [event_link_row(r) for r in rows]

    async def event_link(self, event_id: str) -> EventLink | None:
        row = await self._read(lambda c: c.execute(Q["event_link"], {"id": event_id}).fetchone())
        return None if row is None else event_link_row(row)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = await self._read(
            lambda c: c.execute(Q["get_delivery"], {"id": delivery_id}).fetchone()
        )
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
        params = {
            "destination_id": destination_id,
            "state": state,
            "event_id": event_id,
            "cursor": cursor_seq(cursor),
            "limit": limit + 1,
        }

        def read(conn: sqlite3.Connection) -> Page[Delivery]:
            query = Q[deliveries_query(destination_id, state, event_id)]
            rows = conn.execute(query, params).fetchall()
            return page_of([delivery_row(r) for r in rows], [r[0] for r in rows], limit)

        return await self._read(read)

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        rows = await self._read(
            lambda c: c.execute(Q["attempts_of"], {"id": delivery_id}).fetchall()
        )
        return [attempt_row(r) for r in rows]

    # ---------------------------------------------------------------- the delivery engine
    async def all_destinations(self) -> list[Destination]:
        rows = await self._read(lambda c: c.execute(Q["all_destinations"]).fetchall())
        return [destination_row(r) for r in rows]

    async def claim(self, owner: str, asks: Sequence[ClaimAsk], now: int) -> ClaimBatch:
        def job(conn: sqlite3.Connection) -> ClaimBatch:
            claims: list[Claim] = []
            leases: dict[int, list[int]] = {}  # lease length -> seqs
            for ask in asks:
                (found,) = conn.execute(
                    Q["due_heads_json"],
                    {"destination_id": ask.destination_id, "now": now, "limit": ask.limit},
                ).fetchone()
                for (
                    seq,
                    delivery_id,
                    attempts,
                    lane_key,
                    event_id,
                    topic,
                    body,
                    received,
                ) in _rows_decoder.decode(found):
                    leases.setdefault(ask.lease_us, []).append(seq)
                    claims.append(
                        Claim(
                            delivery_id=delivery_id,
                            destination_id=ask.destination_id,
                            lane_key=lane_key,
                            attempt=attempts + 1,
                            event_id=event_id,
                            topic=topic,
                            payload=bytes.fromhex(body),
                            received_at=received,
                        )
                    )
            for lease_us, seqs in leases.items():
                conn.execute(
                    Q["lease_many"],
                    {"seqs": _encode(seqs), "owner": owner, "expires": now + lease_us, "now": now},
                )
            (next_due,) = conn.execute(
                Q["next_due_of_many"], {"ids": _encode([a.destination_id for a in asks])}
            ).fetchone()
            return ClaimBatch(claims=claims, next_due=next_due)

        return await self._write(job, durable=False)

    async def complete(self, completions: Sequence[Completion], pause_after: int) -> Completed:
        def job(conn: sqlite3.Connection) -> Completed:
            now = now_us()
            # The attempt of every completion is kept, even one whose lease was lost.
            attempts = [
                [c.delivery_id, a.at, a.outcome, a.status_code, a.latency_ms, a.error,
                 a.response_body]
                for c in completions
                if not c.unsent
                for a in (c.attempt,)
            ]  # fmt: skip
            if attempts:
                conn.execute(Q["insert_attempts_json"], {"rows": _encode(attempts)})
            (found,) = conn.execute(
                Q["lease_owners_json"], {"ids": _encode([c.delivery_id for c in completions])}
            ).fetchone()
            owners = dict(_rows_decoder.decode(found))
            done = [
                c for c in first_per_delivery(completions) if owners.get(c.delivery_id) == c.owner
            ]
            # Most outcomes share their new state (delivered, no error): one UPDATE each.
            alike: dict[tuple[Any, ...], list[str]] = {}
            for c in done:
                error = None if c.state == "delivered" else c.attempt.error
                key = (c.state, c.next_attempt_at, 0 if c.release_lane else 1, error)
                alike.setdefault(key, []).append(c.delivery_id)
            for (state, next_at, holds, error), ids in alike.items():
                conn.execute(
                    Q["complete_many"],
                    {
                        "state": state,
                        "next_attempt_at": next_at,
                        "holds_lane": holds,
                        "last_error": error,
                        "now": now,
                        "ids": _encode(ids),
                    },
                )
            unsent = [c.delivery_id for c in done if c.unsent]
            if unsent:
                conn.execute(Q["refund_attempts"], {"ids": _encode(unsent)})
            self._promote(
                conn, list({(c.destination_id, c.lane_key) for c in done if c.release_lane}), now
            )
            runs = fold_runs((c.destination_id, c.failed) for c in done)
            gone = {c.destination_id: c.gone for c in done if c.gone is not None}
            paused = self._apply_runs(conn, runs, gone, pause_after, now)
            dead = [c.delivery_id for c in done if c.state == "dead"]
            return Completed(
                applied=len(done),
                paused=[self._destination_in(conn, d) for d in paused],
                dead=dead,
            )

        return await self._write(job, durable=False)

    def _apply_runs(
        self,
        conn: sqlite3.Connection,
        runs: dict[str, Run],
        gone: dict[str, str],
        pause_after: int,
        now: int,
    ) -> list[str]:
        """Update each destination's failure streak; pause those it or `gone` (why a
        target is gone, by destination) pause; answer their ids."""
        paused: list[str] = []
        clean = [
            d for d, run in runs.items() if run.saw_success and run.failures == 0 and d not in gone
        ]
        if clean:  # the common case, in one statement
            conn.execute(Q["reset_failure_streaks"], {"ids": _encode(clean)})
        for destination_id, run in runs.items():
            if run.saw_success and run.failures == 0 and destination_id not in gone:
                continue
            current = conn.execute(Q["failure_streak"], {"id": destination_id}).fetchone()
            if current is None:
                continue
            streak = next_streak(current[0], run)
            reason = pause_for(streak, pause_after, current[1], gone.get(destination_id))
            if reason is not None:
                conn.execute(
                    Q["set_destination_state"],
                    {
                        "id": destination_id,
                        "state": "paused",
                        "reason": reason,
                        "streak": streak,
                        "now": now,
                    },
                )
                self._destinations_changed(conn)
                paused.append(destination_id)
            elif streak != current[0]:
                conn.execute(Q["set_failure_streak"], {"id": destination_id, "streak": streak})
        return paused

    @staticmethod
    def _promote(conn: sqlite3.Connection, lanes: Sequence[tuple[str, str]], now: int) -> None:
        """Each lane's earliest waiting delivery becomes its head, unless it has one."""
        if not lanes:
            return
        encoded = _encode(sorted(set(lanes))).decode()
        promoted = conn.execute(Q["promote_many"], {"lanes": encoded, "now": now}).fetchall()
        conn.executemany(
            Q["raise_lane_low"],
            [{"destination_id": d, "lane_key": k, "low": low} for d, k, low in promoted],
        )
        for destination_id, lane_key in conn.execute(
            Q["lanes_left_waiting"], {"lanes": encoded}
        ).fetchall():  # cannot happen unless lane_waits was changed by hand
            lane = {"destination_id": destination_id, "lane_key": lane_key}
            log.error("lane_waits' bound missed a waiting delivery: %s", lane)
            row = conn.execute(Q["earliest_waiting_scan"], lane).fetchone()
            if row is not None:
                conn.execute(Q["reset_lane_low"], {**lane, "low": row[1]})
                conn.execute(Q["promote"], {"seq": row[0], "now": now})

    def _respec_lanes(
        self, conn: sqlite3.Connection, old: DestinationSpec, new: DestinationSpec, dest_id: str
    ) -> None:
        """Keep lanes consistent when ordering or on_dead change."""
        now = now_us()
        if old.ordering == "fifo" and new.ordering == "none":
            conn.execute(Q["unqueue_all"], {"destination_id": dest_id, "now": now})
        if old.ordering == "none" and new.ordering == "fifo":
            self._queue_into_lanes(conn, dest_id)
        if old.on_dead == "block" and new.on_dead == "skip":
            lanes = conn.execute(Q["unblock_dead_heads"], {"destination_id": dest_id}).fetchall()
            conn.execute(Q["release_dead_heads"], {"destination_id": dest_id})
            self._promote(conn, [(dest_id, lane_key) for (lane_key,) in lanes], now)

    @staticmethod
    def _queue_into_lanes(conn: sqlite3.Connection, dest_id: str) -> None:
        """An unordered backlog becomes fifo: per lane, only the delivery already moving
        (in flight, scheduled, blocking), else the earliest pending one, stays head."""
        holders = conn.execute(Q["lane_holders"], {"destination_id": dest_id}).fetchall()
        conn.executemany(Q["queue_behind"], [{"seq": seq} for seq in queued_behind_heads(holders)])

    async def expired_leases(
        self, now: int, limit: int, destination_ids: Sequence[str] | None = None
    ) -> list[LostLease]:
        ids = None if destination_ids is None else _encode(list(destination_ids)).decode()
        params = {"now": now, "limit": limit, "ids": ids}
        rows = await self._read(lambda c: c.execute(Q["expired_leases"], params).fetchall())
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
        def job(conn: sqlite3.Connection) -> Destination:
            current = self._destination_in(conn, destination_id)
            if current.state != state or current.paused_reason != reason:
                conn.execute(
                    Q["set_destination_state"],
                    {
                        "id": destination_id,
                        "state": state,
                        "reason": reason if state == "paused" else None,
                        "streak": 0,
                        "now": now_us(),
                    },
                )
                self._destinations_changed(conn)
            return self._destination_in(conn, destination_id)

        return await self._write(job)

    def _requeue(self, conn: sqlite3.Connection, row: Sequence[Any], now: int) -> bool:
        """Put a finished or scheduled delivery (a `delivery_for_requeue` row) back in its
        lane, ahead of any younger delivery that has not started; False if it may not."""
        seq, destination_id, lane_key, state, holds_lane, event_seq = row
        if state in ("pending", "in_flight"):
            return False
        self._check_routes(conn)
        if holds_lane or not self._fifo.get(destination_id, True):
            holds = 1
        else:
            lane = {"destination_id": destination_id, "lane_key": lane_key}
            conn.execute(Q["yield_lane_head"], {**lane, "event_seq": event_seq})
            holds = self._takes_head(conn, destination_id, lane_key, set())
        conn.execute(Q["requeue"], {"seq": seq, "holds_lane": holds, "now": now})
        return True

    async def retry_delivery(self, delivery_id: str, now: int) -> Delivery:
        def job(conn: sqlite3.Connection) -> Delivery:
            row = conn.execute(Q["delivery_for_requeue"], {"id": delivery_id}).fetchone()
            if row is None:
                raise NotFound(delivery_id)
            if not self._requeue(conn, row, now):
                raise Conflict("state", "the delivery is already pending or in flight")
            return delivery_row(conn.execute(Q["get_delivery"], {"id": delivery_id}).fetchone())

        return await self._write(job)

    async def retry_deliveries(self, delivery_ids: Sequence[str], now: int) -> Retried:
        def job(conn: sqlite3.Connection) -> Retried:
            found, missing = [], []
            for delivery_id in dict.fromkeys(delivery_ids):
                row = conn.execute(Q["delivery_for_requeue"], {"id": delivery_id}).fetchone()
                if row is None:
                    missing.append(delivery_id)
                else:
                    found.append((row[5], delivery_id, row))
            retried, conflicts = 0, []
            for _, delivery_id, row in sorted(found):  # oldest event first
                if self._requeue(conn, row, now):
                    retried += 1
                else:
                    conflicts.append(delivery_id)
            return Retried(retried=retried, not_found=missing, conflicts=conflicts)

        return await self._write(job)

    async def replay(
        self,
        destination_id: str,
        state: str,
        since: int | None,
        until: int | None,
        now: int,
        limit: int,
    ) -> int:
        def job(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                Q["replay_candidates"],
                {
                    "destination_id": destination_id,
                    "state": state,
                    "since": since,
                    "until": until,
                    "limit": limit,
                },
            ).fetchall()
            return sum(self._requeue(conn, row, now) for row in rows)

        return await self._write(job)

    async def save_upload(self, upload: Upload) -> None:
        report = _encode(upload).decode()

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(Q["save_upload"], {"id": upload.id, "report": report, "now": now_us()})

        await self._write(job)

    async def get_upload(self, upload_id: str) -> Upload | None:
        row = await self._read(lambda c: c.execute(Q["get_upload"], {"id": upload_id}).fetchone())
        return None if row is None else msgspec.json.decode(row[0], type=Upload)

    async def list_uploads(self, limit: int, before: str | None) -> list[Upload]:
        rows = await self._read(
            lambda c: c.execute(Q["list_uploads"], {"before": before, "limit": limit}).fetchall()
        )
        return [msgspec.json.decode(r[0], type=Upload) for r in rows]

    async def purge_delivery(self, delivery_id: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            row = conn.execute(Q["delivery_for_requeue"], {"id": delivery_id}).fetchone()
            if row is None:
                return False
            seq, destination_id, lane_key, state, holds_lane, _ = row
            if state != "dead":
                raise Conflict("state", "only a dead delivery can be purged")
            conn.execute(Q["delete_delivery"], {"seq": seq})
            if holds_lane:
                self._promote(conn, [(destination_id, lane_key)], now_us())
            return True

        return await self._write(job)

    async def sweep(self, cutoff: int, limit: int, after: int = 0) -> Swept:
        def job(conn: sqlite3.Connection) -> Swept:
            last = _last_seq_before(conn, cutoff)
            if last is None or last <= after:
                return Swept(deleted=0, upto=None)
            window = {"after": after, "max_seq": last, "limit": limit}
            n, upto = conn.execute(Q["sweep_window"], window).fetchone()
            if not n:
                return Swept(deleted=0, upto=None)
            deleted = conn.execute(
                Q["sweep_events_between"], {"after": after, "upto": upto}
            ).rowcount
            return Swept(
                deleted=int(deleted),
                upto=None if upto >= last else int(upto),
                kept=int(n) - int(deleted),
            )

        # A delete a power loss undoes is done again by the next pass: no sync needed.
        return await self._write(job, durable=False)

    # ---------------------------------------------------------------- pull groups (issue 16)
    async def lease_group(self, destination_id: str, limit: int, lease_us: int, now: int) -> Leased:
        token = new_token()

        def job(conn: sqlite3.Connection) -> Leased:
            (found,) = conn.execute(
                Q["group_heads_json"],
                {"destination_id": destination_id, "now": now, "limit": limit},
            ).fetchone()
            rows = _rows_decoder.decode(found)
            expires = now + lease_us
            if rows:
                conn.execute(
                    Q["lease_many"],
                    {
                        "seqs": _encode([r[0] for r in rows]),
                        "owner": token,
                        "expires": expires,
                        "now": now,
                    },
                )
            (next_due,) = conn.execute(
                Q["group_next_due"], {"destination_id": destination_id}
            ).fetchone()
            return Leased(
                leases=[
                    leased(r[1], r[2] + 1, token, expires, r[3:], bytes.fromhex(r[7])) for r in rows
                ],
                next_due=next_due,
            )

        return await self._write(job, durable=False)

    def _held(
        self, conn: sqlite3.Connection, destination_id: str, refs: Sequence[LeaseRef], now: int
    ) -> tuple[list[tuple[LeaseRef, str, int]], list[LeaseRef]]:
        """(held, lost): each held ref with its lane key and attempt count."""
        (found,) = conn.execute(
            Q["held_leases_json"],
            {
                "ids": _encode([r.delivery_id for r in refs]),
                "destination_id": destination_id,
                "now": now,
            },
        ).fetchone()
        return split_held(refs, _rows_decoder.decode(found))

    def _settle(
        self,
        conn: sqlite3.Connection,
        destination_id: str,
        settled: Sequence[tuple[LeaseRef, str, int]],
        outcome: str,
        error: str | None,
        plan: FailurePlan | None,
        now: int,
    ) -> list[str]:
        """Record an attempt for each held lease and move its delivery on: delivered when
        `plan` is None, else as the plan says; answer the deliveries made dead."""
        if not settled:
            return []
        attempts = [
            [ref.delivery_id, now, outcome, None, 0.0, error, None] for ref, _, _ in settled
        ]
        conn.execute(Q["insert_attempts_json"], {"rows": _encode(attempts)})
        moves = lease_moves(settled, plan, error, now)
        for (state, next_at, holds, last_error), ids in moves.by_state.items():
            conn.execute(
                Q["complete_many"],
                {
                    "state": state,
                    "next_attempt_at": next_at,
                    "holds_lane": holds,
                    "last_error": last_error,
                    "now": now,
                    "ids": _encode(ids),
                },
            )
        self._promote(conn, [(destination_id, lane) for lane in moves.released], now)
        return moves.dead

    async def ack_leases(self, destination_id: str, refs: Sequence[LeaseRef], now: int) -> Settled:
        def job(conn: sqlite3.Connection) -> Settled:
            held, lost = self._held(conn, destination_id, refs, now)
            self._settle(conn, destination_id, held, "delivered", None, None, now)
            return Settled(ok=[h[0] for h in held], lost=lost)

        return await self._write(job, durable=False)

    async def nack_leases(
        self,
        destination_id: str,
        refs: Sequence[LeaseRef],
        plan: FailurePlan,
        error: str | None,
        now: int,
    ) -> Settled:
        def job(conn: sqlite3.Connection) -> Settled:
            held, lost = self._held(conn, destination_id, refs, now)
            dead = self._settle(conn, destination_id, held, "nacked", error, plan, now)
            return Settled(ok=[h[0] for h in held], lost=lost, dead=dead)

        return await self._write(job, durable=False)

    async def extend_leases(
        self, destination_id: str, refs: Sequence[LeaseRef], lease_us: int, now: int
    ) -> Settled:
        def job(conn: sqlite3.Connection) -> Settled:
            held, lost = self._held(conn, destination_id, refs, now)
            if held:
                ids = _encode([ref.delivery_id for ref, _, _ in held])
                conn.execute(Q["extend_many"], {"ids": ids, "expires": now + lease_us, "now": now})
            return Settled(ok=[h[0] for h in held], lost=lost)

        return await self._write(job, durable=False)

    async def expire_leases(
        self, destination_id: str, plan: FailurePlan, now: int, limit: int
    ) -> Settled:
        def job(conn: sqlite3.Connection) -> Settled:
            (found,) = conn.execute(
                Q["expired_group_leases_json"],
                {"destination_id": destination_id, "now": now, "limit": limit},
            ).fetchone()
            expired = expired_of(_rows_decoder.decode(found))
            dead = self._settle(conn, destination_id, expired, "lost", LEASE_EXPIRED, plan, now)
            return Settled(ok=[e[0] for e in expired], dead=dead)

        return await self._write(job, durable=False)

    async def deliveries_of_events(self, event_ids: Sequence[str]) -> list[Delivery]:
        params = {"ids": _encode(list(event_ids)).decode()}
        rows = await self._read(
            lambda c: c.execute(Q["deliveries_of_events_json"], params).fetchall()
        )
        return [delivery_row(r) for r in rows]

    async def backlog(self) -> list[Backlog]:
        cap = self.backlog_exact_up_to

        def read(conn: sqlite3.Connection) -> list[Backlog]:
            rows = conn.execute(Q["backlog"], {"cap": cap}).fetchall()
            estimates = {}
            for destination_id, state, n, _, first, last in rows:
                if n < cap:
                    continue
                args = {"destination_id": destination_id, "state": state, "first": first,
                        "last": last, "slices": SLICES, "limit": per_slice(cap)}  # fmt: skip
                walks = [
                    ((lo, hi), int(n), low, high)
                    for lo, hi, n, low, high in conn.execute(Q["backlog_slices"], args)
                ]
                estimates[(destination_id, state)] = estimated(cap, walks)
            return backlog_of(rows, estimates)

        return await self._read(read)

    async def activity(
        self, after_event_seq: int | None, after_attempt_seq: int | None
    ) -> Activity:
        def read(conn: sqlite3.Connection) -> Activity:
            event_top, attempt_top = conn.execute(Q["activity_tops"]).fetchone()
            events = 0
            if after_event_seq is not None:
                events = conn.execute(Q["events_after"], {"after": after_event_seq}).fetchone()[0]
            outcomes: dict[str, int] = {}
            if after_attempt_seq is not None:
                rows = conn.execute(Q["outcomes_after"], {"after": after_attempt_seq})
                outcomes = {str(r[0]): int(r[1]) for r in rows}
            return Activity(
                event_seq=event_top or 0,
                attempt_seq=attempt_top or 0,
                events=int(events),
                outcomes=outcomes,
            )

        return await self._read(read)

    async def event_seq_at(self, at: int) -> int | None:
        def read(conn: sqlite3.Connection) -> int | None:
            last = _last_seq_before(conn, at)
            row = conn.execute(Q["event_received_at_from"], {"seq": (last or 0) + 1}).fetchone()
            return None if row is None else int(row[0])

        return await self._read(read)

    async def recent_attempts(self, limit: int) -> list[AttemptSample]:
        rows = await self._read(
            lambda c: c.execute(Q["recent_attempts"], {"limit": limit}).fetchall()
        )
        return [AttemptSample(r[0], r[1], float(r[2])) for r in rows]

    async def count_deliveries(
        self, destination_id: str, state: str, since: int | None, until: int | None, cap: int
    ) -> int:
        params = {
            "destination_id": destination_id,
            "state": state,
            "since": since,
            "until": until,
            "cap": cap,
        }
        row = await self._read(lambda c: c.execute(Q["count_deliveries"], params).fetchone())
        return int(row[0])


def _last_seq_before(conn: sqlite3.Connection, cutoff: int) -> int | None:
    """The last event seq received before `cutoff`. received_at never decreases along
    seq: a binary search instead of a scan (there is no index on received_at)."""
    low, high = conn.execute(Q["event_seq_bounds"]).fetchone()
    if low is None:
        return None
    last = None
    while low <= high:
        mid = (low + high) // 2
        row = conn.execute(Q["event_received_at_from"], {"seq": mid}).fetchone()
        if row is not None and row[1] < cutoff:
            last = int(row[0])
            low = row[0] + 1
        else:
            high = mid - 1
    return last


__all__ = ["SQLiteStore", "StoreError"]
