"""Bus destinations end to end, as the teams Tidings replaces run them, against real
servers of the tests' own (tests/bus_servers.py) and a real `tidings serve`.

- The Redis event delivery system's flow (seed 000): `POST /publish-event` for 20 users,
  a subscriber on the Redis channel and a reader of the Redis stream, while the Redis
  server is killed (SIGKILL) and started again mid-run. The stream reader sees every
  event, in order per user: an XADD Tidings counted done was acknowledged by Redis, and
  the append-only file kept it across the kill. Pub/sub keeps nothing, so the channel
  subscriber misses what was published while it was away; what it got is in order per
  user, and every delivery of both destinations is recorded delivered.
- NATS JetStream with the server restarted mid-run, gracefully (SIGTERM) and killed
  outright (SIGKILL): the stream holds every event once (its message count, and each
  `Nats-Msg-Id`), in order per key; a publish retried after the restart is stored once
  (JetStream drops the duplicate by its message id). A process kill keeps what the server
  had written to its files (the kernel has it); a power loss could lose what its file
  store had not yet synced, which is the server's own durability setting, not Tidings'.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
import redis.asyncio as aioredis
from nats.js.api import StreamConfig

from tests.bus_servers import NatsServer, RedisServer
from tests.e2e.procs import TidingsProcess
from tests.e2e.receiver import TidingsApi, eventually

pytestmark = pytest.mark.e2e

USERS = [f"user-{n}" for n in range(20)]
ROUNDS = 12  # events per user
FAST_RETRY = {"initial_ms": 100, "multiplier": 2.0, "max_ms": 1000, "max_attempts": 100}


def in_order_per_user(seen: list[tuple[str, int]]) -> dict[str, list[int]]:
    """Each user's rounds in the order first seen (a redelivery repeats one in place)."""
    firsts: dict[str, list[int]] = defaultdict(list)
    for user, n in seen:
        if n not in firsts[user]:
            firsts[user].append(n)
    return dict(firsts)


@contextlib.asynccontextmanager
async def tidings(tmp_path: Path, allowed: str) -> AsyncIterator[tuple[TidingsProcess, TidingsApi]]:
    proc = TidingsProcess(
        tmp_path,
        f"sqlite:///{tmp_path / 'tidings.db'}",
        extra_env={
            "TIDINGS_BUS_ALLOWED_URLS": allowed,
            "TIDINGS_POLL_INTERVAL_MS": "50",
            "TIDINGS_PAUSE_AFTER_FAILURES": "0",
        },
    )
    await asyncio.to_thread(proc.start)
    api = TidingsApi(proc.url)
    try:
        yield proc, api
    finally:
        await api.close()
        proc.stop()


