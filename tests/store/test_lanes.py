"""Contract tests of the delivery engine's store methods: lanes, claims, leases, outcomes.

Like test_contract.py, these use only the `store` fixture and the `Store` interface, so
every backend must pass them unchanged.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from tests.store.test_contract import ev, spec
from tidings.model import (
    Answer,
    AttemptResult,
    Claim,
    ClaimAsk,
    Completion,
    CompletionState,
    Swept,
)
from tidings.store.base import Conflict, NotFound, Store
from tidings.store.postgres import PostgresStore
from tidings.timeutil import US, now_us

LEASE = 30 * US


async def dest(store: Store, **fields: object) -> str:
    base = spec(("order.*",))
    d = await store.create_destination(msgspec.structs.replace(base, **fields), "whsec_AAAA")
    return d.id


async def publish(store: Store, *keys: str, topic: str = "order.created") -> list[str]:
    appended = await store.append_events([ev(topic, key=k) for k in keys])
    return [a.id for a in appended]


async def claim(
    store: Store, destination_id: str, limit: int = 100, owner: str = "w1", lease: int = LEASE
) -> list[Claim]:
    batch = await store.claim(
        owner, [ClaimAsk(destination_id=destination_id, limit=limit, lease_us=lease)], now_us()
    )
    return batch.claims


def completion(
    c: Claim,
    state: CompletionState = "delivered",
    *,
    owner: str = "w1",
    release: bool | None = None,
    next_at: int | None = None,
    status: int = 200,
) -> Completion:
    ok = state == "delivered"
    return Completion(
        delivery_id=c.delivery_id,
        destination_id=c.destination_id,
        lane_key=c.lane_key,
        owner=owner,
        attempt=AttemptResult(
            at=now_us(),
            outcome="delivered" if ok else "http_error",
            latency_ms=1.5,
            error=None if ok else "HTTP 500",
            answer=Answer(status if ok else 500, "body"),
        ),
        state=state,
        next_attempt_at=next_at,
        release_lane=ok if release is None else release,
        failed=not ok,
    )


async def state_of(store: Store, delivery_id: str) -> str:
    d = await store.get_delivery(delivery_id)
    assert d is not None
    return d.state


# --------------------------------------------------------------------------- lanes


async def test_fifo_lane_hands_out_only_its_head_in_order(store: Store) -> None:
    d = await dest(store)
    ids = await publish(store, "a", "a", "b", "a", "b")
    first = await claim(store, d)
    assert sorted(c.lane_key for c in first) == ["a", "b"]
    assert {c.event_id for c in first} == {ids[0], ids[2]}
    assert all(c.attempt == 1 for c in first)
    assert await claim(store, d) == []  # both lanes are busy
    order: dict[str, list[str]] = {"a": [], "b": []}
    pending = first
    for _ in range(10):
        if not pending:
            break
        for c in pending:
            order[c.lane_key].append(c.event_id)
        done = await store.complete([completion(c) for c in pending], pause_after=0)
        assert done.applied == len(pending)
        pending = await claim(store, d)
    assert order == {"a": [ids[0], ids[1], ids[3]], "b": [ids[2], ids[4]]}


async def test_a_lane_whose_head_is_stored_queues_what_later_appends_bring(
    store: Store,
) -> None:
    """The head check of an append asks the store for lanes of earlier appends (and this
    append's own earlier events for lanes it brings twice)."""
    d = await dest(store)
    ids = await publish(store, "a")
    ids += await publish(store, "a", "b", "b")
    ids += await publish(store, "b", "a", "c")
    order: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    pending = await claim(store, d)
    assert sorted(c.event_id for c in pending) == sorted([ids[0], ids[2], ids[6]])
    for _ in range(10):
        if not pending:
            break
        for c in pending:
            order[c.lane_key].append(c.event_id)
        await store.complete([completion(c) for c in pending], pause_after=0)
        pending = await claim(store, d)
    assert order == {"a": [ids[0], ids[1], ids[5]], "b": [ids[2], ids[3], ids[4]], "c": [ids[6]]}


async def test_unordered_destination_hands_out_everything(store: Store) -> None:
    d = await dest(store, ordering="none")
    await publish(store, *(["same"] * 7))
    assert len(await claim(store, d, limit=5)) == 5
    assert len(await claim(store, d, limit=5)) == 2


async def test_claim_fills_the_claim_with_the_event(store: Store) -> None:
    d = await dest(store)
    (event_id,) = await publish(store, "k")
    (c,) = await claim(store, d)
    event = await store.get_event(event_id)
    assert event is not None
    assert (c.event_id, c.topic, c.payload, c.received_at) == (
        event.id,
        event.topic,
        bytes(event.payload),
        event.received_at,
    )
    delivery = await store.get_delivery(c.delivery_id)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("in_flight", 1)


async def test_concurrent_claimers_never_share_a_delivery(store: Store) -> None:
    d = await dest(store, ordering="none")
    await publish(store, *[f"k{i}" for i in range(200)])
    results = await asyncio.gather(*(claim(store, d, limit=30, owner=f"w{i}") for i in range(8)))
    claimed = [c.delivery_id for r in results for c in r]
    assert len(claimed) == len(set(claimed)) == 200


async def test_scheduled_retries_wait_and_next_due_says_when(store: Store) -> None:
    d = await dest(store)
    await publish(store, "k")
    (c,) = await claim(store, d)
    later = now_us() + 60 * US
    await store.complete([completion(c, "scheduled", next_at=later)], pause_after=0)
    batch = await store.claim(
        "w1", [ClaimAsk(destination_id=d, limit=10, lease_us=LEASE)], now_us()
    )
    assert batch.claims == [] and batch.next_due == later
    batch = await store.claim("w1", [ClaimAsk(destination_id=d, limit=10, lease_us=LEASE)], later)
    assert [x.delivery_id for x in batch.claims] == [c.delivery_id]
    assert batch.claims[0].attempt == 2


async def test_a_retrying_head_holds_its_lane(store: Store) -> None:
    d = await dest(store)
    await publish(store, "k", "k")
    (head,) = await claim(store, d)
    await store.complete([completion(head, "scheduled", next_at=now_us())], pause_after=0)
    (again,) = await claim(store, d)
    assert again.delivery_id == head.delivery_id and again.attempt == 2


async def test_completion_is_fenced_by_the_lease_owner(store: Store) -> None:
    d = await dest(store)
    await publish(store, "k", "k")
    (c,) = await claim(store, d, owner="w1")
    done = await store.complete([completion(c, owner="intruder")], pause_after=0)
    assert done.applied == 0
    assert await state_of(store, c.delivery_id) == "in_flight"
    assert len(await store.list_attempts(c.delivery_id)) == 1  # the attempt is kept
    assert await claim(store, d) == []  # the lane did not move
    await store.complete([completion(c, owner="w1")], pause_after=0)
    assert await state_of(store, c.delivery_id) == "delivered"
    assert len(await claim(store, d)) == 1


async def test_attempts_are_recorded_in_order(store: Store) -> None:
    d = await dest(store)
    await publish(store, "k")
    (c,) = await claim(store, d)
    await store.complete([completion(c, "scheduled", next_at=now_us())], pause_after=0)
    (c,) = await claim(store, d)
    await store.complete([completion(c)], pause_after=0)
    attempts = await store.list_attempts(c.delivery_id)
    assert [(a.outcome, a.status_code) for a in attempts] == [
        ("http_error", 500),
        ("delivered", 200),
    ]
    assert attempts[0].at <= attempts[1].at
    assert attempts[0].error == "HTTP 500" and attempts[0].response_body == "body"
    delivery = await store.get_delivery(c.delivery_id)
    assert delivery is not None
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("delivered", 2, None)


async def test_a_claim_given_back_unsent_costs_no_attempt(store: Store) -> None:
    d = await dest(store)
    await publish(store, "k")
    (c,) = await claim(store, d)
    given_back = msgspec.structs.replace(
        completion(c, "scheduled", next_at=now_us(), release=False),
        attempt=AttemptResult(at=now_us(), outcome="lost", error="stopped before sending"),
        failed=False,
        unsent=True,
    )
    done = await store.complete([given_back], pause_after=0)
    assert done.applied == 1
    delivery = await store.get_delivery(c.delivery_id)
    assert delivery is not None
    assert (delivery.state, delivery.attempts) == ("scheduled", 0)
    assert await store.list_attempts(c.delivery_id) == []
    (again,) = await claim(store, d)  # due at once, and its first attempt is still the first
    assert again.delivery_id == c.delivery_id and again.attempt == 1
    await store.complete([completion(again)], pause_after=0)
    delivery = await store.get_delivery(c.delivery_id)
    assert delivery is not None and (delivery.state, delivery.attempts) == ("delivered", 1)


# --------------------------------------------------------------------------- dead heads


async def test_dead_head_skipped_lets_the_lane_go_on(store: Store) -> None:
    d = await dest(store, on_dead="skip")
    await publish(store, "k", "k")
    (head,) = await claim(store, d)
    await store.complete([completion(head, "dead", release=True)], pause_after=0)
    (nxt,) = await claim(store, d)
    assert nxt.delivery_id != head.delivery_id


async def test_complete_names_the_deliveries_it_made_dead(store: Store) -> None:
    """Only those it wrote: a dead outcome whose lease was lost is not reported."""
    d = await dest(store, ordering="none")
    await publish(store, "a", "b", "c", "d")
    a, b, c, e = await claim(store, d)
    done = await store.complete(
        [
            completion(a, "dead", release=True),
            completion(b, "dead", release=True, owner="intruder"),
            completion(c, "scheduled", next_at=now_us() + LEASE),
            completion(e),
            completion(a, "delivered"),  # a later outcome of one delivery is ignored
        ],
        pause_after=0,
    )
    assert (done.applied, done.dead) == (3, [a.delivery_id])
    assert (await store.complete([], pause_after=0)).dead == []


async def test_dead_head_blocks_until_retried(store: Store) -> None:
    d = await dest(store, on_dead="block")
    ids = await publish(store, "k", "k")
    (head,) = await claim(store, d)
    await store.complete([completion(head, "dead", release=False)], pause_after=0)
    assert await claim(store, d) == []
    with pytest.raises(Conflict):
        await store.purge_delivery((await store.list_deliveries(state="pending")).items[0].id)
    retried = await store.retry_delivery(head.delivery_id, now_us())
    assert (retried.state, retried.attempts) == ("pending", 0)
    (again,) = await claim(store, d)
    assert (again.event_id, again.attempt) == (ids[0], 1)


async def test_purging_a_blocking_head_frees_the_lane(store: Store) -> None:
    d = await dest(store, on_dead="block")
    ids = await publish(store, "k", "k")
    (head,) = await claim(store, d)
    await store.complete([completion(head, "dead", release=False)], pause_after=0)
    assert await store.purge_delivery(head.delivery_id) is True
    assert await store.get_delivery(head.delivery_id) is None
    (nxt,) = await claim(store, d)
    assert nxt.event_id == ids[1]
    assert await store.purge_delivery("dlv_nope") is False


async def test_switching_block_to_skip_releases_blocked_lanes(store: Store) -> None:
    d = await dest(store, on_dead="block")
    await publish(store, "k", "k")
    (head,) = await claim(store, d)
    await store.complete([completion(head, "dead", release=False)], pause_after=0)
    current = await store.get_destination(d)
    assert current is not None
    await store.update_destination(d, msgspec.structs.replace(current.spec, on_dead="skip"))
    assert len(await claim(store, d)) == 1


async def test_switching_fifo_to_none_releases_waiting_deliveries(store: Store) -> None:
    d = await dest(store)
    await publish(store, "k", "k", "k")
    assert len(await claim(store, d)) == 1
    current = await store.get_destination(d)
    assert current is not None
    await store.update_destination(d, msgspec.structs.replace(current.spec, ordering="none"))
    assert len(await claim(store, d)) == 2


# --------------------------------------------------------------------------- retry, replay


async def test_retry_rules(store: Store) -> None:
    d = await dest(store)
    await publish(store, "k")
    pending = (await store.list_deliveries(destination_id=d)).items[0]
    with pytest.raises(Conflict):
        await store.retry_delivery(pending.id, now_us())
    (c,) = await claim(store, d)
    with pytest.raises(Conflict):  # in flight
        await store.retry_delivery(c.delivery_id, now_us())
    await store.complete([completion(c)], pause_after=0)
    again = await store.retry_delivery(c.delivery_id, now_us())  # delivered: send again
    assert again.state == "pending"
    with pytest.raises(NotFound):
        await store.retry_delivery("dlv_nope", now_us())


async def test_a_replayed_skipped_delivery_waits_for_the_current_head(store: Store) -> None:
    d = await dest(store, on_dead="skip")
    ids = await publish(store, "k", "k", "k")
    (first,) = await claim(store, d)
    await store.complete([completion(first, "dead", release=True)], pause_after=0)
    (second,) = await claim(store, d)
    assert second.event_id == ids[1]
    await store.retry_delivery(first.delivery_id, now_us())
    assert await claim(store, d) == []  # the lane's head is still in flight
    await store.complete([completion(second)], pause_after=0)
    (nxt,) = await claim(store, d)
    assert nxt.event_id == ids[0]  # the replayed one goes first, then the third


async def five_dead_of_one_key(store: Store) -> tuple[str, list[str], list[str]]:
    """A skip destination whose lane "k" let five deliveries die one after the other."""
    d = await dest(store, on_dead="skip")
    events = await publish(store, *["k"] * 5)
    dead = []
    for _ in events:
        (c,) = await claim(store, d)
        await store.complete([completion(c, "dead", release=True)], pause_after=0)
        dead.append(c.delivery_id)
    assert await claim(store, d) == []
    return d, events, dead


async def drain_one_by_one(store: Store, d: str, bound: int = 20) -> list[str]:
    """Event ids in the order a receiver would see them, one delivery at a time."""
    seen: list[str] = []
    for _ in range(bound):
        got = await claim(store, d)
        if not got:
            return seen
        assert len(got) == 1, "a fifo lane hands out one delivery at a time"
        seen.append(got[0].event_id)
        await store.complete([completion(got[0])], pause_after=0)
    raise AssertionError("the lane did not drain")


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
async def test_retrying_many_dead_keeps_event_order(store: Store, order: str) -> None:
    d, events, dead = await five_dead_of_one_key(store)
    ids = dead[::-1] if order == "reversed" else [dead[i] for i in (3, 0, 4, 2, 1)]
    done = await store.retry_deliveries([*ids, "dlv_nope", ids[0]], now_us())
    assert (done.retried, done.not_found, done.conflicts) == (5, ["dlv_nope"], [])
    assert await drain_one_by_one(store, d) == events


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
async def test_retrying_dead_one_call_each_keeps_event_order(store: Store, order: str) -> None:
    d, events, dead = await five_dead_of_one_key(store)
    ids = dead[::-1] if order == "reversed" else [dead[i] for i in (2, 4, 0, 3, 1)]
    for delivery_id in ids:  # separate calls: a younger head that has not started yields
        await store.retry_delivery(delivery_id, now_us())
    assert await drain_one_by_one(store, d) == events


async def test_a_bulk_retry_reports_pending_ones_as_conflicts(store: Store) -> None:
    d, _, dead = await five_dead_of_one_key(store)
    await store.retry_deliveries(dead[:2], now_us())
    done = await store.retry_deliveries(dead, now_us())
    assert (done.retried, sorted(done.conflicts)) == (3, sorted(dead[:2]))
    assert len(await drain_one_by_one(store, d)) == 5


async def test_replaying_dead_keeps_event_order(store: Store) -> None:
    d, events, _ = await five_dead_of_one_key(store)
    assert await store.replay(d, "dead", None, None, now_us(), 2) == 2
    assert await store.replay(d, "dead", None, None, now_us(), 100) == 3
    assert await drain_one_by_one(store, d) == events


async def test_a_started_head_keeps_its_lane_when_an_older_one_comes_back(store: Store) -> None:
    d = await dest(store, on_dead="skip")
    events = await publish(store, "k", "k", "k")
    (first,) = await claim(store, d)
    await store.complete([completion(first, "dead", release=True)], pause_after=0)
    (second,) = await claim(store, d)  # in flight: it keeps the lane
    await store.retry_delivery(first.delivery_id, now_us())
    await store.complete([completion(second)], pause_after=0)
    assert await drain_one_by_one(store, d) == [events[0], events[2]]


async def test_replay_by_state_and_time(store: Store) -> None:
    d = await dest(store, ordering="none")
    await publish(store, "a", "b", "c")
    claims = await claim(store, d)
    await store.complete([completion(c, "dead", release=True) for c in claims], pause_after=0)
    assert await store.replay(d, "dead", now_us() + US, None, now_us(), 100) == 0
    assert await store.replay(d, "dead", None, now_us() - 3600 * US, now_us(), 100) == 0
    assert await store.replay(d, "dead", None, None, now_us(), 2) == 2
    assert await store.replay(d, "dead", None, None, now_us(), 100) == 1
    assert len((await store.list_deliveries(destination_id=d, state="pending")).items) == 3
    assert len(await claim(store, d)) == 3


# --------------------------------------------------------------------------- leases, health


async def test_expired_leases_are_reported(store: Store) -> None:
    d = await dest(store)
    await publish(store, "k")
    (c,) = await claim(store, d, owner="dead-worker", lease=0)
    lost = await store.expired_leases(now_us() + 1, 10)
    assert [(x.delivery_id, x.owner, x.attempts, x.event_id) for x in lost] == [
        (c.delivery_id, "dead-worker", 1, c.event_id)
    ]
    assert await store.expired_leases(now_us() - 60 * US, 10) == []
    await store.complete(
        [completion(c, "scheduled", owner="dead-worker", next_at=now_us())], pause_after=0
    )
    assert await store.expired_leases(now_us() + 1, 10) == []


async def test_a_run_of_failures_pauses_and_success_resets(store: Store) -> None:
    d = await dest(store, ordering="none")
    await publish(store, *"abcdef")
    claims = await claim(store, d)
    fail = [completion(c, "scheduled", next_at=now_us() + 60 * US) for c in claims]
    done = await store.complete(fail[:2], pause_after=3)
    assert done.paused == []
    done = await store.complete([completion(claims[2]), *fail[3:5]], pause_after=3)
    assert done.paused == []  # the success reset the run: 2 failures since
    done = await store.complete(fail[5:], pause_after=3)
    assert [p.id for p in done.paused] == [d]
    assert done.paused[0].state == "paused" and done.paused[0].paused_reason
    paused = await store.get_destination(d)
    assert paused is not None and paused.state == "paused" and paused.paused_reason
    resumed = await store.set_destination_state(d, "active", None)
    assert (resumed.state, resumed.paused_reason) == ("active", None)


async def test_a_target_gone_pauses_in_the_same_write(store: Store) -> None:
    d = await dest(store, ordering="none")
    await publish(store, *"abc")
    a, b, c = await claim(store, d)
    gone = msgspec.structs.replace(
        completion(a, "scheduled", next_at=now_us() + 60 * US), gone="the target is gone"
    )
    # A completion whose lease is lost changes nothing: it pauses nothing either.
    stale = msgspec.structs.replace(gone, delivery_id=b.delivery_id, owner="someone-else")
    done = await store.complete([stale], pause_after=0)
    assert done.paused == []
    done = await store.complete([gone, completion(c)], pause_after=0)  # never by a run
    assert [(p.id, p.state, p.paused_reason) for p in done.paused] == [
        (d, "paused", "the target is gone")
    ]
    stored = await store.get_destination(d)
    assert stored is not None and (stored.state, stored.paused_reason) == (
        "paused",
        "the target is gone",
    )
    # Paused already: another gone answer pauses (and reports) nothing again.
    await publish(store, "d")
    await store.set_destination_state(d, "active", None)
    (e,) = await claim(store, d)
    await store.set_destination_state(d, "paused", "by hand")
    again = msgspec.structs.replace(
        completion(e, "scheduled", next_at=now_us() + 60 * US), gone="gone again"
    )
    done = await store.complete([again], pause_after=0)
    assert done.paused == []
    stored = await store.get_destination(d)
    assert stored is not None and stored.paused_reason == "by hand"


async def test_backlog_and_sweep(store: Store) -> None:
    d = await dest(store, ordering="none")
    other = await dest(store, ordering="none", topics=["nothing.here"])
    ids = await publish(store, "a", "b", "c")
    (quiet,) = await publish(store, "x", topic="user.created")  # no deliveries at all
    backlog = {b.destination_id: b for b in await store.backlog()}
    assert backlog[d].pending == 3 and other not in backlog
    assert backlog[d].oldest_created_at is not None
    claims = sorted(await claim(store, d), key=lambda c: c.event_id)
    await store.complete([completion(claims[0]), completion(claims[1])], pause_after=0)
    await store.complete([completion(claims[2], "dead", release=True)], pause_after=0)
    assert await store.backlog() == []
    assert await store.sweep(now_us() - 3600 * US, 100) == Swept(deleted=0, upto=None)
    # two delivered + the quiet one; the dead one's event is looked at and kept
    assert await store.sweep(now_us() + 1, 100) == Swept(deleted=3, upto=None, kept=1)
    assert await store.get_event(ids[0]) is None and await store.get_event(quiet) is None
    assert await store.get_event(ids[2]) is not None  # its delivery is dead: kept
    # A swept event's deliveries and their attempts go with it (PostgreSQL: by the
    # sweep's own statement, no foreign key cascade since migration 0007).
    assert await store.get_delivery(claims[0].delivery_id) is None
    assert await store.list_attempts(claims[0].delivery_id) == []
    assert await store.get_delivery(claims[2].delivery_id) is not None
    assert len(await store.list_attempts(claims[2].delivery_id)) == 1
    assert (await store.sweep(now_us() + 1, 100)).deleted == 0


async def test_a_backlog_far_from_the_tables_end_is_estimated_from_its_own_range(
    store: Store,
) -> None:
    """A stuck destination's backlog sits early in the table while others' deliveries go
    on: the estimate spans that destination's own first..last seq, not the table's."""
    stuck = await dest(store, ordering="none", topics=["a.*"])
    await dest(store, ordering="none", topics=["b.*"])
    store.backlog_exact_up_to = 256
    await publish(store, *[str(i) for i in range(300)], topic="a.x")
    if isinstance(store, PostgresStore):  # as if ten million deliveries had come since
        async with store._conn() as conn:
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('deliveries', 'seq'), 10000000)"
            )
        await publish(store, "z", topic="b.x")
    else:
        await publish(store, *[f"z{i}" for i in range(2000)], topic="b.x")
    found = {b.destination_id: b.pending for b in await store.backlog()}
    assert 256 <= found[stuck] <= 330, found  # 300 pending, estimated past the cap


