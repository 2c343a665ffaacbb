"""`tidings.Consumer` against the real API in-process: sync and async handlers called
and acked, an event no handler takes acked, a handler that always raises ending dead
after `max_attempts` with its error text, leases extended while a handler runs long,
a graceful stop, and chains of three hops stamped with causation and correlation.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import API_KEY, Api
from tidings import AsyncClient, Consumer, LeasedEvent


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def group(api: Api, name: str, topics: list[str], **kw: object) -> None:
    await api.sdk.create_destination("group", topics, name=name, **kw)  # type: ignore[arg-type]


async def running(consumer: Consumer) -> asyncio.Task[None]:
    task = asyncio.create_task(consumer.serve())
    await asyncio.sleep(0)
    return task


async def stopped(consumer: Consumer, task: asyncio.Task[None]) -> None:
    consumer.stop()
    await asyncio.wait_for(task, 10)


async def test_handlers_called_and_acked(api: Api) -> None:
    await group(api, "shop", ["order.*", "user.*"], lease_ms=5000)
    consumer = Consumer(api.url, API_KEY, group="shop", concurrency=4, wait_ms=1000)
    seen: list[tuple[str, object, str]] = []

    @consumer.handler("order.*")
    async def on_order(event: LeasedEvent) -> None:
        seen.append(("async", event.payload, threading.current_thread().name))

    @consumer.handler("user.created")
    def on_user(event: LeasedEvent) -> None:
        seen.append(("sync", event.payload, threading.current_thread().name))

    sent = [
        await api.sdk.publish("order.created", {"n": 1}, key="a"),
        await api.sdk.publish("user.created", {"n": 2}, key="b"),
        await api.sdk.publish("user.deleted", {"n": 3}, key="c"),  # no handler: acked
    ]
    task = await running(consumer)
    try:

        async def all_delivered() -> bool:
            states = [(await api.sdk.get_event(p.id)).deliveries or [] for p in sent]
            return all(d and d[0].state == "delivered" for d in states)

        await until(all_delivered)
    finally:
        await stopped(consumer, task)
    assert sorted((kind, payload) for kind, payload, _ in seen) == [
        ("async", {"n": 1}),
        ("sync", {"n": 2}),
    ]
    threads = {kind: name for kind, _, name in seen}
    assert threads["async"] == "MainThread" and threads["sync"].startswith("tidings-handler")
    assert (consumer.stats.handled, consumer.stats.unhandled, consumer.stats.acked) == (2, 1, 3)


async def test_a_handler_that_always_raises_ends_dead_with_its_error(api: Api) -> None:
    retry = {"max_attempts": 3, "initial_ms": 1, "multiplier": 1.0, "jitter": 0}
    await group(api, "comment", ["user.*"], lease_ms=5000, retry=retry)
    consumer = Consumer(api.url, API_KEY, group="comment", wait_ms=500)
    attempts: list[int] = []

    @consumer.handler("user.*")
    def fail(event: LeasedEvent) -> None:
        lease = consumer.current
        assert lease is not None and lease.event.id == event.id
        attempts.append(lease.attempt)
        raise RuntimeError("Test Error!!")

    sent = await api.sdk.publish("user.renamed", {"name": "x"}, key="u1")
    task = await running(consumer)
    try:

        async def dead() -> bool:
            (d,) = (await api.sdk.get_event(sent.id)).deliveries or []
            return d.state == "dead"

        await until(dead)
    finally:
        await stopped(consumer, task)
    (d,) = (await api.sdk.get_event(sent.id)).deliveries or []
    delivery = await api.sdk.get_delivery(d.id)
    assert delivery.last_error == "RuntimeError: Test Error!!"
    assert [a.error for a in delivery.attempts or []] == ["RuntimeError: Test Error!!"] * 3
    assert attempts == [1, 2, 3] and consumer.stats.nacked == 3


async def test_a_long_handler_keeps_its_lease(api: Api) -> None:
    await group(api, "slow", ["job.*"], lease_ms=1000)
    consumer = Consumer(api.url, API_KEY, group="slow", wait_ms=500)
    calls: list[int] = []

    @consumer.handler("job.*")
    async def slow(event: LeasedEvent) -> None:
        lease = consumer.current
        assert lease is not None
        calls.append(lease.attempt)
        await asyncio.sleep(2.5)  # 2.5 leases: only extensions keep it

    sent = await api.sdk.publish("job.run", key="j")
    task = await running(consumer)
    try:

        async def delivered() -> bool:
            (d,) = (await api.sdk.get_event(sent.id)).deliveries or []
            return d.state == "delivered"

        await until(delivered)
    finally:
        await stopped(consumer, task)
    assert calls == [1] and consumer.stats.lost == 0


async def test_stop_finishes_what_runs_and_gives_back_the_rest(api: Api) -> None:
    await group(api, "stopping", ["job.*"], lease_ms=5000, ordering="none")
    consumer = Consumer(api.url, API_KEY, group="stopping", concurrency=1, batch=5)
    started, finished = asyncio.Event(), []

    @consumer.handler("job.*")
    async def job(event: LeasedEvent) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(event.id)

    sent = [await api.sdk.publish("job.run", {"i": i}) for i in range(5)]
    task = await running(consumer)
    await asyncio.wait_for(started.wait(), 5)
    await stopped(consumer, task)
    states = {}
    for p in sent:
        (d,) = (await api.sdk.get_event(p.id)).deliveries or []
        states[p.id] = d.state
    assert len(finished) == 1 and states[finished[0]] == "delivered"
    # The others were held but not started: given back at once, for other consumers.
    rest = [s for i, s in states.items() if i != finished[0]]
    assert len(rest) == 4 and set(rest) <= {"pending", "scheduled"}, rest


async def test_a_chain_of_three_hops_carries_causation_and_correlation(api: Api) -> None:
    await group(api, "flow", ["user.*", "blog.*", "comment.*"], lease_ms=5000)
    consumer = Consumer(api.url, API_KEY, group="flow", wait_ms=500)
    last: list[LeasedEvent] = []

    @consumer.handler("user.renamed")
    async def hop1(event: LeasedEvent) -> None:
        await consumer.apublish("blog.author-renamed", event.payload, key=event.key)

    @consumer.handler("blog.*")
    def hop2(event: LeasedEvent) -> None:
        consumer.publish("comment.author-renamed", event.payload, key=event.key)

    @consumer.handler("comment.*")
    def hop3(event: LeasedEvent) -> None:
        last.append(event)

    root = await api.sdk.publish("user.renamed", {"name": "Ann"}, key="u1")
    task = await running(consumer)
    try:

        async def arrived() -> bool:
            return bool(last)

        await until(arrived)
    finally:
        await stopped(consumer, task)
    chain = await api.sdk.get_chain(last[0].id)
    assert chain.correlation_id == root.id
    topics = [(n.topic, n.depth) for n in chain.items]
    assert topics == [
        ("user.renamed", 0),
        ("blog.author-renamed", 1),
        ("comment.author-renamed", 2),
    ]
    first, second, third = chain.items
    assert (second.causation_id, third.causation_id) == (first.id, second.id)
    assert {n.correlation_id for n in chain.items[1:]} == {root.id}


async def test_a_client_inside_a_handler_stamps_too(api: Api) -> None:
    await group(api, "own", ["a.*"], lease_ms=5000)
    consumer = Consumer(api.url, API_KEY, group="own", wait_ms=500)
    published: list[str] = []

    @consumer.handler("a.start")
    async def hop(event: LeasedEvent) -> None:
        async with AsyncClient(api.url, api_key=API_KEY) as own:
            published.append((await own.publish("a.next", key="k")).id)

    root = await api.sdk.publish("a.start", key="k", correlation_id="order-7")
    task = await running(consumer)
    try:

        async def done() -> bool:
            return bool(published)

        await until(done)
    finally:
        await stopped(consumer, task)
    child = await api.sdk.get_event(published[0])
    assert (child.causation_id, child.correlation_id) == (root.id, "order-7")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="pattern"):
        Consumer(group="g").handler("order.**")(print)
    with pytest.raises(ValueError, match="concurrency"):
        Consumer(group="g", concurrency=0)
