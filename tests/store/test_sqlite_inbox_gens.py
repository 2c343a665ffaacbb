"""SQLite inbox generations (migration 0008): messages spread over several generations of
the by-user index still read, ack, trim and sweep as one inbox per user, in offset order.

GENERATION_MESSAGES is lowered to a few messages so that a handful of appends cross
several generations."""

from __future__ import annotations

import sqlite3

import msgspec
import pytest

from tidings.model import EventIn
from tidings.store import sqlite as sqlite_module
from tidings.store.sqlite import SQLiteStore
from tidings.timeutil import now_us


@pytest.fixture(autouse=True)
def small_generations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "GENERATION_MESSAGES", 3)


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store


def ev(recipients: list[str]) -> EventIn:
    return EventIn(topic="note.sent", payload=msgspec.Raw(b"{}"), recipients=recipients)


def generations(store: SQLiteStore) -> list[tuple[int, int]]:
    with sqlite3.connect(store.path) as conn:
        return conn.execute("SELECT gen, messages FROM inbox_gens ORDER BY gen").fetchall()


async def offsets(store: SQLiteStore, user: str, after: int = 0, limit: int = 100) -> list[int]:
    page = await store.read_inbox(user, after, limit)
    return [m.offset for m in page.messages]


async def test_reads_cross_generations_in_offset_order(store: SQLiteStore) -> None:
    # One append goes into one generation whole; the next opens a new one once it is full.
    for users in (["a", "b"], ["b"], ["a", "c"], ["a"], ["b", "a"], ["a"]):
        await store.append_events([ev(users)])
    assert [g for g, _ in generations(store)] == [0, 1, 2]
    assert await offsets(store, "a") == [1, 2, 3, 4, 5]
    assert await offsets(store, "b") == [1, 2, 3]
    assert await offsets(store, "a", after=2, limit=2) == [3, 4]  # LIMIT across generations
    assert await offsets(store, "a", after=4) == [5]
    # A batch bigger than a generation stays whole in the next one.
    appended = await store.append_events([ev(["a", "d"]) for _ in range(4)])
    assert [a.inbox for a in appended][-1] == (("a", 9), ("d", 4))
    assert await offsets(store, "a", after=5) == [6, 7, 8, 9]
    assert generations(store)[-1] == (3, 8)


async def test_ack_trim_and_sweep_across_generations(store: SQLiteStore) -> None:
    for _ in range(7):
        await store.append_events([ev(["a", "b"])])
    gens_before = generations(store)
    assert len(gens_before) == 4
    t0 = now_us()
    assert await store.ack_inbox("a", 5, t0) == 5
    page = await store.read_inbox("a", 0, 100)
    assert [m.offset for m in page.messages] == [1, 2, 3, 4, 5, 6, 7]
    assert (page.top, page.acked) == (7, 5)
    # Acked messages of every generation go; generations left empty go with them, except
    # the newest, which takes the next messages.
    assert await store.sweep_inbox(t0 + 1, 0, 1000) == 5
    assert await offsets(store, "a") == [6, 7]
    assert await offsets(store, "b") == [1, 2, 3, 4, 5, 6, 7]
    assert await store.sweep_inbox(t0 + 1, now_us() + 1, 1000) == 9
    assert await offsets(store, "b") == []
    assert generations(store) == [gens_before[-1]]
    (after,) = await store.append_events([ev(["b"])])
    assert after.inbox == (("b", 8),)
    assert await offsets(store, "b") == [8]


async def test_a_full_inbox_trims_across_generations(store: SQLiteStore) -> None:
    store.inbox_max = 4
    for _ in range(6):
        await store.append_events([ev(["a"])])
    assert len(generations(store)) == 2
    assert await offsets(store, "a") == [3, 4, 5, 6]


async def test_events_with_messages_stay_while_their_generation_holds_any(
    store: SQLiteStore,
) -> None:
    from tidings.engine.retention import Sweeper

    first, plain = await store.append_events([ev(["a", "b", "c"]), ev([])])
    (second,) = await store.append_events([ev(["a"])])  # generation 1
    sweeper = Sweeper(store, 0, inbox_ttl_s=3600, inbox_acked_ttl_s=0)
    await sweeper.sweep_once()
    assert await store.get_event(plain.id) is None  # no recipients: swept as ever
    assert await store.get_event(first.id) is not None
    # All of generation 0 acked and swept: its events go; generation 1's stays.
    for user in ("a", "b", "c"):
        await store.ack_inbox(user, 1, now_us() - 1)
    await sweeper.sweep_once()
    assert await store.get_event(first.id) is None
    assert await store.get_event(second.id) is not None
    assert await offsets(store, "a") == [2]
