"""The relay publishes a user's messages only while some node subscribes to the user's
channel (PUBSUB NUMSUB before each round's PUBLISHes), on the real Redis on 6379. A
pattern subscriber (which NUMSUB does not count) sees every PUBLISH that is sent."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable

import msgspec
import redis.asyncio as aioredis

from tests.e2e.receiver import eventually
from tidings.model import Appended, EventIn
from tidings.realtime.hub import NUDGE, Connection, Framed, Hub, Live, Written
from tidings.realtime.relay import RedisRelay

REDIS_URL = "redis://127.0.0.1:6379/0"


class Counted:
    """Framed messages (hub.Pushes) that note whose frames are built."""

    def __init__(self, messages: list[Live], asked: list[str]) -> None:
        self._framed = Framed(messages)
        self._asked = asked

    def users(self) -> set[str]:
        return self._framed.users()

    def frames(self, wanted: Callable[[str], bool]) -> list[Live]:
        out = self._framed.frames(wanted)
        self._asked.extend(user for user, _, _ in out)
        return out


@contextlib.asynccontextmanager
async def two_nodes(prefix: str) -> AsyncIterator[tuple[Hub, RedisRelay, Hub]]:
    """Two nodes' hubs with their relays on the real Redis: A's hub and relay, B's hub."""
    hub_a, hub_b = Hub(), Hub()
    a = RedisRelay(REDIS_URL, hub_a, prefix=prefix)
    b = RedisRelay(REDIS_URL, hub_b, prefix=prefix)
    a.install()
    b.install()
    try:
        yield hub_a, a, hub_b
    finally:
        await a.close()
        await b.close()


async def socket_on_each(
    hub_a: Hub, hub_b: Hub, user: str, max_queue: int
) -> tuple[Connection, Connection]:
    """A socket of `user` on each node, once both subscriptions are confirmed (each
    socket's confirmation nudge taken off its queue)."""
    here, there = (
        Connection(user, max_queue, lambda: None),
        Connection(user, max_queue, lambda: None),
    )
    hub_a.add(here)
    hub_b.add(there)
    await eventually(
        lambda: here.queue.qsize() == 1 and there.queue.qsize() == 1, 5, "subscriptions"
    )
    for conn in (here, there):
        assert conn.queue.get_nowait() == (NUDGE, b"")
        conn.stale = False
    return here, there


async def test_only_users_some_node_listens_for_are_published(
    require_service: Callable[[str, int], None],
) -> None:
    require_service("Redis", 6379)
    prefix = f"t{secrets.token_hex(4)}:"
    spy = aioredis.Redis.from_url(REDIS_URL)
    watcher = spy.pubsub()
    await watcher.psubscribe(prefix + "inbox:*")
    try:
        async with two_nodes(prefix) as (_hub_a, a, hub_b):
            online = Connection("online", 10, lambda: None)
            hub_b.add(online)  # a socket of user "online" on node B
            await eventually(lambda: online.queue.qsize() == 1, 5, "B's subscription confirmed")
            assert online.queue.get_nowait() == (NUDGE, b"")  # B's subscription is confirmed
            online.stale = False
            # Node A writes messages for 500 users nobody holds a socket of, and one for "online".
            asked: list[str] = []
            a.publish(Counted([(f"offline-{i}", 1, b'{"n": 1}') for i in range(500)], asked))
            a.publish(Counted([("online", 1, b'{"n": 2}')], asked))
            await eventually(lambda: online.queue.qsize() == 1, 5, "the push to online")
            assert online.queue.get_nowait() == (1, b'{"n": 2}')
            assert asked == ["online"]  # framed for the one user some node listens for
            seen: list[bytes] = []
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                message = await watcher.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message is not None:
                    seen.append(message["channel"])
            assert seen == [(prefix + "inbox:online").encode()]
    finally:
        await watcher.aclose()
        await spy.aclose()


async def test_queued_pushes_reach_both_nodes_in_offset_order(
    require_service: Callable[[str, int], None],
) -> None:
    """Two appends' pushes queued before the writer runs: a socket of the user on the
    publishing node and one on the other get the user's offsets 1, 2, 3 in order (one
    PUBLISH for the round), each frame the message of its own event."""
    require_service("Redis", 6379)
    prefix = f"t{secrets.token_hex(4)}:"
    async with two_nodes(prefix) as (hub_a, a, hub_b):
        here, there = await socket_on_each(hub_a, hub_b, "u", 100)

        def event(i: int) -> EventIn:
            return EventIn(topic="t", payload=msgspec.Raw(b'{"i": %d}' % i), recipients=["u", "v"])

        def appended(i: int, inbox: tuple[tuple[str, int], ...]) -> Appended:
            return Appended(id=f"evt_{i}", received_at=0, deliveries=0, inbox=inbox)

        first = Written(
            [event(1), event(2)],
            [appended(1, (("u", 1), ("v", 1))), appended(2, (("u", 2), ("v", 2)))],
        )
        second = Written([event(3)], [appended(3, (("v", 3), ("u", 3)))])
        a.publish(first)
        a.publish(second)
        await eventually(lambda: there.queue.qsize() == 3, 5, "the pushes on node B")
        for conn in (here, there):
            got = [conn.queue.get_nowait() for _ in range(3)]
            assert [offset for offset, _ in got] == [1, 2, 3]
            assert [msgspec.json.decode(frame)["id"] for _, frame in got] == [
                "evt_1",
                "evt_2",
                "evt_3",
            ]
            assert conn.queue.empty()


async def test_a_local_users_messages_are_framed_once_for_its_socket_and_redis(
    require_service: Callable[[str, int], None],
) -> None:
    """A user with a socket on the publishing node and one on another: the frames the
    hub built for the local socket are the ones published (each message framed once),
    and both sockets get it."""
    require_service("Redis", 6379)
    prefix = f"t{secrets.token_hex(4)}:"
    async with two_nodes(prefix) as (hub_a, a, hub_b):
        here, there = await socket_on_each(hub_a, hub_b, "u", 10)
        asked: list[str] = []
        a.publish(Counted([("u", 1, b'{"n": 1}'), ("w", 1, b'{"n": 2}')], asked))
        await eventually(lambda: there.queue.qsize() == 1, 5, "the push on node B")
        assert here.queue.get_nowait() == (1, b'{"n": 1}')
        assert there.queue.get_nowait() == (1, b'{"n": 1}')
        assert asked == ["u"]  # framed for A's socket, and reused for Redis
