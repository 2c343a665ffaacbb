"""TIDINGS_REDIS_PREFIX: two deployments on one Redis server do not hear each other's inbox
pushes or see each other's presence (the real Redis on 6379)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

from tests.e2e.receiver import eventually
from tidings.realtime.hub import NUDGE, Connection, Framed, Hub
from tidings.realtime.relay import RedisRelay

REDIS_URL = "redis://127.0.0.1:6379/0"


async def test_deployments_with_their_own_prefix_stay_apart(
    require_service: Callable[[str, int], None],
) -> None:
    require_service("Redis", 6379)
    tag = secrets.token_hex(4)
    prod, staging = f"t{tag}prod:", f"t{tag}staging:"
    hubs = {name: Hub() for name in ("prod_a", "prod_b", "staging")}
    relays = {
        "prod_a": RedisRelay(REDIS_URL, hubs["prod_a"], prefix=prod),
        "prod_b": RedisRelay(REDIS_URL, hubs["prod_b"], prefix=prod),
        "staging": RedisRelay(REDIS_URL, hubs["staging"], prefix=staging),
    }
    for relay in relays.values():
        relay.install()
    try:
        user = f"user-{tag}"
        conn = Connection(user, 10, lambda: None)
        hubs["prod_b"].add(conn)  # a socket of the user on prod's node B
        # B's subscription is confirmed when its socket is nudged to read the store.
        await eventually(lambda: conn.queue.qsize() == 1, 5, "B's subscription confirmed")
        assert conn.queue.get_nowait() == (NUDGE, b"")
        conn.stale = False
        relays["staging"].publish(Framed([(user, 1, b'{"from": "staging"}')]))
        relays["prod_a"].publish(Framed([(user, 1, b'{"from": "prod"}')]))
        await eventually(lambda: conn.queue.qsize() >= 1, 5, "prod's push")
        await asyncio.sleep(0.3)  # anything from staging would have come by now
        frames = [conn.queue.get_nowait() for _ in range(conn.queue.qsize())]
        assert frames == [(1, b'{"from": "prod"}')]
        assert await relays["prod_a"].presence(user) == 1
        assert await relays["staging"].presence(user) == 0
    finally:
        for relay in relays.values():
            await relay.close()
