"""Contract tests of users' inboxes (issue 15), on every store: one message per recipient
at the user's next offset, in the event's transaction; reads after an offset, acks,
retention, the per-user bound."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from tests.conftest import make_store
from tidings.metrics import INBOX_DROPPED
from tidings.model import EventIn, WebhookSpec
from tidings.store.base import Store, StoreError
from tidings.timeutil import now_us


def ev(
    recipients: list[str],
    *,
    topic: str = "note.sent",
    payload: bytes = b'{"n": 1}',
    idempotency_key: str | None = None,
) -> EventIn:
    return EventIn(
        topic=topic,
        payload=msgspec.Raw(payload),
        recipients=recipients,
        idempotency_key=idempotency_key,
    )


async def offsets_of(store: Store, user: str) -> list[int]:
    page = await store.read_inbox(user, 0, 100_000)
    return [m.offset for m in page.messages]


async def test_each_recipient_gets_the_next_offset(store: Store) -> None:
    appended = await store.append_events(
        [ev(["a", "b"], payload=b'{"i":1}'), ev(["a"], payload=b'{"i":2}'), ev([])]
    )
    assert [a.inbox for a in appended] == [(("a", 1), ("b", 1)), (("a", 2),), ()]
    (third,) = await store.append_events([ev(["b", "a", "b"], payload=b'{"i":3}')])
    assert third.inbox == (("b", 2), ("a", 3))  # a recipient named twice gets one message
    page = await store.read_inbox("a", 0, 100)
    assert (page.top, page.acked) == (3, 0)
    assert [(m.offset, bytes(m.payload)) for m in page.messages] == [
        (1, b'{"i":1}'),
        (2, b'{"i":2}'),
        (3, b'{"i":3}'),
    ]
    first = page.messages[0]
    event = await store.get_event(appended[0].id)
    assert event is not None
    assert (first.id, first.topic, first.received_at) == (
        event.id,
        event.topic,
        event.received_at,
    )
    after = await store.read_inbox("a", 1, 1)
    assert [m.offset for m in after.messages] == [2]
    assert after.top == 3
    nobody = await store.read_inbox("nobody", 0, 10)
    assert (nobody.messages, nobody.top, nobody.acked) == ([], 0, 0)


async def test_a_duplicate_writes_no_message(store: Store) -> None:
    (first,) = await store.append_events([ev(["a"], idempotency_key="k1")])
    dup, again = await store.append_events(
        [ev(["a"], idempotency_key="k1"), ev(["a"], idempotency_key="k2")]
    )
    assert first.inbox == (("a", 1),)
    assert (dup.duplicate, dup.inbox) == (True, ())
    assert again.inbox == (("a", 2),)
    assert await offsets_of(store, "a") == [1, 2]


async def test_a_duplicate_among_many_messages_leaves_no_gap(store: Store) -> None:
    """A duplicate found by the database (stored by an earlier call) amid events with
    several messages per user: the others' offsets are counted again without it."""
    (first,) = await store.append_events([ev(["a", "b"], idempotency_key="k1")])
    answers = await store.append_events(
        [ev(["a"]), ev(["b", "a"], idempotency_key="k1"), ev(["b", "a"]), ev(["a", "c"])]
    )
    assert first.inbox == (("a", 1), ("b", 1))
    assert [a.inbox for a in answers] == [
        (("a", 2),), (), (("b", 2), ("a", 3)), (("a", 4), ("c", 1)),
    ]  # fmt: skip
    assert answers[1].duplicate
    assert await offsets_of(store, "a") == [1, 2, 3, 4]
    assert await offsets_of(store, "b") == [1, 2]
    assert await offsets_of(store, "c") == [1]


