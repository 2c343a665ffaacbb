"""Contract tests of pull groups' leases (lease, ack, nack, extend, expiry), on every store."""

from __future__ import annotations

import asyncio

import msgspec

from tidings.model import EventIn, GroupSpec, LeaseRef, OnDead, Ordering, RetryPolicy
from tidings.policy.outcome import FailurePlan
from tidings.store.base import Store
from tidings.timeutil import US, now_us

LEASE = 30 * US


def group(ordering: Ordering = "fifo", on_dead: OnDead = "skip", attempts: int = 3) -> GroupSpec:
    return GroupSpec(
        name="billing",
        topics=["order.*"],
        ordering=ordering,
        on_dead=on_dead,
        retry=RetryPolicy(max_attempts=attempts, initial_ms=1000, jitter=0.0),
    )


def ev(key: str, n: int) -> EventIn:
    return EventIn(topic="order.created", key=key, payload=msgspec.Raw(b'{"n": %d}' % n))


def plan(spec: GroupSpec, delay_ms: int | None = None) -> FailurePlan:
    return FailurePlan(retry=spec.retry, on_dead=spec.on_dead, delay_ms=delay_ms)


async def setup(store: Store, spec: GroupSpec, events: list[EventIn]) -> str:
    d = await store.create_destination(spec, "whsec_x")
    await store.append_events(events)
    return d.id


async def test_fifo_leases_only_lane_heads_across_concurrent_leasers(store: Store) -> None:
    gid = await setup(store, group(), [ev(k, n) for n in range(3) for k in ("a", "b")])
    now = now_us()
    first, second = await asyncio.gather(
        store.lease_group(gid, 10, LEASE, now), store.lease_group(gid, 10, LEASE, now)
    )
    got = first.leases + second.leases
    assert sorted(x.event.key for x in got) == ["a", "b"]  # one head per lane, once
    assert all(x.attempt == 1 and bytes(x.event.payload) == b'{"n": 0}' for x in got)
    assert (await store.lease_group(gid, 10, LEASE, now)).leases == []
    done = await store.ack_leases(gid, [x.ref for x in got], now)
    assert sorted(r.delivery_id for r in done.ok) == sorted(x.ref.delivery_id for x in got)
    assert done.lost == []
    after = await store.lease_group(gid, 10, LEASE, now_us())
    assert sorted((x.event.key, bytes(x.event.payload)) for x in after.leases) == [
        ("a", b'{"n": 1}'),
        ("b", b'{"n": 1}'),
    ]
    delivered = await store.get_delivery(got[0].ref.delivery_id)
    assert delivered is not None and delivered.state == "delivered"
    attempts = await store.list_attempts(got[0].ref.delivery_id)
    assert [a.outcome for a in attempts] == ["delivered"]


async def test_unordered_group_leases_in_parallel(store: Store) -> None:
    gid = await setup(store, group("none"), [ev("a", n) for n in range(5)])
    got = await store.lease_group(gid, 3, LEASE, now_us())
    assert len(got.leases) == 3
    rest = await store.lease_group(gid, 10, LEASE, now_us())
    assert len(rest.leases) == 2
    ids = {x.ref.delivery_id for x in got.leases + rest.leases}
    assert len(ids) == 5


async def test_nack_records_the_error_and_retries_after_the_delay(store: Store) -> None:
    spec = group()
    gid = await setup(store, spec, [ev("a", 0), ev("a", 1)])
    now = now_us()
    (x,) = (await store.lease_group(gid, 10, LEASE, now)).leases
    done = await store.nack_leases(gid, [x.ref], plan(spec, delay_ms=5000), "boom: ValueError", now)
    assert done.ok == [x.ref] and done.dead == []
    d = await store.get_delivery(x.ref.delivery_id)
    assert d is not None and d.state == "scheduled" and d.last_error == "boom: ValueError"
    assert d.next_attempt_at == now + 5000 * 1000
    (a,) = await store.list_attempts(x.ref.delivery_id)
    assert (a.outcome, a.error) == ("nacked", "boom: ValueError")
    # The lane waits for its head: nothing leasable until the delay has passed.
    assert (await store.lease_group(gid, 10, LEASE, now + 4000 * 1000)).leases == []
    again = await store.lease_group(gid, 10, LEASE, now + 5001 * 1000)
    (y,) = again.leases
    assert y.ref.delivery_id == x.ref.delivery_id and y.attempt == 2


async def test_stale_ack_after_a_new_lease_is_lost_and_changes_nothing(store: Store) -> None:
    spec = group()
    gid = await setup(store, spec, [ev("a", 0)])
    now = now_us()
    (old,) = (await store.lease_group(gid, 10, 1 * US, now)).leases
    later = now + 2 * US
    expired = await store.expire_leases(gid, plan(spec), later, 100)
    assert [r.delivery_id for r in expired.ok] == [old.ref.delivery_id]
    (new,) = (await store.lease_group(gid, 10, LEASE, later + 2 * US)).leases
    assert new.ref.delivery_id == old.ref.delivery_id and new.ref.token != old.ref.token
    assert new.attempt == 2
    stale = await store.ack_leases(gid, [old.ref], later + 3 * US)
    assert stale.ok == [] and stale.lost == [old.ref]
    stale_nack = await store.nack_leases(gid, [old.ref], plan(spec), "late", later + 3 * US)
    assert stale_nack.lost == [old.ref]
    d = await store.get_delivery(new.ref.delivery_id)
    assert d is not None and d.state == "in_flight"
    outcomes = [a.outcome for a in await store.list_attempts(new.ref.delivery_id)]
    assert outcomes == ["lost"]
    assert (await store.ack_leases(gid, [new.ref], later + 3 * US)).ok == [new.ref]


