"""The pull-group calls of `tidings.AsyncClient` (lease, ack, nack, extend) against the
real API in-process: a group destination made by the SDK, its deliveries leased, settled
and failed into the dead letters, the long poll, and `lost` for a lease that moved on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.conftest import API_KEY, Api
from tidings import AsyncClient, Lease, TidingsError


@pytest.fixture
async def client(api: Api) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(api.url, api_key=API_KEY) as c:
        yield c


async def test_lease_ack_nack_extend(client: AsyncClient) -> None:
    group = await client.create_destination(
        "group",
        ["order.*"],
        name="billing",
        lease_ms=5000,
        retry={"max_attempts": 2, "initial_ms": 1, "jitter": 0},
    )
    assert (group.kind, group.lease_ms, group.url) == ("group", 5000, None)
    sent = [await client.publish("order.created", {"n": i}, key=f"u{i}") for i in range(3)]

    leased = (await client.lease("billing", max=10)).items
    assert [lease.event.id for lease in leased] == [p.id for p in sent]  # one head per key
    first, second, third = leased
    assert isinstance(first, Lease) and first.attempt == 1
    assert (first.event.topic, first.event.key, first.event.payload) == (
        "order.created",
        "u0",
        {"n": 0},
    )

    acked = await client.ack("billing", [first.lease_id])
    assert (acked.ok, acked.lost) == ([first.lease_id], [])
    assert (await client.ack("billing", [first.lease_id])).lost == [first.lease_id]
    assert (await client.get_delivery(first.delivery_id)).state == "delivered"

    extended = await client.extend("billing", [second.lease_id], lease_ms=20_000)
    assert extended.ok == [second.lease_id]

    nacked = await client.nack("billing", [third.lease_id], delay_ms=0, error="KeyError: 'x'")
    assert nacked.ok == [third.lease_id]
    (again,) = (await client.lease("billing", wait_ms=2000)).items
    assert (again.delivery_id, again.attempt) == (third.delivery_id, 2)
    await client.nack("billing", [again.lease_id], error="KeyError: 'y'")
    dead = await client.get_delivery(third.delivery_id)
    assert (dead.state, dead.last_error) == ("dead", "KeyError: 'y'")
    assert dead.attempts is not None
    assert [a.outcome for a in dead.attempts] == ["nacked", "nacked"]
    assert [d.id async for d in client.iter_deliveries(destination_id="billing", state="dead")] == [
        third.delivery_id
    ]


async def test_the_long_poll_outlasts_the_client_timeout(api: Api) -> None:
    async with AsyncClient(api.url, api_key=API_KEY, timeout=0.5) as client:
        await client.create_destination("group", ["order.*"], name="slow")
        started = time.monotonic()
        waiting = asyncio.create_task(client.lease("slow", wait_ms=1500))
        await asyncio.sleep(1.0)  # past the client's 0.5 s: the lease raised its own
        assert not waiting.done()
        await client.publish("order.created", key="k")
        (item,) = (await asyncio.wait_for(waiting, 5)).items
        assert item.event.topic == "order.created" and time.monotonic() - started < 1.5


async def test_group_errors(client: AsyncClient) -> None:
    with pytest.raises(TidingsError) as err:
        await client.lease("no-such-group")
    assert (err.value.status, err.value.code) == (404, "not_found")
    await client.create_destination("group", ["a"], name="g")
    with pytest.raises(TidingsError) as err:
        await client.ack("g", ["not-a-lease-id"])
    assert (err.value.status, err.value.field) == (400, "ids[0]")
    with pytest.raises(TidingsError) as err:
        await client.lease("g", wait_ms=30_001)
    assert err.value.field == "wait_ms"
