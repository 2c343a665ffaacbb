"""Contract tests of the `Store` interface.

Every test here uses only the `store` fixture and the methods of `tidings.store.base.Store`,
so each backend (SQLite now, PostgreSQL later) must pass all of them unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from tests.conftest import make_store
from tidings.model import (
    Answer,
    AttemptResult,
    ClaimAsk,
    Completion,
    Delivery,
    Destination,
    DestinationSpec,
    Event,
    EventIn,
    RetryPolicy,
    WebhookSpec,
)
from tidings.store.base import Conflict, InvalidCursor, NotFound, Store, StoreError
from tidings.timeutil import US, now_us

# --------------------------------------------------------------------------- helpers


def spec(
    topics: Sequence[str] = ("order.created",),
    *,
    name: str | None = None,
    filter: dict[str, object] | None = None,
    enabled: bool = True,
) -> DestinationSpec:
    return WebhookSpec(
        url="https://example.com/hook",
        topics=list(topics),
        name=name,
        filter=filter,
        enabled=enabled,
    )


def ev(
    topic: str = "order.created",
    *,
    key: str = "",
    payload: bytes = b"{}",
    idempotency_key: str | None = None,
) -> EventIn:
    return EventIn(
        topic=topic, key=key, payload=msgspec.Raw(payload), idempotency_key=idempotency_key
    )


async def all_events(store: Store, topic: str | None = None) -> list[Event]:
    out: list[Event] = []
    cursor: str | None = None
    while True:
        page = await store.list_events(topic, 1000, cursor)
        out.extend(page.items)
        if page.next is None:
            return out
        cursor = page.next


async def all_deliveries(store: Store, **filters: str) -> list[Delivery]:
    out: list[Delivery] = []
    cursor: str | None = None
    while True:
        page = await store.list_deliveries(limit=1000, cursor=cursor, **filters)
        out.extend(page.items)
        if page.next is None:
            return out
        cursor = page.next


async def all_destinations(store: Store, limit: int = 1000) -> list[Destination]:
    out: list[Destination] = []
    cursor: str | None = None
    while True:
        page = await store.list_destinations(limit, cursor)
        out.extend(page.items)
        if page.next is None:
            return out
        cursor = page.next


# --------------------------------------------------------------------------- ingest


async def test_append_answers_ids_in_order_with_increasing_seq(store: Store) -> None:
    first = await store.append_events([ev(key="a"), ev(key="b"), ev(key="c")])
    second = await store.append_events([ev(key="d"), ev(key="e")])
    appended = [*first, *second]
    assert [a.duplicate for a in appended] == [False] * 5
    assert len({a.id for a in appended}) == 5
    assert all(a.id.startswith("evt_") for a in appended)

    events = [await store.get_event(a.id) for a in appended]
    assert all(e is not None for e in events)
    stored = [e for e in events if e is not None]
    assert [e.key for e in stored] == ["a", "b", "c", "d", "e"]
    seqs = [e.seq for e in stored]
    assert all(x < y for x, y in itertools.pairwise(seqs)), seqs
    received = [e.received_at for e in stored]
    assert all(x <= y for x, y in itertools.pairwise(received)), received
    assert [a.received_at for a in appended] == received
    # Ids sort in the same order as seq.
    assert sorted(a.id for a in appended) == [a.id for a in appended]


async def test_append_stores_every_field(store: Store) -> None:
    event = EventIn(
        topic="order.created",
        key="user-1",
        payload=msgspec.Raw(b'{"total": 12.5, "items": [1, 2]}'),
        recipients=["user-1", "user-2"],
        idempotency_key="idem-1",
        causation_id="evt_cause",
        correlation_id="corr-1",
    )
    (appended,) = await store.append_events([event])
    stored = await store.get_event(appended.id)
    assert stored is not None
    assert stored.id == appended.id
    assert stored.topic == "order.created"
    assert stored.key == "user-1"
    assert msgspec.json.decode(bytes(stored.payload)) == {"total": 12.5, "items": [1, 2]}
    assert stored.recipients == ["user-1", "user-2"]
    assert stored.idempotency_key == "idem-1"
    assert stored.causation_id == "evt_cause"
    assert stored.correlation_id == "corr-1"
    assert stored.received_at == appended.received_at
    assert abs(stored.received_at - now_us()) < 60 * US

    (plain,) = await store.append_events([EventIn(topic="x")])
    bare = await store.get_event(plain.id)
    assert bare is not None
    assert bare.key == ""
    assert bytes(bare.payload) == b"null"
    assert bare.recipients == []
    assert bare.idempotency_key is None
    assert bare.causation_id is None
    assert bare.correlation_id is None


EXACT_PAYLOADS = [
    b'{ "a" :\t[1 , 2.50, -0.0e+0 ],\r\n"b": null }\n',
    b'"caf\xc3\xa9 \xf0\x9f\x98\x80 \\u00e9 \\ud83d\\ude00 \\u0000 \\" \\\\ \\/"',
    b"[]",
    b"  42  ",
    b'{"deep": [[[[{"x": "' + "\u4e2d\u6587".encode() + b'"}]]]]}',
]


async def test_payload_kept_byte_for_byte(store: Store) -> None:
    """The payload is stored (and later forwarded) as the bytes received: whitespace,
    escapes and number spellings included, whether events come alone or together."""
    singles = await asyncio.gather(*(store.append_events([ev(payload=p)]) for p in EXACT_PAYLOADS))
    batch = await store.append_events([ev(payload=p) for p in EXACT_PAYLOADS])
    for appended in ([a for (a,) in singles], batch):
        for a, payload in zip(appended, EXACT_PAYLOADS, strict=True):
            stored = await store.get_event(a.id)
            assert stored is not None
            assert bytes(stored.payload) == payload


async def test_event_ids_sort_like_seq_across_many_calls(store: Store) -> None:
    appended = []
    for _ in range(30):
        appended.extend(await store.append_events([ev(), ev()]))
    events = await all_events(store)
    assert len(events) == 60
    by_seq = sorted(events, key=lambda e: e.seq)
    assert [e.id for e in by_seq] == sorted(e.id for e in events)
    assert [e.id for e in by_seq] == [a.id for a in appended]
    received = [e.received_at for e in by_seq]
    assert received == sorted(received)


async def test_empty_store_reads(store: Store) -> None:
    assert await store.get_event("evt_01ARZ3NDEKTSV4RRFFQ69G5FAV") is None
    assert await store.get_event("nonsense") is None
    assert await store.get_delivery("dlv_01ARZ3NDEKTSV4RRFFQ69G5FAV") is None
    assert await store.get_delivery("nonsense") is None
    assert await store.get_destination("dst_01ARZ3NDEKTSV4RRFFQ69G5FAV") is None
    assert await store.get_destination("no-such-name") is None
    events = await store.list_events(None, 10, None)
    assert (events.items, events.next) == ([], None)
    deliveries = await store.list_deliveries()
    assert (deliveries.items, deliveries.next) == ([], None)
    destinations = await store.list_destinations(10, None)
    assert (destinations.items, destinations.next) == ([], None)
    await store.ping()


# --------------------------------------------------------------------------- fan-out


async def test_fan_out_only_to_matching_enabled_destinations(store: Store) -> None:
    exact = await store.create_destination(spec(["order.created"], name="exact"), "whsec_a")
    wildcard = await store.create_destination(spec(["order.*"], name="wild"), "whsec_b")
    everything = await store.create_destination(spec(["*"], name="all"), "whsec_c")
    other = await store.create_destination(spec(["user.created"], name="other"), "whsec_d")
    disabled = await store.create_destination(
        spec(["*"], name="disabled", enabled=False), "whsec_e"
    )
    gold = await store.create_destination(
        spec(["order.*"], name="gold", filter={"tier": "gold"}), "whsec_f"
    )
    multi = await store.create_destination(
        spec(["order.created", "order.*"], name="multi"), "whsec_g"
    )

    before = now_us()
    appended = await store.append_events(
        [
            ev("order.created", key="k1", payload=b'{"tier": "gold"}'),
            ev("order.created", key="k2", payload=b'{"tier": "silver"}'),
            ev("order", key="k3"),
            ev("user.created", key="k4"),
            ev("orders.created", key="k5"),
        ]
    )
    after = now_us()
    expected = [
        {exact.id, wildcard.id, everything.id, gold.id, multi.id},
        {exact.id, wildcard.id, everything.id, multi.id},
        {everything.id},
        {everything.id, other.id},
        {everything.id},
    ]
    assert [a.deliveries for a in appended] == [len(s) for s in expected]
    for a, want in zip(appended, expected, strict=True):
        deliveries = await all_deliveries(store, event_id=a.id)
        assert len(deliveries) == len(want), "one delivery per destination, never two"
        assert {d.destination_id for d in deliveries} == want
        event = await store.get_event(a.id)
        assert event is not None
        for d in deliveries:
            assert d.id.startswith("dlv_")
            assert d.event_id == a.id
            assert d.state == "pending"
            assert d.key == event.key
            assert d.attempts == 0
            assert d.last_error is None
            assert d.next_attempt_at is not None
            assert before <= d.next_attempt_at <= after + US
            assert await store.get_delivery(d.id) == d
    assert await all_deliveries(store, destination_id=disabled.id) == []
    total = sum(len(s) for s in expected)
    assert len(await all_deliveries(store)) == total


async def test_fan_out_of_many_events_of_a_few_topics_in_one_call(store: Store) -> None:
    """No destination has a filter: each event of a topic goes where the others of its
    topic go, and only there."""
    orders = await store.create_destination(spec(["order.*"], name="orders"), "whsec_a")
    both = await store.create_destination(spec(["order.paid", "user.*"], name="b"), "whsec_b")
    topics = ["order.paid", "user.created", "order.created", "nobody"] * 25
    appended = await store.append_events([ev(t, key=f"k{i}") for i, t in enumerate(topics)])
    want = {
        "order.paid": {orders.id, both.id},
        "user.created": {both.id},
        "order.created": {orders.id},
        "nobody": set(),
    }
    for topic, a in zip(topics, appended, strict=True):
        got = {d.destination_id for d in await all_deliveries(store, event_id=a.id)}
        assert (a.deliveries, got) == (len(want[topic]), want[topic])


async def test_destination_changes_apply_to_the_next_append(store: Store) -> None:
    d = await store.create_destination(spec(["a.b"]), "whsec_a")
    (first,) = await store.append_events([ev("a.b")])
    assert first.deliveries == 1
    await store.update_destination(d.id, spec(["a.b"], enabled=False))
    (second,) = await store.append_events([ev("a.b")])
    assert second.deliveries == 0
    await store.update_destination(d.id, spec(["a.*"]))
    (third,) = await store.append_events([ev("a.b")])
    assert third.deliveries == 1
    await store.update_destination(d.id, spec(["a.*"], filter={"x": {"$exists": True}}))
    no, yes = await store.append_events([ev("a.b"), ev("a.b", payload=b'{"x": 0}')])
    assert (no.deliveries, yes.deliveries) == (0, 1)
    ids = {x.event_id for x in await all_deliveries(store, destination_id=d.id)}
    assert ids == {first.id, third.id, yes.id}


# --------------------------------------------------------------------------- idempotency


async def test_repeated_idempotency_key_creates_nothing(store: Store) -> None:
    await store.create_destination(spec(["order.*"]), "whsec_a")
    (first,) = await store.append_events([ev(key="u1", idempotency_key="k-1")])
    assert not first.duplicate
    assert first.deliveries == 1

    (again,) = await store.append_events(
        [ev(key="another", payload=b'{"other": 1}', idempotency_key="k-1")]
    )
    assert again.duplicate
    assert again.id == first.id
    assert again.received_at == first.received_at
    assert again.deliveries == first.deliveries
    assert len(await all_events(store)) == 1
    assert len(await all_deliveries(store)) == 1
    stored = await store.get_event(first.id)
    assert stored is not None
    assert stored.key == "u1"  # the first event wins; the repeat changed nothing


async def test_repeated_idempotency_key_within_one_call(store: Store) -> None:
    await store.create_destination(spec(["order.*"]), "whsec_a")
    out = await store.append_events(
        [
            ev(key="a", idempotency_key="same"),
            ev(key="b"),
            ev(key="c", idempotency_key="same"),
            ev(key="d", idempotency_key="other"),
        ]
    )
    assert [a.duplicate for a in out] == [False, False, True, False]
    assert out[2].id == out[0].id
    assert out[2].received_at == out[0].received_at
    assert out[2].deliveries == out[0].deliveries == 1
    assert len({out[0].id, out[1].id, out[3].id}) == 3
    events = await all_events(store)
    assert sorted(e.key for e in events) == ["a", "b", "d"]
    assert len(await all_deliveries(store)) == 3

    # ... and a later call repeating both keys creates nothing either.
    later = await store.append_events([ev(idempotency_key="other"), ev(idempotency_key="same")])
    assert [(a.id, a.duplicate) for a in later] == [(out[3].id, True), (out[0].id, True)]
    assert len(await all_events(store)) == 3
    assert len(await all_deliveries(store)) == 3

    # ... and in a call mixing stored keys, new ones and repeats, each is answered as such.
    mixed = await store.append_events(
        [
            ev(key="e", idempotency_key="new-1"),
            ev(idempotency_key="same"),
            ev(key="f", idempotency_key="new-1"),
            ev(key="g", idempotency_key="new-2"),
        ]
    )
    assert [a.duplicate for a in mixed] == [False, True, True, False]
    assert mixed[1].id == out[0].id and mixed[2].id == mixed[0].id
    assert sorted(e.key for e in await all_events(store)) == ["a", "b", "d", "e", "g"]
    assert len(await all_deliveries(store)) == 5


async def test_concurrent_repeats_of_one_key_store_one_event(store: Store) -> None:
    results = await asyncio.gather(
        *(store.append_events([ev(idempotency_key="race")]) for _ in range(20))
    )
    answers = [r[0] for r in results]
    assert len({a.id for a in answers}) == 1
    assert sum(not a.duplicate for a in answers) == 1
    assert len(await all_events(store)) == 1


# --------------------------------------------------------------------------- atomicity


async def test_a_failing_event_fails_the_whole_call(store: Store) -> None:
    # A filter makes the store decode the payload while routing; bad JSON makes it raise.
    await store.create_destination(spec(["order.*"], filter={"tier": "gold"}), "whsec_a")
    await store.create_destination(spec(["*"]), "whsec_b")
    (kept,) = await store.append_events([ev(payload=b'{"tier": "gold"}')])

    with pytest.raises((ValueError, StoreError)):
        await store.append_events(
            [
                ev(key="ok-1", payload=b'{"tier": "gold"}', idempotency_key="batch-1"),
                ev(key="ok-2"),
                ev(key="bad", payload=b"{bad"),
                ev(key="ok-3"),
            ]
        )

    assert [e.id for e in await all_events(store)] == [kept.id]
    deliveries = await all_deliveries(store)
    assert {d.event_id for d in deliveries} == {kept.id}
    assert len(deliveries) == 2
    # The idempotency key of the failed call was not kept either.
    (retried,) = await store.append_events(
        [ev(key="ok-1", payload=b'{"tier": "gold"}', idempotency_key="batch-1")]
    )
    assert not retried.duplicate
    assert retried.deliveries == 2


async def test_a_failing_call_does_not_disturb_concurrent_calls(store: Store) -> None:
    await store.create_destination(spec(["*"], filter={"n": {"$exists": True}}), "whsec_a")
    calls = [
        store.append_events([ev(key=f"k{i}", payload=b"{bad" if i % 5 == 2 else b'{"n": 1}')])
        for i in range(25)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [i for i in range(25) if i % 5 == 2]
    for r in results:
        if isinstance(r, BaseException):
            assert isinstance(r, ValueError | StoreError), r
    events = await all_events(store)
    assert sorted(e.key for e in events) == sorted(f"k{i}" for i in range(25) if i % 5 != 2)
    assert len(await all_deliveries(store)) == 20


# --------------------------------------------------------------------------- concurrency


async def test_200_concurrent_appends_all_succeed(store: Store) -> None:
    await store.create_destination(spec(["load.*"]), "whsec_a")
    results = await asyncio.gather(
        *(store.append_events([ev(f"load.t{i % 3}", key=f"k{i}")]) for i in range(200))
    )
    answers = [r[0] for r in results]
    assert all(not a.duplicate and a.deliveries == 1 for a in answers)
    ids = [a.id for a in answers]
    assert len(set(ids)) == 200

    events = await all_events(store)
    assert {e.id for e in events} == set(ids)
    by_id = {e.id: e for e in events}
    for i, a in enumerate(answers):
        assert by_id[a.id].key == f"k{i}"
        assert by_id[a.id].received_at == a.received_at
    assert len({e.seq for e in events}) == 200
    by_seq = sorted(events, key=lambda e: e.seq)
    assert [e.id for e in by_seq] == sorted(ids)
    received = [e.received_at for e in by_seq]
    assert received == sorted(received)
    for a in answers[::20]:
        assert await store.get_event(a.id) is not None
    assert len(await all_deliveries(store)) == 200


async def test_appends_racing_destination_changes_never_fail(store: Store) -> None:
    """Appends queued together with a destination delete/create/update all succeed, and
    no delivery ever points to a destination that no longer exists."""
    for round_ in range(5):
        doomed = await store.create_destination(spec(["race.*"]), "whsec_a")
        kept = await store.create_destination(spec(["race.*"]), "whsec_b")
        results = await asyncio.gather(
            store.append_events([ev("race.x")]),
            store.delete_destination(doomed.id),
            *(store.append_events([ev("race.x")]) for _ in range(5)),
            store.create_destination(spec(["race.*"], name=f"new-{round_}"), "whsec_c"),
            *(store.append_events([ev("race.x")]) for _ in range(5)),
            store.update_destination(kept.id, spec(["race.*"], enabled=False)),
            *(store.append_events([ev("race.x")]) for _ in range(5)),
        )
        assert results[1] is True
        assert await all_deliveries(store, destination_id=doomed.id) == []
        await store.delete_destination(kept.id)
    assert len(await all_events(store)) == 5 * 16
    existing = {d.id for d in await all_destinations(store)}
    assert {d.destination_id for d in await all_deliveries(store)} <= existing


# --------------------------------------------------------------------------- destinations


async def test_create_and_get_destination(store: Store) -> None:
    full = WebhookSpec(
        name="billing",
        url="https://example.com/hook",
        topics=["order.*", "invoice.paid"],
        filter={"amount": {"$in": [1, 2]}},
        ordering="none",
        on_dead="block",
        retry=RetryPolicy(max_attempts=3, initial_ms=100, multiplier=1.5, max_ms=1000, jitter=0),
        timeout_ms=2500,
        rate_limit_per_s=12.5,
        enabled=True,
    )
    before = now_us()
    created = await store.create_destination(full, "whsec_first")
    assert created.id.startswith("dst_")
    assert created.spec == full
    assert created.secret == "whsec_first"
    assert [s.value for s in created.secrets] == ["whsec_first"]
    assert created.secrets[0].expires_at is None
    assert created.state == "active"
    assert before <= created.created_at <= now_us()
    assert created.updated_at == created.created_at

    assert await store.get_destination(created.id) == created
    assert await store.get_destination("billing") == created
    assert await store.get_destination("Billing") is None

    unnamed_1 = await store.create_destination(spec(), "whsec_x")
    unnamed_2 = await store.create_destination(spec(), "whsec_y")
    assert unnamed_1.id != unnamed_2.id  # names are optional; many may have none


async def test_destination_name_is_unique(store: Store) -> None:
    await store.create_destination(spec(name="billing"), "whsec_a")
    with pytest.raises(Conflict) as info:
        await store.create_destination(spec(["other.topic"], name="billing"), "whsec_b")
    assert info.value.field == "name"
    assert len(await all_destinations(store)) == 1


async def test_list_destinations_pages_newest_first(store: Store) -> None:
    created = [await store.create_destination(spec(name=f"d{i}"), "whsec_a") for i in range(7)]
    newest_first = [d.id for d in reversed(created)]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.list_destinations(3, cursor)
        pages += 1
        assert len(page.items) <= 3
        seen.extend(d.id for d in page.items)
        if page.next is None:
            break
        assert len(page.items) == 3
        cursor = page.next
    assert pages == 3
    assert seen == newest_first

    whole = await store.list_destinations(7, None)
    assert [d.id for d in whole.items] == newest_first
    assert whole.next is None
    first = await store.list_destinations(1, None)
    assert [d.id for d in first.items] == newest_first[:1]
    assert first.next is not None
    with pytest.raises(InvalidCursor):
        await store.list_destinations(3, "not a cursor!")


async def test_update_destination(store: Store) -> None:
    a = await store.create_destination(spec(name="a"), "whsec_a")
    b = await store.create_destination(spec(name="b"), "whsec_b")

    new_spec = spec(["user.*"], name="a2", filter={"x": 1}, enabled=False)
    updated = await store.update_destination(a.id, new_spec)
    assert updated.id == a.id
    assert updated.spec == new_spec
    assert updated.secrets == a.secrets
    assert updated.created_at == a.created_at
    assert updated.updated_at >= a.updated_at
    assert await store.get_destination(a.id) == updated
    assert await store.get_destination("a2") == updated
    assert await store.get_destination("a") is None

    with pytest.raises(Conflict) as info:
        await store.update_destination(a.id, spec(name="b"))
    assert info.value.field == "name"
    assert await store.get_destination(a.id) == updated
    assert await store.get_destination(b.id) == b

    same_name = await store.update_destination(b.id, spec(["x.y"], name="b"))
    assert same_name.spec.topics == ["x.y"]

    with pytest.raises(NotFound):
        await store.update_destination("dst_01ARZ3NDEKTSV4RRFFQ69G5FAV", spec())


async def test_delete_destination_cascades(store: Store) -> None:
    gone = await store.create_destination(spec(["order.*"], name="gone"), "whsec_a")
    stays = await store.create_destination(spec(["order.*"], name="stays"), "whsec_b")
    appended = await store.append_events([ev(), ev()])
    assert [a.deliveries for a in appended] == [2, 2]
    doomed = await all_deliveries(store, destination_id=gone.id)
    assert len(doomed) == 2

    assert await store.delete_destination(gone.id) is True
    assert await store.get_destination(gone.id) is None
    assert await store.get_destination("gone") is None
    assert await all_deliveries(store, destination_id=gone.id) == []
    for d in doomed:
        assert await store.get_delivery(d.id) is None
    assert len(await all_deliveries(store, destination_id=stays.id)) == 2
    assert len(await all_events(store)) == 2  # events are not the destination's to delete
    assert [d.id for d in await all_destinations(store)] == [stays.id]

    assert await store.delete_destination(gone.id) is False
    assert await store.delete_destination("dst_01ARZ3NDEKTSV4RRFFQ69G5FAV") is False

    (later,) = await store.append_events([ev()])
    assert later.deliveries == 1
    assert [d.destination_id for d in await all_deliveries(store, event_id=later.id)] == [stays.id]

    # The name is free again.
    again = await store.create_destination(spec(name="gone"), "whsec_c")
    assert again.id != gone.id


async def test_rotate_secret(store: Store) -> None:
    d = await store.create_destination(spec(), "whsec_one")
    grace = now_us() + 3600 * US
    rotated = await store.rotate_secret(d.id, "whsec_two", grace)
    assert rotated.secret == "whsec_two"
    assert [(s.value, s.expires_at) for s in rotated.secrets] == [
        ("whsec_two", None),
        ("whsec_one", grace),
    ]
    assert rotated.spec == d.spec
    assert await store.get_destination(d.id) == rotated

    # A second rotation keeps the first grace period of the oldest secret.
    grace_2 = grace + 60 * US
    twice = await store.rotate_secret(d.id, "whsec_three", grace_2)
    assert [(s.value, s.expires_at) for s in twice.secrets] == [
        ("whsec_three", None),
        ("whsec_two", grace_2),
        ("whsec_one", grace),
    ]

    with pytest.raises(NotFound):
        await store.rotate_secret("dst_01ARZ3NDEKTSV4RRFFQ69G5FAV", "whsec_x", grace)


async def test_rotate_secret_drops_expired_secrets(store: Store) -> None:
    d = await store.create_destination(spec(), "whsec_one")
    past = now_us() - US
    first = await store.rotate_secret(d.id, "whsec_two", past)  # no grace at all
    assert [(s.value, s.expires_at) for s in first.secrets] == [
        ("whsec_two", None),
        ("whsec_one", past),
    ]
    grace = now_us() + 3600 * US
    second = await store.rotate_secret(d.id, "whsec_three", grace)
    assert [(s.value, s.expires_at) for s in second.secrets] == [
        ("whsec_three", None),
        ("whsec_two", grace),
    ]


# --------------------------------------------------------------------------- event reads


async def test_correlated_events(store: Store) -> None:
    (root,) = await store.append_events([ev("order.created")])

    def follow(cause: str, correlation: str | None) -> EventIn:
        return EventIn(topic="order.step", causation_id=cause, correlation_id=correlation)

    first = await store.append_events([follow(root.id, root.id), ev("unrelated")])
    # A root may also name a correlation of its own (an external key).
    (named,) = await store.append_events(
        [EventIn(topic="saga.start", correlation_id="saga-1", causation_id=None)]
    )
    later = await store.append_events(
        [follow(first[0].id, root.id), follow(named.id, "saga-1"), follow(root.id, root.id)]
    )

    found = await store.correlated_events(root.id, 100)
    assert [e.id for e in found] == [root.id, first[0].id, later[0].id, later[2].id]
    assert [e.seq for e in found] == sorted(e.seq for e in found)
    assert found[1].causation_id == root.id and found[1].correlation_id == root.id
    assert [e.id for e in await store.correlated_events(root.id, 2)] == [root.id, first[0].id]
    assert [e.id for e in await store.correlated_events("saga-1", 100)] == [named.id, later[1].id]
    # An event's own id is its correlation when it names none, even with no followers.
    assert [e.id for e in await store.correlated_events(first[1].id, 100)] == [first[1].id]
    assert await store.correlated_events("no-such-correlation", 100) == []

    link = await store.event_link(later[0].id)
    assert link is not None and link == found[2]
    assert (link.topic, link.causation_id, link.correlation_id) == (
        "order.step",
        first[0].id,
        root.id,
    )
    assert await store.event_link("evt_missing") is None


async def test_list_events_by_topic_and_pages(store: Store) -> None:
    topics = [
        "order.created",
        "order.paid",
        "order",
        "orders.created",
        "order.created.v2",
        "user.created",
        "order.created",
    ]
    appended = await store.append_events([ev(t) for t in topics])
    ids = [a.id for a in appended]

    async def listed(topic: str | None) -> list[str]:
        return [e.id for e in await all_events(store, topic)]

    assert await listed(None) == ids[::-1]
    assert await listed("*") == ids[::-1]
    assert await listed("order.created") == [ids[6], ids[0]]
    assert await listed("order") == [ids[2]]
    assert await listed("order.*") == [ids[6], ids[4], ids[1], ids[0]]
    assert await listed("order.created.*") == [ids[4]]
    assert await listed("nothing.here") == []

    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_events("order.*", 3, cursor)
        assert all(e.topic.startswith("order.") for e in page.items)
        seen.extend(e.id for e in page.items)
        if page.next is None:
            break
        cursor = page.next
    assert seen == [ids[6], ids[4], ids[1], ids[0]]

    seen = []
    cursor = None
    while True:
        page = await store.list_events(None, 2, cursor)
        seen.extend(e.id for e in page.items)
        if page.next is None:
            assert len(page.items) <= 2
            break
        assert len(page.items) == 2
        cursor = page.next
    assert seen == ids[::-1]

    with pytest.raises(InvalidCursor):
        await store.list_events(None, 2, "@@@")


async def test_list_events_by_key_and_correlation(store: Store) -> None:
    (root,) = await store.append_events([ev(key="k1")])

    def follower(topic: str, key: str, cause: str) -> EventIn:
        return msgspec.structs.replace(
            ev(topic, key=key), causation_id=cause, correlation_id=root.id
        )

    appended = await store.append_events(
        [
            follower("order.paid", "k2", root.id),
            ev("order.created", key="k1"),
            ev("order.paid", key="k1"),  # outside the correlation
        ]
    )
    (deeper,) = await store.append_events([follower("order.shipped", "k1", appended[0].id)])
    ids = [root.id, *(a.id for a in appended), deeper.id]

    async def listed(topic: str | None = None, **filters: str) -> list[str]:
        out: list[str] = []
        cursor: str | None = None
        for _ in range(20):
            page = await store.list_events(topic, 2, cursor, **filters)
            out.extend(e.id for e in page.items)
            if page.next is None:
                return out
            cursor = page.next
        raise AssertionError("paging did not end")

    assert await listed(key="k1") == [ids[4], ids[3], ids[2], ids[0]]
    assert await listed(key="k2") == [ids[1]]
    assert await listed(key="none") == []
    assert await listed(correlation_id=root.id) == [ids[4], ids[1], ids[0]]
    assert await listed(correlation_id=appended[0].id) == [ids[1]]  # a root by its id
    assert await listed(correlation_id=root.id, key="k1") == [ids[4], ids[0]]
    assert await listed("order.paid", key="k1") == [ids[3]]
    assert await listed("order.*", key="k1") == [ids[4], ids[3], ids[2], ids[0]]
    assert await listed("order.paid", correlation_id=root.id) == [ids[1]]


# --------------------------------------------------------------------------- delivery reads


async def test_list_deliveries_filters_and_pages(store: Store) -> None:
    a = await store.create_destination(spec(["order.*"], name="a"), "whsec_a")
    b = await store.create_destination(spec(["order.created"], name="b"), "whsec_b")
    appended = await store.append_events([ev("order.created", key=f"k{i}") for i in range(5)])
    appended += await store.append_events([ev("order.paid", key="p")])

    every = await all_deliveries(store)
    assert len(every) == 11
    seqs = [d.seq for d in every]
    assert seqs == sorted(seqs, reverse=True), "newest first"
    assert len({d.id for d in every}) == 11

    on_a = await all_deliveries(store, destination_id=a.id)
    on_b = await all_deliveries(store, destination_id=b.id)
    assert len(on_a) == 6
    assert len(on_b) == 5
    assert {d.destination_id for d in on_a} == {a.id}
    assert [d.event_id for d in on_b] == [x.id for x in appended[:5]][::-1]

    assert len(await all_deliveries(store, state="pending")) == 11
    assert await all_deliveries(store, state="delivered") == []
    assert await all_deliveries(store, state="dead") == []

    of_first = await all_deliveries(store, event_id=appended[0].id)
    assert {d.destination_id for d in of_first} == {a.id, b.id}
    assert [d.destination_id for d in await all_deliveries(store, event_id=appended[5].id)] == [
        a.id
    ]
    both = await all_deliveries(store, destination_id=b.id, event_id=appended[0].id)
    assert len(both) == 1
    assert both[0].key == "k0"
    assert await all_deliveries(store, destination_id=b.id, event_id=appended[5].id) == []
    assert await all_deliveries(store, destination_id="dst_nope") == []
    assert await all_deliveries(store, event_id="evt_nope") == []

    # Pagination: no duplicates, no gaps, `next` is None on the last page.
    for filters in ({}, {"destination_id": a.id}, {"state": "pending"}):
        expected = await all_deliveries(store, **filters)
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await store.list_deliveries(limit=4, cursor=cursor, **filters)
            seen.extend(d.id for d in page.items)
            if page.next is None:
                break
            assert len(page.items) == 4
            cursor = page.next
        assert seen == [d.id for d in expected]

    with pytest.raises(InvalidCursor):
        await store.list_deliveries(cursor="???")


async def test_every_filter_combination_lists_what_a_scan_finds(store: Store) -> None:
    """Each listing (whichever statement its filters pick) equals filtering every
    delivery by hand, page by page, in every state a delivery can be in."""
    a = await store.create_destination(spec(["order.*"], name="a"), "whsec_a")
    b = await store.create_destination(spec(["order.*"], name="b"), "whsec_b")
    appended = await store.append_events([ev(key=f"k{i}") for i in range(7)])
    now = now_us()
    batch = await store.claim("w", [ClaimAsk(destination_id=a.id, limit=5, lease_us=US)], now)
    assert len(batch.claims) == 5
    outcomes = {0: "delivered", 1: "delivered", 2: "dead", 3: "scheduled"}  # 4 stays in flight
    await store.complete(
        [
            Completion(
                delivery_id=claim.delivery_id,
                destination_id=a.id,
                lane_key=claim.lane_key,
                owner="w",
                attempt=AttemptResult(at=now, outcome="http_error", answer=Answer(500)),
                state=state,
                next_attempt_at=now + 60 * US if state == "scheduled" else None,
                release_lane=state != "scheduled",
                failed=state != "delivered",
            )
            for i, claim in enumerate(batch.claims)
            if (state := outcomes.get(i)) is not None
        ],
        pause_after=0,
    )
    every = await all_deliveries(store)
    assert len(every) == 14
    assert {d.state for d in every} == {"pending", "in_flight", "scheduled", "delivered", "dead"}

    for destination_id, state, event_id in itertools.product(
        (None, a.id, b.id, "dst_nope"),
        (None, "pending", "in_flight", "scheduled", "delivered", "dead"),
        (None, appended[0].id, appended[3].id, "evt_nope"),
    ):
        expected = [
            d.id
            for d in every
            if destination_id in (None, d.destination_id)
            and state in (None, d.state)
            and event_id in (None, d.event_id)
        ]
        filters = {
            k: v
            for k, v in (
                ("destination_id", destination_id),
                ("state", state),
                ("event_id", event_id),
            )
            if v is not None
        }
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(20):
            page = await store.list_deliveries(limit=3, cursor=cursor, **filters)
            seen.extend(d.id for d in page.items)
            if page.next is None:
                break
            cursor = page.next
        assert seen == expected, filters


# --------------------------------------------------------------------------- meta


async def test_expired_meta_is_deleted_by_prefix(store: Store) -> None:
    for key, value in [("out:a", "100"), ("out:b", "200"), ("out:c", "oops"), ("outer", "1")]:
        await store.set_meta_if_absent(key, value)
    assert await store.delete_expired_meta("out:", 150) == 1
    assert [await store.get_meta(k) for k in ("out:a", "out:b", "out:c", "outer")] == [
        None,
        "200",
        "oops",  # not an expiry: never taken for one
        "1",  # another prefix
    ]
    assert await store.delete_expired_meta("out:", 10**12) == 1
    assert await store.get_meta("out:b") is None


async def test_set_meta_if_absent_sets_once(store: Store) -> None:
    assert await store.get_meta("api_key") is None
    assert await store.set_meta_if_absent("api_key", "first") == "first"
    assert await store.set_meta_if_absent("api_key", "second") == "first"
    assert await store.get_meta("api_key") == "first"
    assert await store.set_meta_if_absent("other", "x") == "x"
    assert await store.get_meta("other") == "x"
    values = await asyncio.gather(*(store.set_meta_if_absent("race", str(i)) for i in range(10)))
    assert len(set(values)) == 1
    assert await store.get_meta("race") == values[0]


# --------------------------------------------------------------------------- durability


async def test_data_survives_close_and_reopen(
    store: Store, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    backend = request.node.callspec.params["store"]
    destination = await store.create_destination(spec(["order.*"], name="keep"), "whsec_k")
    appended = await store.append_events(
        [ev(key="a", idempotency_key="once"), ev(key="b"), ev(key="c")]
    )
    await store.set_meta_if_absent("fact", "42")
    events_before = await all_events(store)
    deliveries_before = await all_deliveries(store)
    await store.close()

    reopened = make_store(backend, tmp_path)
    await reopened.open()
    try:
        assert await reopened.get_destination("keep") == destination
        assert await all_events(reopened) == events_before
        assert await all_deliveries(reopened) == deliveries_before
        assert await reopened.get_meta("fact") == "42"
        (dup,) = await reopened.append_events([ev(idempotency_key="once")])
        assert (dup.id, dup.duplicate) == (appended[0].id, True)
        # Routing, sequence, time and id order carry on from where they were.
        (fresh,) = await reopened.append_events([ev(key="d")])
        assert fresh.deliveries == 1
        event = await reopened.get_event(fresh.id)
        assert event is not None
        assert event.seq > max(e.seq for e in events_before)
        assert event.received_at >= max(e.received_at for e in events_before)
        assert fresh.id > max(a.id for a in appended)
    finally:
        await reopened.close()


async def test_routes_follow_destinations_changed_by_another_store(
    store: Store, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two processes on one database (`tidings api` beside a worker): what one does to
    destinations routes the other's next event."""
    backend = request.node.callspec.params["store"]
    other = make_store(backend, tmp_path)
    await other.open()
    try:
        (before,) = await store.append_events([ev(key="a")])
        assert before.deliveries == 0
        created = await other.create_destination(spec(["order.*"], name="o"), "whsec_o")
        (after,) = await store.append_events([ev(key="b")])
        assert after.deliveries == 1
        await other.update_destination(created.id, spec(["invoice.*"], name="o"))
        assert [a.deliveries for a in await store.append_events([ev(key="c")])] == [0]
        await other.update_destination(created.id, spec(["order.*"], name="o"))
        assert [a.deliveries for a in await store.append_events([ev(key="d")])] == [1]
        assert await other.delete_destination(created.id)
        assert [a.deliveries for a in await store.append_events([ev(key="e")])] == [0]
    finally:
        await other.close()


