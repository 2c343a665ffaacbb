"""The store interface every backend implements, and its errors.

The domain speaks only to `Store`. An implementation must:
- make `append_events` atomic and durable before it returns: the events, their
  idempotency keys and every delivery fan-out creates commit together or not at all;
- hand out a strictly increasing sequence (`Event.seq`), with `received_at` values and
  event ids that never decrease along it within one store instance (one process); and,
  across processes sharing a database, along each lane: `seq` is the FIFO order of a lane;
- answer lists newest first with opaque cursors (`encode_cursor`/`decode_cursor`).
The shared contract tests in tests/store run against every implementation.
"""

from __future__ import annotations

import abc
import base64
import binascii
from collections.abc import Callable, Sequence

from tidings.model import (
    Activity,
    Appended,
    Attempt,
    AttemptSample,
    Backlog,
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
    Settled,
    Swept,
    Upload,
)
from tidings.policy.counting import BACKLOG_EXACT_UP_TO
from tidings.policy.inbox import everyone
from tidings.policy.outcome import FailurePlan

Reaches = Callable[[str], bool]  # names the users whose offsets are wanted


class StoreError(Exception):
    pass


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    """A uniqueness rule was broken; `field` names the input field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class StoreUnavailable(StoreError):
    """The database cannot be reached or cannot write right now; retrying may succeed."""


class InvalidCursor(StoreError):
    pass


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("s"):
            raise ValueError(cursor)
        return int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor(cursor) from exc


class Store(abc.ABC):
    """Durable state of Tidings. All methods are coroutines safe to call concurrently."""

    _offsets_wanted: tuple[tuple[Callable[[], bool], Callable[[], Reaches]], ...] = ()

    def want_offsets(self, anyone: Callable[[], bool], reaches: Callable[[], Reaches]) -> None:
        """Register who may want the (user, offset) pairs of the inbox messages an append
        writes (an API process's live pushes, issue 15): its hub, whose `anyone` answers
        no while no socket can be reached, and whose `reaches` gives the predicate naming
        the users a push can reach (`policy.inbox.everyone` with the Redis relay). A
        socket opens in the hub before it reads the store, so a socket that misses a
        message's push reads it."""
        self._offsets_wanted = (*self._offsets_wanted, (anyone, reaches))

    def offsets_wanted(self) -> Reaches | None:
        """Asked once an append has committed: whose offsets `Appended.inbox` must hold.
        None: nobody's, while no registered hub can reach anyone (a store may then
        answer every `Appended.inbox` empty; the messages are written all the same);
        else a predicate over user ids (`everyone` with nothing registered). A store may
        name more users than asked for, never fewer."""
        if not self._offsets_wanted:
            return everyone
        live = [reaches() for anyone, reaches in self._offsets_wanted if anyone()]
        if not live:
            return None
        if any(reaches is everyone for reaches in live):
            return everyone
        if len(live) == 1:
            return live[0]
        return lambda user: any(reaches(user) for reaches in live)

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a query."""

    # True when `listen` hears every process's new work and destination changes (PostgreSQL's
    # NOTIFY): Redis wake-ups would only repeat each one, a claim round more per ingest.
    announces: bool = False

    async def listen(
        self, on_work: Callable[[], None], on_destinations: Callable[[], None]
    ) -> None:
        """Call `on_work` when another process may have made deliveries due, and
        `on_destinations` when one changed destinations, until `close`. A store without
        such notifications does nothing: workers then find work by polling."""
        return None

    # -- small key/value facts (the API key hash, ...)
    @abc.abstractmethod
    async def get_meta(self, key: str) -> str | None: ...

    @abc.abstractmethod
    async def set_meta_if_absent(self, key: str, value: str) -> str:
        """Store `value` unless `key` exists; answer the value now stored."""

    @abc.abstractmethod
    async def delete_expired_meta(self, prefix: str, now: int) -> int:
        """Delete the facts whose key starts with `prefix` and whose value, an integer
        expiry, is at most `now` (the dashboard's sign-outs); answer how many."""

    # -- ingest
    @abc.abstractmethod
    async def append_events(self, events: Sequence[EventIn]) -> list[Appended]:
        """Persist events with their fan-out, all or nothing; durable when this returns.

        An event whose idempotency_key is already stored (or repeats an earlier event of
        the same call) creates nothing and answers the first event, `duplicate=True`.
        Each recipient of an event written gets an inbox message at the user's next
        offset; `Appended.inbox` names them, or those of the users `offsets_wanted`
        names (none while it answers None).
        """

    async def append_events_pipelined(
        self, events: Sequence[EventIn], committed: Callable[[], None]
    ) -> list[Appended]:
        """`append_events`, calling `committed()` (on the caller's event loop) as soon as
        the events are committed, which may be before they are durable and answered. A
        caller that appends in order (a file's chunks) may queue its next append then: it
        commits after this one, and is answered after it too. Not called if the append
        fails. By default, when the append returns (commit and durability coincide)."""
        appended = await self.append_events(events)
        committed()
        return appended

    # -- destinations
    @abc.abstractmethod
    async def create_destination(self, spec: DestinationSpec, secret: str) -> Destination:
        """Raise Conflict("name") when the name is taken."""

    @abc.abstractmethod
    async def get_destination(self, ref: str) -> Destination | None:
        """By id, or by name when `ref` is not an id."""

    @abc.abstractmethod
    async def list_destinations(self, limit: int, cursor: str | None) -> Page[Destination]: ...

    @abc.abstractmethod
    async def update_destination(self, destination_id: str, spec: DestinationSpec) -> Destination:
        """Replace the spec; raise NotFound, or Conflict("name")."""

    @abc.abstractmethod
    async def delete_destination(self, destination_id: str) -> bool:
        """Delete it and its deliveries; False when there was none."""

    @abc.abstractmethod
    async def rotate_secret(
        self, destination_id: str, new_secret: str, grace_until: int
    ) -> Destination:
        """Make `new_secret` current; the old one stays valid until `grace_until` (µs)."""

    # -- reads
    @abc.abstractmethod
    async def get_event(self, event_id: str) -> Event | None: ...

    @abc.abstractmethod
    async def list_events(
        self,
        topic: str | None,
        limit: int,
        cursor: str | None,
        *,
        key: str | None = None,
        correlation_id: str | None = None,
    ) -> Page[Event]:
        """Newest first. `topic` is exact, or a pattern ending in `*` (prefix match);
        `correlation_id` matches its root (the event whose id it is) and its followers."""

    @abc.abstractmethod
    async def correlated_events(self, correlation_id: str, limit: int) -> list[EventLink]:
        """The events whose correlation_id is `correlation_id`, and the one whose id it is
        (a root names no correlation; its followers name its id), oldest first, at most
        `limit`, without payloads."""

    @abc.abstractmethod
    async def event_link(self, event_id: str) -> EventLink | None:
        """One event without its payload."""

    @abc.abstractmethod
    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    @abc.abstractmethod
    async def list_deliveries(
        self,
        *,
        destination_id: str | None = None,
        state: str | None = None,
        event_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Delivery]: ...

    @abc.abstractmethod
    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        """Every recorded attempt of a delivery, oldest first."""

    # -- the delivery engine
    @abc.abstractmethod
    async def all_destinations(self) -> list[Destination]: ...

    @abc.abstractmethod
    async def claim(self, owner: str, asks: Sequence[ClaimAsk], now: int) -> ClaimBatch:
        """Lease due lane heads to `owner`, earliest due first, at most `limit` per ask.

        Only deliveries that hold their lane are claimable, so a fifo lane never has two
        in flight. A claimed delivery turns `in_flight`, its `attempts` grows by one and
        `lease_owner`/`lease_expires_at` are set. Two concurrent callers never receive the
        same delivery.
        """

    @abc.abstractmethod
    async def complete(self, completions: Sequence[Completion], pause_after: int) -> Completed:
        """Record attempts and move deliveries on, fenced by lease owner, in one commit.

        A completion whose delivery is no longer in flight under `owner` records its attempt
        but changes nothing else. `release_lane` promotes the lane's next delivery. An
        active destination whose run of consecutive failures reaches `pause_after` (> 0),
        or one an applied completion says is `gone` (that text its reason), is paused; the
        answer lists those as stored after the write.
        """

    @abc.abstractmethod
    async def expired_leases(
        self, now: int, limit: int, destination_ids: Sequence[str] | None = None
    ) -> list[LostLease]:
        """In-flight deliveries whose lease expired by `now`, earliest first, of the
        given destinations only when `destination_ids` is not None."""

    @abc.abstractmethod
    async def set_destination_state(
        self, destination_id: str, state: DestinationState, reason: str | None
    ) -> Destination:
        """Pause or resume; resuming clears the failure run. Raise NotFound."""

    @abc.abstractmethod
    async def retry_delivery(self, delivery_id: str, now: int) -> Delivery:
        """Queue a dead, delivered or scheduled delivery for a fresh run of attempts.

        It goes back into its lane in event order: at once if the lane is free (or it still
        holds it) or its head is younger and has not started (that head waits again), else
        behind the lane's head, before every younger waiting delivery. Raise NotFound, or
        Conflict("state") when pending or in flight.
        """

    @abc.abstractmethod
    async def retry_deliveries(self, delivery_ids: Sequence[str], now: int) -> Retried:
        """`retry_delivery` for many, in one commit, oldest event first whatever order the
        ids come in; unknown ids and ones pending or in flight already are listed."""

    @abc.abstractmethod
    async def replay(
        self,
        destination_id: str,
        state: str,
        since: int | None,
        until: int | None,
        now: int,
        limit: int,
    ) -> int:
        """`retry_delivery` for up to `limit` of a destination's deliveries in `state`
        created in [since, until); answer how many."""

    @abc.abstractmethod
    async def purge_delivery(self, delivery_id: str) -> bool:
        """Delete a dead delivery (a blocked lane moves on); False when there was none.
        Raise Conflict("state") when it is not dead."""

    @abc.abstractmethod
    async def sweep(self, cutoff: int, limit: int, after: int = 0) -> Swept:
        """Look at the next `limit` events (by seq) after seq `after` received before
        `cutoff`, and delete those whose deliveries are all delivered (or that have none)
        and that no inbox message names. The events kept are stepped over: a pass walks
        the table once, `after` = the last chunk's `upto`, whatever it keeps."""

    @abc.abstractmethod
    async def save_upload(self, upload: Upload) -> None:
        """Record an upload's progress (insert or replace, by id)."""

    @abc.abstractmethod
    async def get_upload(self, upload_id: str) -> Upload | None: ...

    @abc.abstractmethod
    async def list_uploads(self, limit: int, before: str | None) -> list[Upload]:
        """Uploads newest first (their ids sort by time), those with ids below `before`."""

    # -- inboxes (issue 15): `append_events` writes one message per recipient
    # at the user's next offset (1, 2, 3, ... per user, no gap, never reused), in the
    # event's own transaction; the offsets go back in `Appended.inbox`.
    inbox_max: int = 10_000  # messages kept per user, the oldest dropped first

    @abc.abstractmethod
    async def read_inbox(self, user_id: str, after: int, limit: int) -> InboxPage:
        """A user's messages with offsets above `after`, oldest first, at most `limit`;
        `top` is at least the last message's offset (0 for a user never written to)."""

    @abc.abstractmethod
    async def ack_inbox(self, user_id: str, up_to: int, now: int) -> int:
        """Acknowledge a user's messages up to `up_to` (never past the top, never
        backwards); answer the user's ack offset now."""

    @abc.abstractmethod
    async def sweep_inbox(self, acked_before: int, received_before: int, limit: int) -> int:
        """Delete up to `limit` messages acked before `acked_before` and up to `limit`
        received before `received_before`; answer how many."""

    # -- pull groups (issue 16): a group's deliveries are leased by consumers, not claimed
    # by workers. A lease is the lane rule of `claim` (only heads; two callers never get
    # one delivery), under a fresh token per call stored as the lease owner; every other
    # operation is fenced by (delivery, token, unexpired), so one that names a lease that
    # expired or moved on changes nothing and is answered `lost`.
    @abc.abstractmethod
    async def lease_group(self, destination_id: str, limit: int, lease_us: int, now: int) -> Leased:
        """Lease at most `limit` due heads of the group, earliest due first, until
        `now + lease_us`: each turns `in_flight` and its `attempts` grows by one."""

    @abc.abstractmethod
    async def ack_leases(self, destination_id: str, refs: Sequence[LeaseRef], now: int) -> Settled:
        """Held leases are delivered (an attempt `delivered` recorded; the lane moves on)."""

    @abc.abstractmethod
    async def nack_leases(
        self,
        destination_id: str,
        refs: Sequence[LeaseRef],
        plan: FailurePlan,
        error: str | None,
        now: int,
    ) -> Settled:
        """Held leases failed their attempt (outcome `nacked`, `error` its text): each is
        scheduled or dead as `plan.after(attempt)` says."""

    @abc.abstractmethod
    async def extend_leases(
        self, destination_id: str, refs: Sequence[LeaseRef], lease_us: int, now: int
    ) -> Settled:
        """Held leases now expire at `now + lease_us`."""

    @abc.abstractmethod
    async def expire_leases(
        self, destination_id: str, plan: FailurePlan, now: int, limit: int
    ) -> Settled:
        """Up to `limit` of the group's leases expired by `now` failed their attempt
        (outcome `lost`): scheduled or dead as `plan.after(attempt)` says; `ok` lists them."""

    @abc.abstractmethod
    async def deliveries_of_events(self, event_ids: Sequence[str]) -> list[Delivery]:
        """Every delivery of these events (one query, for a chain's outcomes), by event
        then destination order."""

    backlog_exact_up_to: int = BACKLOG_EXACT_UP_TO

    @abc.abstractmethod
    async def backlog(self) -> list[Backlog]:
        """Undelivered work per destination (pending, scheduled, in flight; oldest).
        Each count is exact up to `backlog_exact_up_to`; above, an estimate from how
        densely the first that many lie along seq (policy/counting.py), so the read
        costs the same with a million pending as with ten thousand."""

    # -- the dashboard's aggregates (issue 17): each an index range or a key lookup, so
    # they answer as fast with a million deliveries as with ten.
    @abc.abstractmethod
    async def activity(
        self, after_event_seq: int | None, after_attempt_seq: int | None
    ) -> Activity:
        """The last event and attempt seq, the number of events after `after_event_seq` and
        the attempts after `after_attempt_seq` by outcome (zero and empty when None)."""

    @abc.abstractmethod
    async def event_seq_at(self, at: int) -> int | None:
        """The seq of the first event received at or after `at` (µs), None when there is
        none: a time range of events as a range of seq (received_at grows with seq)."""

    @abc.abstractmethod
    async def recent_attempts(self, limit: int) -> list[AttemptSample]:
        """The newest `limit` attempts of all destinations, newest first."""

    @abc.abstractmethod
    async def count_deliveries(
        self, destination_id: str, state: str, since: int | None, until: int | None, cap: int
    ) -> int:
        """How many of a destination's deliveries in `state` were created in [since,
        until), counting no further than `cap`."""


def first_per_delivery(completions: Sequence[Completion]) -> list[Completion]:
    """One completion per delivery, the first: a later one for the same delivery in one
    batch (a lease taken for lost while its outcome waited) must not overwrite it."""
    seen: set[str] = set()
    out = []
    for c in completions:
        if c.delivery_id not in seen:
            seen.add(c.delivery_id)
            out.append(c)
    return out


def open_store(database_url: str) -> Store:
    """Build (not yet open) the store a database URL names."""
    if database_url.startswith("sqlite:///"):
        from tidings.store.sqlite import SQLiteStore

        return SQLiteStore(database_url.removeprefix("sqlite:///"))
    if database_url.startswith(("postgresql://", "postgres://")):
        from tidings.store.postgres import PostgresStore

        return PostgresStore(database_url)
    raise StoreError(
        f"unsupported database URL {database_url!r}: use sqlite:///PATH or postgresql://..."
    )
