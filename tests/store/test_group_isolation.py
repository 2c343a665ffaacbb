"""A request whose rows the database refuses fails alone, on both stores.

Ingest requests from many clients at once share commits (SQLite's writer runs every job
waiting in one transaction, merging consecutive appends into one statement); PostgreSQL
runs each in a transaction of its own. Either way, a member that fails must take none of
its neighbours with it: each caller gets its own answer, every acknowledged event is in
the store afterwards and nothing of the refused one is.

The poison is sent to the store directly (the API's validation refuses all of it now),
as a stand-in for any row that fails inside a commit: an event whose key has a lone
surrogate (no UTF-8 encoder writes it: refused on the way to either database), one with
no key at all (SQLite's NOT NULL refuses the row inside the group's transaction), and on
PostgreSQL one whose topic holds a NUL (the server refuses it in any `text`).
"""

from __future__ import annotations

import asyncio

import msgspec

from tidings.model import Appended, Delivery, Event, EventIn, WebhookSpec
from tidings.store.base import Store
from tidings.store.postgres import PostgresStore

CLIENTS = 32
REQUESTS = 20  # per client
POISON_EVERY = 10


def is_poison(client: int, n: int) -> bool:
    """One request in ten; the clients send in step, so each round's commit holds a few
    poisoned requests among good ones (on SQLite, one group of 32)."""
    return (client + n) % POISON_EVERY == POISON_EVERY - 1


def good(client: int, n: int) -> list[EventIn]:
    """A request of 1 to 3 events, keyed by client and request (lane `c<client>`)."""
    return [
        EventIn(
            topic="order.created",
            key=f"c{client}",
            payload=msgspec.Raw(b'{"client": %d, "n": %d, "i": %d}' % (client, n, i)),
            idempotency_key=f"c{client}-r{n}-e{i}",
        )
        for i in range(1 + (client + n) % 3)
    ]


def poisons(store: Store) -> list[EventIn]:
    bad = [
        EventIn(topic="order.created", key="c-\ud800", payload=msgspec.Raw(b"{}")),
        EventIn(topic="order.created", key=None, payload=msgspec.Raw(b"{}")),  # type: ignore[arg-type]
    ]
    if isinstance(store, PostgresStore):
        bad.append(EventIn(topic="order.created\x00", key="c-nul", payload=msgspec.Raw(b"{}")))
    return bad


def poison(client: int, n: int, kinds: list[EventIn]) -> list[EventIn]:
    """A good event beside one the store cannot write: the request fails as a whole."""
    return [*good(client, n)[:1], kinds[(client + n) % len(kinds)]]


async def every_event(store: Store) -> list[Event]:
    items: list[Event] = []
    cursor = None
    for _ in range(100):  # pages of 1000: far more than a test stores
        page = await store.list_events(None, 1000, cursor)
        items.extend(page.items)
        if (cursor := page.next) is None:
            return items
    raise AssertionError("more pages than a test stores")


async def every_delivery(store: Store) -> list[Delivery]:
    items: list[Delivery] = []
    cursor = None
    for _ in range(100):
        page = await store.list_deliveries(limit=1000, cursor=cursor)
        items.extend(page.items)
        if (cursor := page.next) is None:
            return items
    raise AssertionError("more pages than a test stores")


async def test_a_failing_request_fails_alone_among_concurrent_clients(store: Store) -> None:
    await store.create_destination(
        WebhookSpec(url="https://example.com/h", topics=["order.*"]),
        "whsec_" + "a" * 32,
    )
    kinds = poisons(store)
    acknowledged: list[tuple[EventIn, Appended]] = []
    refused: list[list[EventIn]] = []

    async def client(c: int) -> None:
        for n in range(REQUESTS):
            bad = is_poison(c, n)
            events = poison(c, n, kinds) if bad else good(c, n)
            try:
                appended = await asyncio.wait_for(store.append_events(events), 30)
            except Exception:
                assert bad, f"client {c} request {n} failed: a neighbour took it down"
                refused.append(events)
                continue
            assert not bad, f"client {c} request {n}: the poison was stored"
            assert len(appended) == len(events)
            acknowledged.extend(zip(events, appended, strict=True))

    await asyncio.wait_for(asyncio.gather(*(client(c) for c in range(CLIENTS))), 120)

    assert len(refused) == sum(is_poison(c, n) for c in range(CLIENTS) for n in range(REQUESTS))
    stored = await every_event(store)
    by_id = {e.id: e for e in stored}
    assert len(by_id) == len(acknowledged)
    for event, appended in acknowledged:
        assert not appended.duplicate
        kept = by_id[appended.id]
        assert (kept.key, bytes(kept.payload)) == (event.key, bytes(event.payload))
        assert kept.idempotency_key == event.idempotency_key
    # Nothing of a refused request: not its good first event either.
    kept_keys = {e.idempotency_key for e in stored}
    assert not kept_keys & {e.idempotency_key for events in refused for e in events}
    assert all(e.key.startswith("c") and e.key[1:].isdigit() for e in stored)
    assert all(e.topic == "order.created" for e in stored)
    # Every stored event has its one delivery; per lane, seq follows each client's order.
    deliveries = await every_delivery(store)
    assert sorted(d.event_id for d in deliveries) == sorted(by_id)
    for c in range(CLIENTS):
        mine = [e for e in sorted(stored, key=lambda e: e.seq) if e.key == f"c{c}"]
        assert [e.idempotency_key for e in mine] == [
            ev.idempotency_key for ev, _ in acknowledged if ev.key == f"c{c}"
        ]
