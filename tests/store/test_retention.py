"""Contract tests of retention at the store and in the Sweeper: a pass walks the events
once in chunks, stepping over the ones something still holds (undelivered or dead
deliveries, inbox messages), deleting the rest; a pass cut off goes on where it stopped.

Both stores, through the `store` fixture and the `Store` interface only.
"""

from __future__ import annotations

from tests.store.test_lanes import claim, completion, dest, publish
from tidings.engine.retention import Sweeper
from tidings.model import EventIn, Raw
from tidings.store.base import Store
from tidings.store.postgres import PostgresStore, lock_key
from tidings.timeutil import now_us


async def settle(store: Store, destination_id: str, dead: set[int]) -> None:
    """Deliver every delivery of the destination, but make those whose key is in `dead`
    dead; leave the ones of key 'p' pending (never claimed)."""
    for c in await claim(store, destination_id, limit=1000):
        if c.lane_key == "p":
            continue
        await store.complete(
            [completion(c, "dead" if int(c.lane_key) in dead else "delivered", release=True)],
            pause_after=0,
        )


async def test_a_pass_steps_over_kept_events_and_deletes_the_rest(store: Store) -> None:
    d = await dest(store, ordering="none")
    await dest(store, ordering="none", topics=["held.*"])  # never claimed: keeps 'held'
    keys = [str(i) for i in range(12)]
    ids = await publish(store, *keys)
    (held,) = await publish(store, "h", topic="held.one")
    (inboxed,) = await store.append_events(
        [EventIn(topic="x.y", key="u", payload=Raw(b"{}"), recipients=["u1"])]
    )
    # the first 4 events are the dead ones: a pass that re-read kept events every chunk
    # would look at them again in each chunk of 3
    await settle(store, d, dead={0, 1, 2, 3})
    cutoff = now_us() + 1
    after, deleted, kept, chunks = 0, 0, 0, 0
    while True:
        swept = await store.sweep(cutoff, 3, after)
        chunks += 1
        assert swept.deleted + swept.kept <= 3
        deleted += swept.deleted
        kept += swept.kept
        if swept.upto is None:
            break
        assert swept.upto > after
        after = swept.upto
        assert chunks < 20
    # 12 + held + inboxed = 14 events, each looked at once
    assert (deleted, kept, chunks) == (8, 6, 5)
    assert [await store.get_event(i) is None for i in ids] == [False] * 4 + [True] * 8
    assert await store.get_event(held) is not None  # its delivery is pending
    assert await store.get_event(inboxed.id) is not None  # a message names it


async def test_dead_deliveries_and_inbox_messages_keep_their_events(store: Store) -> None:
    d = await dest(store, ordering="none")
    dead_one, done = await publish(store, "1", "2")
    (inboxed,) = await store.append_events(
        [EventIn(topic="user.note", key="u", payload=Raw(b"{}"), recipients=["u1"])]
    )
    await settle(store, d, dead={1})
    swept = await store.sweep(now_us() + 1, 100)
    assert (swept.deleted, swept.kept, swept.upto) == (1, 2, None)
    assert await store.get_event(done) is None
    assert await store.get_event(dead_one) is not None
    assert await store.get_event(inboxed.id) is not None
    # once purged, the dead delivery's event goes too
    (dl,) = (await store.list_deliveries(event_id=dead_one)).items
    assert await store.purge_delivery(dl.id)
    assert (await store.sweep(now_us() + 1, 100)).deleted == 1
    assert await store.get_event(dead_one) is None


async def test_nothing_old_enough_is_a_finished_pass(store: Store) -> None:
    d = await dest(store, ordering="none")
    await publish(store, "1")
    await settle(store, d, dead=set())
    swept = await store.sweep(now_us() - 60_000_000, 100)
    assert (swept.deleted, swept.kept, swept.upto) == (0, 0, None)
    assert (await store.sweep(now_us() + 1, 100, after=10**12)).upto is None