async def test_uploads_are_saved_replaced_and_read(store: Store) -> None:
    from tidings.model import Upload, UploadBadRow

    assert await store.get_upload("upl_nope") is None
    first = Upload(id="upl_1", file="alerts.csv", state="receiving", message="Server down")
    await store.save_upload(first)
    assert await store.get_upload("upl_1") == first
    done = msgspec.structs.replace(
        first,
        state="done",
        rows=3,
        events=2,
        duplicates=1,
        bad_rows=1,
        bad=[UploadBadRow(4, "the user id (first field) is empty")],
        last_line=4,
    )
    await store.save_upload(done)
    assert await store.get_upload("upl_1") == done


# --------------------------------------------------------------------------- group commit


async def test_concurrent_appends_to_one_lane_keep_call_order_and_one_head(store: Store) -> None:
    """Calls that meet in one group commit: seq follows the order of the calls, and of the
    lane's deliveries only the first may be claimed (one head), the next after it."""
    d = await store.create_destination(spec(["order.*"]), "whsec_a")
    results = await asyncio.gather(
        *(store.append_events([ev(key="lane", payload=b'{"n": %d}' % i)]) for i in range(30))
    )
    ids = [r[0].id for r in results]
    by_seq = sorted(await all_events(store), key=lambda e: e.seq)
    assert [e.id for e in by_seq] == ids
    order = []
    for _ in range(40):
        batch = await store.claim(
            "w1", [ClaimAsk(destination_id=d.id, limit=10, lease_us=60 * US)], now_us()
        )
        if not batch.claims:
            break
        assert len(batch.claims) == 1  # never two of one lane in flight
        (c,) = batch.claims
        order.append(c.event_id)
        done = AttemptResult(at=now_us(), outcome="delivered", latency_ms=1.0)
        await store.complete(
            [
                Completion(
                    delivery_id=c.delivery_id,
                    destination_id=d.id,
                    lane_key=c.lane_key,
                    owner="w1",
                    attempt=done,
                    state="delivered",
                    next_attempt_at=None,
                    release_lane=True,
                    failed=False,
                )
            ],
            pause_after=0,
        )
    assert order == ids


async def test_an_idempotency_key_in_two_concurrent_calls_of_several_events(
    store: Store,
) -> None:
    """Calls meeting in one group share keys: each key stores one event, the call that
    came first owns it, the others are answered with its id as duplicates."""
    await store.create_destination(spec(["order.*"]), "whsec_a")
    first, second, third = await asyncio.gather(
        store.append_events([ev(key="a", idempotency_key="k1")]),
        store.append_events([ev(key="b", idempotency_key="k1"), ev(idempotency_key="k2")]),
        store.append_events([ev(key="c", idempotency_key="k2"), ev(key="d")]),
    )
    assert not first[0].duplicate and second[0].duplicate
    assert second[0].id == first[0].id and second[0].deliveries == 1
    assert not second[1].duplicate and third[0].duplicate and third[0].id == second[1].id
    assert not third[1].duplicate
    assert sorted(e.key for e in await all_events(store)) == ["", "a", "d"]
    assert len(await all_deliveries(store)) == 3