async def test_backlog_counts_up_to_a_cap_and_estimates_past_it(store: Store) -> None:
    d = await dest(store, ordering="none")
    other = await dest(store, ordering="none", topics=["order.*", "user.*"])
    store.backlog_exact_up_to = 4
    await publish(store, *"abc")
    assert {b.destination_id: b.pending for b in await store.backlog()} == {d: 3, other: 3}
    # both destinations' deliveries interleave along seq, evenly: the estimate is exact
    await publish(store, *"defghijklmnopqr")
    await publish(store, *"uvw", topic="user.created")  # other's only: denser at the end
    backlog = {b.destination_id: b.pending for b in await store.backlog()}
    assert backlog[d] == 18
    assert 18 <= backlog[other] <= 21  # an estimate: at least the cap, near the truth


async def test_set_destination_state_unknown(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.set_destination_state("dst_nope", "paused", "x")


async def test_switching_none_to_fifo_queues_the_backlog_into_lanes(store: Store) -> None:
    d = await dest(store, ordering="none")
    ids = await publish(store, "k", "k", "k", "j", "j")
    (moving,) = [c for c in await claim(store, d, limit=1)]  # k's first is in flight
    current = await store.get_destination(d)
    assert current is not None
    await store.update_destination(d, msgspec.structs.replace(current.spec, ordering="fifo"))
    (j_head,) = await claim(store, d)  # k is busy with `moving`; j's earliest goes
    assert (moving.event_id, j_head.event_id) == (ids[0], ids[3])
    order = []
    pending = [moving, j_head]
    for _ in range(10):
        if not pending:
            break
        order += [c.event_id for c in pending]
        await store.complete([completion(c) for c in pending], pause_after=0)
        pending = await claim(store, d)
    assert [i for i in order if i in ids[:3]] == ids[:3]
    assert [i for i in order if i in ids[3:]] == ids[3:]
    assert len(order) == 5
