"""SQLite's queue behind lane heads (migration 0010): deliveries_waiting is by generation
of 8,192 event seqs, and lane_waits (kept by triggers) counts each lane's waiting
deliveries and bounds the earliest, from where a promotion seeks it. These check that
the count stays exact through every way a delivery enters or leaves the queue, that
promotions stay in event order across generations, and that a v9 store upgrades."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec

from tests.store.test_lanes import claim, completion, dest, publish
from tidings.store.sqlite import SQLiteStore

GEN = 8192


@asynccontextmanager
async def opened(path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(str(path))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def lane_waits(path: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """lane_waits as stored, and checked against the deliveries it counts."""
    conn = sqlite3.connect(path)
    try:
        stored = {
            (d, k): (n, low)
            for d, k, n, low in conn.execute(
                "SELECT destination_id, lane_key, waiting, low FROM lane_waits"
            )
        }
        actual = {
            (d, k): (n, low)
            for d, k, n, low in conn.execute(
                "SELECT destination_id, lane_key, count(*), min(event_seq) FROM deliveries"
                " WHERE holds_lane = 0 AND state = 'pending' GROUP BY 1, 2"
            )
        }
    finally:
        conn.close()
    assert {k: n for k, (n, _) in stored.items()} == {k: n for k, (n, _) in actual.items()}
    for lane, (_, low) in stored.items():
        assert low <= actual[lane][1]
    return stored


def waiting(path: Path) -> int:
    """The one lane's count."""
    ((count, _),) = lane_waits(path).values()
    return count


async def drain(store: SQLiteStore, dest_id: str) -> list[tuple[str, str]]:
    """Claim and deliver until nothing is left: (lane, event id) in the order handed out."""
    order: list[tuple[str, str]] = []
    while claims := await claim(store, dest_id):
        order += [(c.lane_key, c.event_id) for c in claims]
        await store.complete([completion(c) for c in claims], pause_after=0)
    return order


async def test_lanes_stay_in_event_order_across_generations(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with opened(path) as store:
        d = await dest(store)
        ids: list[str] = []
        for start in range(0, 2 * GEN + 500, 500):  # three generations, lanes a, b, c
            keys = ["a", "b"] if start % 1000 == 0 else ["c"]
            ids += await publish(store, *(keys[i % len(keys)] for i in range(500)))
        waits = lane_waits(path)
        assert {k for _, k in waits} == {"a", "b", "c"}
        order = await drain(store, d)
        assert sorted(e for _, e in order) == sorted(ids)
        events = {e: i for i, e in enumerate(ids)}
        for key in "abc":
            got = [e for k, e in order if k == key]
            assert len(got) > 1
            assert got == sorted(got, key=events.__getitem__)
        assert lane_waits(path) == {}


async def test_the_count_follows_retries_requeues_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with opened(path) as store:
        d = await dest(store, on_dead="block")
        await publish(store, "k", "k", "k", "k")
        (head,) = await claim(store, d)
        assert waiting(path) == 3
        await store.complete([completion(head, "dead", release=False)], pause_after=0)
        assert waiting(path) == 3  # blocked behind a dead head
        await store.retry_delivery(head.delivery_id, 0)  # back as head
        (again,) = await claim(store, d)
        assert again.delivery_id == head.delivery_id
        await store.complete([completion(again)], pause_after=0)
        assert waiting(path) == 2  # the next one is head
        current = await store.get_destination(d)
        assert current is not None
        unordered = msgspec.structs.replace(current.spec, ordering="none")
        await store.update_destination(d, unordered)  # everything goes at once
        assert lane_waits(path) == {}
        await store.update_destination(d, current.spec)
        assert waiting(path) == 2  # one head again, two behind it
        await store.delete_destination(d)  # deletes its deliveries
        assert lane_waits(path) == {}


async def test_a_version_9_store_upgrades_its_queue(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    async with opened(path) as store:
        d = await dest(store)
        ids = await publish(store, *(["x", "y"] * 5))
    conn = sqlite3.connect(path, isolation_level=None)
    try:  # back to schema 9: the queue by lane, no lane_waits
        for trigger in ("insert", "leave", "enter", "delete"):
            conn.execute(f"DROP TRIGGER lane_waits_{trigger}")
        conn.execute("DROP TABLE lane_waits")
        conn.execute("DROP INDEX deliveries_waiting")
        conn.execute(
            "CREATE INDEX deliveries_waiting ON deliveries (destination_id, lane_key, event_seq)"
            " WHERE holds_lane = 0 AND state = 'pending'"
        )
        conn.execute("PRAGMA user_version = 9")
    finally:
        conn.close()
    async with opened(path) as store:
        assert sorted(n for n, _ in lane_waits(path).values()) == [4, 4]
        order = await drain(store, d)
        assert [e for k, e in order if k == "x"] == ids[0::2]
        assert [e for k, e in order if k == "y"] == ids[1::2]


async def test_a_bound_set_too_high_by_hand_still_promotes_the_earliest(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with opened(path) as store:
        d = await dest(store)
        ids = await publish(store, "k", "k", "k")
        conn = sqlite3.connect(path, isolation_level=None)
        try:  # past every waiting delivery: the seek from it finds none
            conn.execute("UPDATE lane_waits SET low = 1 << 40")
        finally:
            conn.close()
        assert [e for _, e in await drain(store, d)] == ids