async def delivered(api: TidingsApi, destination_id: str) -> int:
    total, cursor = 0, None
    while True:
        path = f"/v1/deliveries?destination_id={destination_id}&state=delivered&limit=1000"
        status, page = await api.call("GET", path + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, page
        total += len(page["items"])
        cursor = page["next"]
        if not cursor:
            return total


async def failed_attempts(api: TidingsApi) -> float:
    """Attempts that did not deliver, as /metrics counts them."""
    async with api.session.get(api.url + "/metrics") as r:
        text = await r.text()
    return sum(
        float(value)
        for outcome, value in re.findall(
            r'^tidings_delivery_attempts_total\{[^}]*outcome="(\w+)"[^}]*\} (\S+)$', text, re.M
        )
        if outcome != "delivered"
    )


# ------------------------------------------------------------------ Redis (seed 000)


class ChannelSubscriber:
    """A seed-000 consumer: SUBSCRIBE to the channel, resubscribe after Redis restarts."""

    def __init__(self, url: str, channel: str) -> None:
        self.url, self.channel = url, channel
        self.got: list[tuple[str, int]] = []
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def run(self) -> None:
        while True:
            client = aioredis.from_url(self.url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.connected.set()
                    async for message in pubsub.listen():
                        if message["type"] != "message":
                            continue
                        body = json.loads(message["data"])
                        assert body["type"] == "event.published", body
                        user, n = body["data"].rsplit(":", 1)
                        self.got.append((user, int(n)))
            except (aioredis.ConnectionError, OSError):
                self.connected.clear()
                self.reconnects += 1
                await asyncio.sleep(0.1)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()


class StreamReader:
    """A consumer of the stream: XREAD from the last id it saw, again after a restart."""

    def __init__(self, url: str, stream: str) -> None:
        self.url, self.stream = url, stream
        self.got: list[tuple[str, int]] = []
        self.ids: list[str] = []
        self.last = "0-0"

    async def run(self) -> None:
        while True:
            client = aioredis.from_url(self.url)
            try:
                while True:
                    answer = await client.xread({self.stream: self.last}, count=500, block=200)
                    for _, entries in answer:
                        for entry_id, fields in entries:
                            self.last = entry_id.decode()
                            assert set(fields) == {
                                b"id",
                                b"topic",
                                b"key",
                                b"payload",
                                b"received_at",
                            }, fields
                            user, n = json.loads(fields[b"payload"]).rsplit(":", 1)
                            assert fields[b"key"].decode() == user
                            assert fields[b"topic"] == b"event.published"
                            self.got.append((user, int(n)))
                            self.ids.append(fields[b"id"].decode())
            except (aioredis.ConnectionError, OSError):
                await asyncio.sleep(0.1)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()


async def test_seed_000_publish_event_to_a_channel_and_a_stream_across_a_redis_kill(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with tidings(tmp_path, redis_server.prefix) as (proc, api):
        common = {"topics": ["event.published"], "url": redis_server.url, "retry": FAST_RETRY}
        channel = await api.create_destination(
            kind="redis_channel", channel="sample-queue", timeout_ms=1000, **common
        )
        stream = await api.create_destination(
            kind="redis_stream", stream="events", maxlen=100_000, timeout_ms=1000, **common
        )
        subscriber = ChannelSubscriber(redis_server.url, "sample-queue")
        reader = StreamReader(redis_server.url, "events")
        tasks = [asyncio.create_task(subscriber.run()), asyncio.create_task(reader.run())]
        try:
            await asyncio.wait_for(subscriber.connected.wait(), 10)
            ids: list[str] = []
            for n in range(ROUNDS):
                for user in USERS:
                    status, body = await api.call(
                        "POST", "/publish-event", {"userId": user, "payload": f"{user}:{n}"}
                    )
                    assert status == 202, body
                    ids.append(body["id"])
                if n == ROUNDS // 3:
                    await asyncio.to_thread(redis_server.kill)
                    await asyncio.sleep(1.0)  # publish on while Redis is away
                if n == ROUNDS // 3 + 2:
                    await asyncio.to_thread(redis_server.start)
                await asyncio.sleep(0.1)
            total = len(USERS) * ROUNDS

            async def all_delivered() -> bool:
                return (
                    await delivered(api, stream["id"]) == total
                    and await delivered(api, channel["id"]) == total
                )

            await eventually(all_delivered, 60, "not every delivery was recorded delivered")
            await eventually(
                lambda: len(set(reader.ids)) == total,
                10,
                lambda: f"the stream reader saw {len(set(reader.ids))} of {total} events",
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert set(reader.ids) == set(ids)
        rounds = list(range(ROUNDS))
        assert in_order_per_user(reader.got) == {user: rounds for user in USERS}
        # The subscriber was away while Redis was: it has fewer, each user's in order.
        assert subscriber.reconnects >= 1
        assert subscriber.got, "the channel subscriber got nothing at all"
        for user, seen in in_order_per_user(subscriber.got).items():
            assert seen == sorted(seen), (user, seen)
        assert set(subscriber.got) <= {(u, n) for u in USERS for n in rounds}
        # The kill was mid-run: attempts failed and were retried.
        assert await failed_attempts(api) > 0
        assert "redis://:" not in proc.output()


# ------------------------------------------------------------------ NATS JetStream


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_nats_jetstream_across_a_server_restart_stores_each_event_once(
    tmp_path: Path, nats_server: NatsServer, how: str
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
    await nc.close()
    async with tidings(tmp_path, nats_server.prefix) as (_, api):
        d = await api.create_destination(
            kind="nats",
            url=nats_server.url,
            subject="orders.{key}",
            topics=["order.*"],
            timeout_ms=1000,
            retry=FAST_RETRY,
        )

        async def restart() -> None:  # while events keep coming
            await asyncio.to_thread(nats_server.stop if how == "sigterm" else nats_server.kill)
            await asyncio.sleep(1.5)
            await asyncio.to_thread(nats_server.start)

        ids: dict[str, tuple[str, int]] = {}
        restarting: asyncio.Task[None] | None = None
        for n in range(ROUNDS):
            for user in USERS:
                body = await api.publish("order.created", user, {"user": user, "n": n})
                ids[body["id"]] = (user, n)
            if n == ROUNDS // 3:
                restarting = asyncio.create_task(restart())
            await asyncio.sleep(0.15)
        assert restarting is not None
        await restarting
        total = len(ids)

        async def all_delivered() -> bool:
            return await delivered(api, d["id"]) == total

        await eventually(all_delivered, 60, "not every delivery was recorded delivered")
        assert await failed_attempts(api) > 0  # the restart was mid-run

    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("ORDERS")
        assert info.state.messages == total, info.state
        stored: list[str] = []
        seen: list[tuple[str, int]] = []
        for seq in range(1, info.state.last_seq + 1):
            msg = await js.get_msg("ORDERS", seq)
            assert msg.headers is not None
            stored.append(msg.headers["Nats-Msg-Id"])
            envelope = json.loads(msg.data or b"{}")
            user, n = envelope["data"]["user"], envelope["data"]["n"]
            assert msg.subject == f"orders.{user}"
            assert msg.headers["Tidings-Key"] == user
            seen.append((user, n))
        assert len(stored) == len(set(stored)) == total  # none stored twice
        assert set(stored) == set(ids)  # none missing
        assert in_order_per_user(seen) == {u: list(range(ROUNDS)) for u in USERS}
    finally:
        await nc.close()