async def test_extend_keeps_a_lease_past_its_first_expiry(store: Store) -> None:
    spec = group()
    gid = await setup(store, spec, [ev("a", 0)])
    now = now_us()
    (x,) = (await store.lease_group(gid, 10, 1 * US, now)).leases
    assert (await store.extend_leases(gid, [x.ref], 10 * US, now)).ok == [x.ref]
    assert (await store.expire_leases(gid, plan(spec), now + 5 * US, 100)).ok == []
    assert (await store.ack_leases(gid, [x.ref], now + 5 * US)).ok == [x.ref]
    # An expired lease cannot be extended.
    await store.append_events([ev("b", 1)])
    now = now_us()
    (y,) = (await store.lease_group(gid, 10, 1 * US, now)).leases
    assert (await store.extend_leases(gid, [y.ref], 10 * US, now + 2 * US)).lost == [y.ref]


async def test_expired_leases_back_off_then_die_and_can_be_retried(store: Store) -> None:
    spec = group(attempts=2)
    gid = await setup(store, spec, [ev("a", 0), ev("a", 1)])
    t = now_us()
    (x,) = (await store.lease_group(gid, 10, 1 * US, t)).leases
    t += 2 * US
    assert (await store.expire_leases(gid, plan(spec), t, 100)).dead == []
    d = await store.get_delivery(x.ref.delivery_id)
    assert d is not None and d.state == "scheduled" and d.next_attempt_at == t + 1000 * 1000
    assert (await store.lease_group(gid, 10, 1 * US, t)).leases == []  # backing off
    t += 2 * US
    (y,) = (await store.lease_group(gid, 10, 1 * US, t)).leases
    assert y.attempt == 2
    t += 2 * US
    done = await store.expire_leases(gid, plan(spec), t, 100)
    assert done.dead == [x.ref.delivery_id]
    d = await store.get_delivery(x.ref.delivery_id)
    assert d is not None and d.state == "dead" and d.last_error is not None
    assert [a.outcome for a in await store.list_attempts(x.ref.delivery_id)] == ["lost", "lost"]
    dead = await store.list_deliveries(destination_id=gid, state="dead")
    assert [e.id for e in dead.items] == [x.ref.delivery_id]
    # on_dead skip: the lane went on to the next event.
    (z,) = (await store.lease_group(gid, 10, LEASE, t)).leases
    assert bytes(z.event.payload) == b'{"n": 1}'
    assert (await store.ack_leases(gid, [z.ref], t)).ok == [z.ref]
    # Retried like any dead delivery: leasable again, attempts from 1.
    await store.retry_delivery(x.ref.delivery_id, t)
    (r,) = (await store.lease_group(gid, 10, LEASE, t + 1)).leases
    assert r.ref.delivery_id == x.ref.delivery_id and r.attempt == 1


async def test_a_dead_head_blocks_its_lane_until_replayed(store: Store) -> None:
    spec = group(on_dead="block", attempts=1)
    gid = await setup(store, spec, [ev("a", 0), ev("a", 1)])
    t = now_us()
    (x,) = (await store.lease_group(gid, 10, LEASE, t)).leases
    done = await store.nack_leases(gid, [x.ref], plan(spec), "no", t)
    assert done.dead == [x.ref.delivery_id]
    assert (await store.lease_group(gid, 10, LEASE, t + US)).leases == []  # blocked
    assert await store.replay(gid, "dead", None, None, t + US, 100) == 1
    (again,) = (await store.lease_group(gid, 10, LEASE, t + 2 * US)).leases
    assert again.ref.delivery_id == x.ref.delivery_id


async def test_refs_of_another_group_are_lost(store: Store) -> None:
    gid = await setup(store, group(), [ev("a", 0)])
    other = await store.create_destination(GroupSpec(name="other", topics=["nothing"]), "whsec_y")
    (x,) = (await store.lease_group(gid, 10, LEASE, now_us())).leases
    assert (await store.ack_leases(other.id, [x.ref], now_us())).lost == [x.ref]
    bogus = LeaseRef(delivery_id="dlv_nope", token="0" * 16)
    assert (await store.ack_leases(gid, [bogus], now_us())).lost == [bogus]


async def test_deliveries_of_events_in_one_call(store: Store) -> None:
    gid = await setup(store, group(), [])
    appended = await store.append_events([ev("a", 0), ev("b", 1)])
    found = await store.deliveries_of_events([a.id for a in appended])
    assert [(d.event_id, d.destination_id) for d in found] == [(a.id, gid) for a in appended]
    assert await store.deliveries_of_events([]) == []