async def test_failing_calls_write_no_message(store: Store) -> None:
    """A call that fails writes nothing and hands out no offset, even when it ran in one
    transaction with others that succeed (SQLite's group commit runs them again)."""
    # A filter makes the store decode the payload while routing; bad JSON makes it raise.
    await store.create_destination(
        WebhookSpec(url="https://example.com/h", topics=["*"],
                        filter={"n": {"$exists": True}}),
        "whsec_a",
    )  # fmt: skip

    async def call(i: int) -> int | None:
        payload = b"{bad" if i % 4 == 3 else b'{"n": 1}'
        try:
            (a,) = await store.append_events([ev(["a", f"o{i}"], payload=payload)])
        except (ValueError, StoreError):
            return None
        return a.inbox[0][1]

    got = await asyncio.gather(*(call(i) for i in range(40)))
    good = sorted(pos for pos in got if pos is not None)
    assert len(good) == 30
    assert good == list(range(1, 31))
    assert await offsets_of(store, "a") == good
    assert await offsets_of(store, "o3") == []


async def test_concurrent_appends_give_contiguous_offsets(store: Store) -> None:
    """16 appenders at once (on PostgreSQL, 16 transactions on the pool), each a few
    batches naming one shared user and some of their own."""

    async def appender(i: int) -> list[int]:
        got = []
        for j in range(5):
            batch = [ev(["shared", f"own{i}"]) for _ in range(1 + (i + j) % 3)]
            for a in await store.append_events(batch):
                got.extend(pos for user, pos in a.inbox if user == "shared")
        return got

    results = await asyncio.gather(*(appender(i) for i in range(16)))
    handed = sorted(pos for r in results for pos in r)
    assert handed == list(range(1, len(handed) + 1))
    assert await offsets_of(store, "shared") == handed
    for i in range(16):
        assert await offsets_of(store, f"own{i}") == list(
            range(1, 1 + sum(1 + (i + j) % 3 for j in range(5)))
        )


