"""Rows to domain structs, shared by every SQL store: each backend selects the same
columns in the same order (see its `sql/<dialect>.sql`). Must never do I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar

import msgspec

from tidings.model import (
    Attempt,
    Backlog,
    Delivery,
    Destination,
    DestinationSpec,
    Event,
    EventLink,
    InboxMessage,
    InboxPage,
    Page,
    Secret,
)
from tidings.store.base import decode_cursor, encode_cursor

T = TypeVar("T")


class Row(Protocol):
    """A result row: a tuple (sqlite3) or an asyncpg Record, read by position."""

    def __getitem__(self, index: int, /) -> Any: ...

    def __len__(self) -> int: ...


_spec_decoder = msgspec.json.Decoder(DestinationSpec)
_secrets_decoder = msgspec.json.Decoder(list[Secret])


def destination_row(row: Row) -> Destination:
    return Destination(
        id=row[0],
        spec=_spec_decoder.decode(row[1]),
        secrets=_secrets_decoder.decode(row[2]),
        state=row[3],
        created_at=row[4],
        updated_at=row[5],
        paused_reason=row[6],
    )


def event_row(row: Row) -> Event:
    return Event(
        seq=row[0],
        id=row[1],
        topic=row[2],
        key=row[3],
        payload=msgspec.Raw(row[4]),
        recipients=json.loads(row[5]) if row[5] else [],
        idempotency_key=row[6],
        causation_id=row[7],
        correlation_id=row[8],
        received_at=row[9],
    )


def event_link_row(row: Row) -> EventLink:
    return EventLink(
        seq=row[0],
        id=row[1],
        topic=row[2],
        key=row[3],
        causation_id=row[4],
        correlation_id=row[5],
        received_at=row[6],
    )


def delivery_row(row: Row) -> Delivery:
    return Delivery(
        seq=row[0],
        id=row[1],
        event_id=row[2],
        destination_id=row[3],
        key=row[4],
        state=row[5],
        attempts=row[6],
        next_attempt_at=row[7],
        last_error=row[8],
        created_at=row[9],
        updated_at=row[10],
    )


def page_of(items: list[T], seqs: list[int], limit: int) -> Page[T]:
    if len(items) > limit:
        return Page(items=items[:limit], next=encode_cursor(seqs[limit - 1]))
    return Page(items=items, next=None)


def cursor_seq(text: str | None) -> int | None:
    return None if text is None else decode_cursor(text)


def attempt_row(row: Row) -> Attempt:
    return Attempt(
        at=row[0],
        outcome=row[1],
        status_code=row[2],
        latency_ms=row[3],
        error=row[4],
        response_body=row[5],
    )


def backlog_of(rows: Sequence[Row], estimates: dict[tuple[str, str], int]) -> list[Backlog]:
    """Rows of (destination_id, state, count, oldest created_at, ...) to one Backlog each,
    the count of a (destination_id, state) in `estimates` replaced by that estimate."""
    by_destination: dict[str, dict[str, Any]] = {}
    for row in rows:
        destination_id, state, count, oldest = row[0], row[1], row[2], row[3]
        count = estimates.get((destination_id, state), count)
        entry = by_destination.setdefault(
            destination_id, {"pending": 0, "scheduled": 0, "in_flight": 0, "oldest": None}
        )
        entry[state] = count
        if entry["oldest"] is None or oldest < entry["oldest"]:
            entry["oldest"] = oldest
    return [
        Backlog(
            destination_id=d,
            pending=e["pending"],
            scheduled=e["scheduled"],
            in_flight=e["in_flight"],
            oldest_created_at=e["oldest"],
        )
        for d, e in by_destination.items()
    ]


def events_query(topic: str | None, key: str | None, correlation_id: str | None) -> str:
    """Which `list_events*` statement answers a listing with these filters (`topic` only
    when exact): the one that reads the range of its most selective index, the others
    applied to what it reads. A correlation is small, a key's events fewer than a topic's."""
    if correlation_id is not None:
        return "list_events_of_correlation"
    if key is not None:
        return "list_events_of_key"
    if topic is not None:
        return "list_events_of_topic"
    return "list_events"


def deliveries_query(destination_id: str | None, state: str | None, event_id: str | None) -> str:
    """Which `list_deliveries*` statement answers a listing with these filters, so that the
    database reads an index range instead of every delivery newest first:
    - `list_deliveries_of_event`: the event's own deliveries;
    - `list_deliveries_by_destination_state`: one range of deliveries_by_destination;
    - `list_deliveries_by_state`: such a range per destination (not for `delivered`, which
      is most of the table: newest first finds them at once);
    - `list_deliveries`: newest first, filtered."""
    if event_id is not None:
        return "list_deliveries_of_event"
    if destination_id is not None and state is not None:
        return "list_deliveries_by_destination_state"
    if state is not None and state != "delivered":
        return "list_deliveries_by_state"
    return "list_deliveries"


def queued_behind_heads(holders: Iterable[Row]) -> list[int]:
    """An unordered destination turns fifo: of its lane holders, rows of (seq, lane_key,
    state) ordered by lane, moving or blocking ones (in flight, scheduled, dead) first, then
    pending ones by event order, the seqs that must queue behind their lane's first."""
    heads: set[str] = set()
    queued: list[int] = []
    for row in holders:
        seq, lane_key, state = row[0], row[1], row[2]
        if lane_key not in heads:
            heads.add(lane_key)
        elif state == "pending":
            queued.append(seq)
    return queued


def inbox_page(rows: Sequence[Row], state: Row | None) -> InboxPage:
    """`inbox_after` rows and the user's `inbox_user` row (None: never written to)."""
    messages = [
        InboxMessage(
            offset=r[0], id=r[1], topic=r[2], payload=msgspec.Raw(bytes(r[3])), received_at=r[4]
        )
        for r in rows
    ]
    top, acked = (0, 0) if state is None else (state[0], state[1])
    if messages:
        top = max(top, messages[-1].offset)
    return InboxPage(messages=messages, top=top, acked=acked)
