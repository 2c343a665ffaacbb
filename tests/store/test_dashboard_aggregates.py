"""Contract tests of the dashboard's aggregates (issue 17): activity tops and counts,
recent attempts, capped delivery counts. Only the `store` fixture and `Store` methods."""

from __future__ import annotations

from tests.store.test_lanes import claim, completion, dest, publish
from tidings.store.base import Store
from tidings.timeutil import US, now_us


async def test_activity_counts_what_came_after_the_tops_asked(store: Store) -> None:
    empty = await store.activity(None, None)
    assert (empty.event_seq, empty.attempt_seq, empty.events, empty.outcomes) == (0, 0, 0, {})
    d = await dest(store)
    await publish(store, "a", "b")
    first = await store.activity(None, None)
    assert first.event_seq > 0 and first.events == 0 and first.outcomes == {}
    await publish(store, "c", "d", "e")
    claims = await claim(store, d)
    assert len(claims) == 5
    states = ["delivered", "delivered", "delivered", "scheduled", "dead"]
    done = await store.complete(
        [completion(c, s, next_at=now_us() + US) for c, s in zip(claims, states, strict=True)],  # type: ignore[arg-type]
        pause_after=0,
    )
    assert done.applied == 5
    later = await store.activity(first.event_seq, first.attempt_seq)
    assert later.events == 3
    assert later.outcomes == {"delivered": 3, "http_error": 2}
    assert later.attempt_seq > first.attempt_seq
    assert (await store.activity(later.event_seq, later.attempt_seq)).outcomes == {}

    recent = await store.recent_attempts(4)
    assert len(recent) == 4
    assert {r.destination_id for r in recent} == {d}
    assert all(r.latency_ms == 1.5 for r in recent)
    assert len(await store.recent_attempts(100)) == 5


async def test_count_deliveries_by_state_and_time_up_to_a_cap(store: Store) -> None:
    d = await dest(store)
    other = await dest(store, name="other")
    before = now_us()
    await publish(store, "a", "b", "c", "d")
    after = now_us() + 1
    assert await store.count_deliveries(d, "pending", None, None, 100) == 4
    assert await store.count_deliveries(d, "pending", None, None, 3) == 3
    assert await store.count_deliveries(d, "pending", before, after, 100) == 4
    assert await store.count_deliveries(d, "pending", after, None, 100) == 0
    assert await store.count_deliveries(d, "pending", None, before, 100) == 0
    assert await store.count_deliveries(d, "dead", None, None, 100) == 0
    assert await store.count_deliveries(other, "pending", None, None, 100) == 4


async def test_event_seq_at_finds_the_first_event_of_a_time(store: Store) -> None:
    assert await store.event_seq_at(now_us()) is None
    first = now_us()
    for k in "abcde":
        await publish(store, k)
    events = (await store.list_events(None, 10, None)).items[::-1]
    assert await store.event_seq_at(0) == events[0].seq
    assert await store.event_seq_at(first) == events[0].seq
    for e in events:
        assert await store.event_seq_at(e.received_at) == e.seq
        assert await store.event_seq_at(e.received_at + 1) in (
            None if e is events[-1] else events[events.index(e) + 1].seq,
        )
    assert await store.event_seq_at(events[-1].received_at + 1) is None


async def test_uploads_list_newest_first_by_id(store: Store) -> None:
    from tidings.model import Upload

    assert await store.list_uploads(10, None) == []
    for i in (1, 3, 2):
        await store.save_upload(Upload(id=f"upl_{i}", file=f"f{i}.csv", state="done"))
    await store.save_upload(Upload(id="upl_2", file="f2.csv", state="failed"))  # replaced
    listed = await store.list_uploads(10, None)
    assert [(u.id, u.state) for u in listed] == [
        ("upl_3", "done"),
        ("upl_2", "failed"),
        ("upl_1", "done"),
    ]
    assert [u.id for u in await store.list_uploads(1, None)] == ["upl_3"]
    assert [u.id for u in await store.list_uploads(10, "upl_3")] == ["upl_2", "upl_1"]