async def test_concurrent_appends_across_two_stores(
    store: Store, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two processes on one database append to one user at once."""
    other = make_store(request.node.callspec.params["store"], tmp_path)
    await other.open()
    try:

        async def appender(s: Store) -> list[int]:
            got = []
            for _ in range(20):
                (a,) = await s.append_events([ev(["u"])])
                got.append(a.inbox[0][1])
            return got

        results = await asyncio.gather(*(appender(s) for s in (store, other) for _ in range(4)))
        handed = sorted(pos for r in results for pos in r)
        assert handed == list(range(1, 161))
        assert await offsets_of(store, "u") == handed
    finally:
        await other.close()


async def test_ack_moves_forward_only_and_not_past_top(store: Store) -> None:
    await store.append_events([ev(["a"]) for _ in range(5)])
    now = now_us()
    assert await store.ack_inbox("nobody", 3, now) == 0
    assert await store.ack_inbox("a", 2, now) == 2
    assert await store.ack_inbox("a", 1, now) == 2
    assert await store.ack_inbox("a", 99, now) == 5
    page = await store.read_inbox("a", 0, 100)
    assert (page.top, page.acked) == (5, 5)
    assert len(page.messages) == 5  # acked messages stay until retention


async def test_retention_deletes_acked_and_aged_messages(store: Store) -> None:
    await store.append_events([ev(["a"]) for _ in range(4)] + [ev(["b"])])
    t0 = now_us()
    await store.ack_inbox("a", 2, t0)
    # Nothing is old enough yet.
    assert await store.sweep_inbox(t0 - 1, t0 - 10_000_000, 100) == 0
    # Acked ones go once their ack is older than the cutoff.
    assert await store.sweep_inbox(t0 + 1, t0 - 10_000_000, 100) == 2
    assert await offsets_of(store, "a") == [3, 4]
    # Unacked ones go when received before the cutoff; limit bounds each kind.
    assert await store.sweep_inbox(t0 + 1, now_us() + 1, 1) == 1
    assert await store.sweep_inbox(t0 + 1, now_us() + 1, 100) == 2
    assert await offsets_of(store, "a") == []
    assert await offsets_of(store, "b") == []
    # Offsets are never reused after their messages are gone.
    (later,) = await store.append_events([ev(["a"])])
    assert later.inbox == (("a", 5),)
    page = await store.read_inbox("a", 0, 10)
    assert (page.top, page.acked) == (5, 2)


async def test_a_full_inbox_drops_the_oldest(store: Store) -> None:
    store.inbox_max = 3
    before = INBOX_DROPPED._value.get()
    await store.append_events([ev(["a"]) for _ in range(2)])
    assert await offsets_of(store, "a") == [1, 2]
    await store.append_events([ev(["a"]) for _ in range(3)] + [ev(["b"])])
    assert await offsets_of(store, "a") == [3, 4, 5]
    assert await offsets_of(store, "b") == [1]
    (six,) = await store.append_events([ev(["a"])])
    assert six.inbox == (("a", 6),)
    assert await offsets_of(store, "a") == [4, 5, 6]
    assert INBOX_DROPPED._value.get() - before == 3


async def test_inbox_survives_close_and_reopen(
    store: Store, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    await store.append_events([ev(["a"]) for _ in range(3)])
    await store.ack_inbox("a", 1, now_us())
    await store.close()
    reopened = make_store(request.node.callspec.params["store"], tmp_path)
    await reopened.open()
    try:
        page = await reopened.read_inbox("a", 0, 10)
        assert ([m.offset for m in page.messages], page.top, page.acked) == ([1, 2, 3], 3, 1)
        (next_one,) = await reopened.append_events([ev(["a"])])
        assert next_one.inbox == (("a", 4),)
    finally:
        await reopened.close()


async def test_an_event_stays_while_an_inbox_message_names_it(store: Store) -> None:
    from tidings.engine.retention import Sweeper

    kept, plain = await store.append_events([ev(["a"]), ev([])])
    sweeper = Sweeper(store, 0, inbox_ttl_s=3600, inbox_acked_ttl_s=0)
    await sweeper.sweep_once()
    assert await store.get_event(plain.id) is None
    assert await store.get_event(kept.id) is not None
    assert [m.id for m in (await store.read_inbox("a", 0, 10)).messages] == [kept.id]
    await store.ack_inbox("a", 1, now_us() - 1)
    await sweeper.sweep_once()  # the acked message goes, then its event
    assert await offsets_of(store, "a") == []
    assert await store.get_event(kept.id) is None


async def test_user_ids_that_sort_apart_in_other_orders_keep_their_offsets(store: Store) -> None:
    """Users sorted bytewise on one side, by code point on the other (PostgreSQL reads the
    new tops back by position): ids whose orders differ under other collations."""
    users = ["é", "e\u0301", "Z", "z", "日本", "😀", 'a"b', "a\\b", "{x}", "NULL", "a,b", "ÿ", "Œ"]
    rounds = [users, list(reversed(users)), users[::2], users[1::3]]
    answers = await store.append_events([ev(r) for r in rounds])
    expected: dict[str, int] = {}
    for answer, recipients in zip(answers, rounds, strict=True):
        want = []
        for user in recipients:
            expected[user] = expected.get(user, 0) + 1
            want.append((user, expected[user]))
        assert answer.inbox == tuple(want)
    for user, top in expected.items():
        assert await offsets_of(store, user) == list(range(1, top + 1)), user


async def test_duplicates_in_every_shape_leave_no_gap(store: Store) -> None:
    (first,) = await store.append_events([ev(["a", "b"], idempotency_key="d1")])
    assert first.inbox == (("a", 1), ("b", 1))
    # every event with recipients a duplicate, with one new event without recipients
    again = await store.append_events([ev(["a", "b"], idempotency_key="d1"), ev([])])
    assert again[0].duplicate and again[0].inbox == () and again[1].inbox == ()
    # only duplicates
    (only,) = await store.append_events([ev(["b", "a"], idempotency_key="d1")])
    assert only.duplicate and only.inbox == ()
    # a user named twice by a new event, beside a duplicate
    mixed = await store.append_events(
        [ev(["a"], idempotency_key="d1"), ev(["b", "a", "b"]), ev(["a", "a"])]
    )
    assert [m.inbox for m in mixed] == [(), (("b", 2), ("a", 2)), (("a", 3),)]
    assert await offsets_of(store, "a") == [1, 2, 3]
    assert await offsets_of(store, "b") == [1, 2]