async def test_a_sweeper_cut_off_goes_on_where_it_stopped(store: Store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import tidings.engine.retention as retention

    monkeypatch.setattr(retention, "CHUNK", 2)
    monkeypatch.setattr(retention, "MAX_CHUNKS", 2)
    d = await dest(store, ordering="none")
    ids = await publish(store, *[str(i) for i in range(9)])
    await settle(store, d, dead={0, 1})  # two kept events at the start of every pass
    sweeper = Sweeper(store, 0)
    assert await sweeper.sweep_once() == 2  # looked at 4: kept 2, deleted 2
    assert sweeper.behind
    assert await sweeper.sweep_once() == 4  # on from the 5th, not from the kept ones
    assert sweeper.behind
    assert await sweeper.sweep_once() == 1  # the last one: the pass is over
    assert not sweeper.behind
    assert [await store.get_event(i) is None for i in ids] == [False] * 2 + [True] * 7
    assert await sweeper.sweep_once() == 0  # a new walk from the start keeps the dead


async def test_an_event_committing_during_a_sweep_is_left_for_the_next_pass(
    store: Store,
) -> None:
    """PostgreSQL commits ingest groups out of seq order: an event whose seq was drawn
    first may commit while a sweep runs. The sweep's window and its delete are one
    statement (one snapshot), so it neither counts nor deletes that event, `kept` is
    never negative, and the next pass takes it."""
    if not isinstance(store, PostgresStore):
        return  # SQLite's writer runs one transaction at a time: nothing commits meanwhile
    async with store._conn() as side:
        tx = side.transaction()
        await tx.start()
        seq = await side.fetchval("SELECT nextval(pg_get_serial_sequence('events', 'seq'))")
        await side.execute(
            "INSERT INTO events (seq, id, topic, key, payload, received_at) "
            "VALUES ($1, 'evt_late', 'nobody.x', '', '{}'::bytea, $2)",
            seq,
            now_us(),
        )
        later = await publish(store, "a", "b", topic="nobody.y")  # committed, seq above it
        first = await store.sweep(now_us() + 10**6, 1000, 0)
        await tx.commit()
    assert first.deleted == 2 and first.kept >= 0 and first.upto is None, first
    assert all([await store.get_event(i) is None for i in later])
    second = await store.sweep(now_us() + 10**6, 1000, 0)
    assert second.deleted == 1 and await store.get_event("evt_late") is None, second


async def test_a_replay_racing_a_sweep_keeps_its_delivery(store: Store) -> None:
    """A replay re-queues a delivered delivery while a sweep deletes its window. The sweep
    locks the deliveries it deletes: one a writer holds is stepped over (its event kept),
    and a replay that comes after the sweep finds nothing to do. Either way no delivery
    is both re-queued and deleted."""
    if not isinstance(store, PostgresStore):
        return  # SQLite's writer runs one transaction at a time: nothing interleaves
    import asyncio

    d = await dest(store, ordering="none")
    (racing, other) = await publish(store, "1", "2")
    await settle(store, d, dead=set())
    (dl,) = (await store.list_deliveries(event_id=racing)).items
    cutoff = now_us() + 1
    async with store._conn() as side:
        tx = side.transaction()
        await tx.start()
        # a replay mid-way: the delivery re-queued, not yet committed
        await side.execute("UPDATE deliveries SET state = 'pending' WHERE id = $1", dl.id)
        swept = await asyncio.wait_for(store.sweep(cutoff, 100), 10)  # never waits on it
        await tx.commit()
    assert (swept.deleted, swept.kept) == (1, 1), swept
    assert await store.get_event(other) is None
    assert await store.get_event(racing) is not None
    (again,) = (await store.list_deliveries(event_id=racing)).items
    assert again.state == "pending"

    # a replay that read its candidates before a sweep took them re-queues nothing, and
    # does not fail: it waits on the lane lock held here while the sweep commits
    (late,) = await publish(store, "3")
    await settle(store, d, dead=set())
    async with store._conn() as side:
        tx = side.transaction()
        await tx.start()
        await side.execute("SELECT pg_advisory_xact_lock($1)", lock_key(d, "3"))
        replay = asyncio.create_task(store.replay(d, "delivered", None, None, now_us(), 100))
        for _ in range(200):  # until the replay waits on the lane lock
            waiting = await side.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting, "the replay never reached its lane lock"
        assert (await store.sweep(now_us() + 1, 100)).deleted == 1
        await tx.commit()
    assert await asyncio.wait_for(replay, 10) == 0
    assert await store.get_event(late) is None
