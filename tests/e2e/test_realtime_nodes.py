"""The WebSocket gateway across API nodes, on the real PostgreSQL and Redis.

- `test_across_nodes_and_reconnect_after`: a message published on node B reaches a
  socket on node A (Redis, per-user channels); presence on B counts A's socket; a
  client that drops, misses messages and reconnects with `after` gets exactly those,
  in order.
- `test_sigkill_of_the_node_holding_sockets`: node A is SIGKILLed while events flow; its
  clients reconnect to B and lose nothing; A's sockets leave presence within the TTL.
- `test_redis_restart`: on a Redis of the test's own, stopped while messages are
  published and started again: the relay resubscribes by itself and the sockets get
  what they missed from the store without reconnecting, then live messages again.
- `test_reconnect_storm`: 200 clients drop and reconnect at random to either node for
  20 s while events flow: every client ends with offsets 1..N, no gap, no duplicate.

Each test has a PostgreSQL schema of its own; the shared Redis on 6379 is only used,
never stopped (user ids are unique per test). Every wait is bounded and every process
killed in a `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import drop_schema, postgres_schema, postgres_url
from tests.e2e.procs import TidingsProcess, free_port
from tests.e2e.receiver import TidingsApi, eventually
from tests.e2e.test_scale_out import Cluster

pytestmark = pytest.mark.e2e

SHARED_REDIS = "redis://127.0.0.1:6379/0"
PRESENCE_TTL_S = 1.5


@dataclass
class Nodes(Cluster):
    """`tidings api` processes on one schema and one Redis (closed as a `Cluster`)."""

    redis_url: str = SHARED_REDIS

    async def start(self, count: int) -> None:
        env = {
            "TIDINGS_REDIS_URL": self.redis_url,
            "TIDINGS_WS_PRESENCE_TTL_S": str(PRESENCE_TTL_S),
            "TIDINGS_WS_CONNECT_RATE": "2000",
        }
        for _ in range(count):
            proc = TidingsProcess(self.workdir, self.database_url, role="api", extra_env=env)
            self.procs.append(proc)
            await asyncio.to_thread(proc.start)
            self.apis.append(TidingsApi(proc.url))


@contextlib.asynccontextmanager
async def nodes_for(
    tmp_path: Path, require_service: Callable[[str, int], None], redis_url: str = SHARED_REDIS
) -> AsyncIterator[Nodes]:
    require_service("PostgreSQL", 5432)
    require_service("Redis", 6379)
    schema = postgres_schema(tmp_path)
    await drop_schema(schema)
    nodes = Nodes(tmp_path, postgres_url(schema), schema, redis_url=redis_url)
    try:
        yield nodes
    finally:
        await nodes.close()


async def publish(api: TidingsApi, users: list[str], n: int) -> None:
    status, body = await api.call(
        "POST", "/v1/events", {"topic": "chat.msg", "recipients": users, "payload": {"n": n}}
    )
    assert status == 202, body


async def token(api: TidingsApi, user: str) -> str:
    status, body = await api.call("POST", f"/v1/users/{user}/token", {"ttl_s": 600})
    assert status == 200, body
    return str(body["token"])


async def presence(api: TidingsApi, user: str) -> int:
    status, body = await api.call("GET", f"/v1/presence?user_id={user}")
    assert status == 200, body
    return int(body["connections"])


@dataclass
class Follower:
    """One user's client: every message offset it got, resuming after the last."""

    user: str
    tok: str
    offsets: list[int] = field(default_factory=list)
    payloads: list[int] = field(default_factory=list)
    connects: int = 0

    @property
    def last(self) -> int:
        return self.offsets[-1] if self.offsets else 0

    async def follow(self, session: aiohttp.ClientSession, url: str, seconds: float) -> bool:
        """Connect with `after` = the last offset and read for `seconds` (or until the
        socket ends). Answers False when the node refused or could not be reached."""
        ws_url = f"{url}/v1/ws?user_id={self.user}&token={self.tok}&after={self.last}"
        try:
            async with session.ws_connect(ws_url, timeout=aiohttp.ClientWSTimeout(5)) as ws:
                self.connects += 1
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        msg = await ws.receive(timeout=left)
                    except TimeoutError:
                        break
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    frame = json.loads(msg.data)
                    if frame["type"] == "message":
                        self.offsets.append(frame["offset"])
                        self.payloads.append(frame["payload"]["n"])
            return True
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def until(
        self, session: aiohttp.ClientSession, url: str, top: int, within: float
    ) -> None:
        """Follow (reconnecting as needed) until the offset `top` came or `within` passed."""
        deadline = time.monotonic() + within
        while self.last < top and time.monotonic() < deadline:
            if not await self.follow(session, url, min(1.0, deadline - time.monotonic())):
                await asyncio.sleep(0.1)


def contiguous(offsets: list[int]) -> bool:
    return offsets == list(range(1, len(offsets) + 1))


# ---------------------------------------------------------------------------- tests
async def test_across_nodes_and_reconnect_after(
    tmp_path: Path, require_service: Callable[[str, int], None]
) -> None:
    async with nodes_for(tmp_path, require_service) as nodes:
        await nodes.start(2)
        a, b = nodes.apis
        user = f"x_{secrets.token_hex(4)}"
        tok = await token(b, user)  # a token from B opens a socket on A (one secret)
        async with aiohttp.ClientSession() as session:
            ws_url = f"{a.url}/v1/ws?user_id={user}&token={tok}"
            async with session.ws_connect(ws_url) as ws:
                welcome = json.loads((await ws.receive(timeout=5)).data)
                assert welcome == {"type": "welcome", "top": 0}
                await eventually(
                    lambda: _has_presence(b, user, 1), 5, "B sees A's socket in presence"
                )
                started = time.monotonic()
                for n in range(1, 4):
                    await publish(b, [user], n)
                got = [json.loads((await ws.receive(timeout=5)).data) for _ in range(3)]
                assert [(f["offset"], f["payload"]["n"]) for f in got] == [(1, 1), (2, 2), (3, 3)]
                assert time.monotonic() - started < 3  # pushed, not waited for
            # Dropped: messages published meanwhile on either node.
            for n in range(4, 9):
                await publish(a if n % 2 else b, [user], n)
            follower = Follower(user, tok, offsets=[1, 2, 3], payloads=[1, 2, 3])
            await follower.until(session, a.url, 8, within=10)
            assert follower.offsets == list(range(1, 9))
            assert follower.payloads == list(range(1, 9))
        await eventually(lambda: _has_presence(b, user, 0), 5, "the socket left presence")


async def _has_presence(api: TidingsApi, user: str, n: int) -> bool:
    return await presence(api, user) == n


async def test_sigkill_of_the_node_holding_sockets(
    tmp_path: Path, require_service: Callable[[str, int], None]
) -> None:
    async with nodes_for(tmp_path, require_service) as nodes:
        await nodes.start(2)
        a, b = nodes.apis
        tag = secrets.token_hex(4)
        followers = [Follower(f"k{i}_{tag}", await token(b, f"k{i}_{tag}")) for i in range(10)]
        users = [f.user for f in followers]
        published = 0
        async with aiohttp.ClientSession() as session:
            # Everyone on A first; events go in through B throughout.
            on_a = [asyncio.create_task(f.follow(session, a.url, 30)) for f in followers]
            await eventually(
                lambda: _has_presence(b, users[-1], 1), 5, "the last socket opened on A"
            )
            for _ in range(20):
                published += 1
                await publish(b, users, published)
            await asyncio.sleep(0.3)
            nodes.procs[0].kill()
            await asyncio.wait_for(asyncio.gather(*on_a), 10)  # the sockets end
            killed_at = time.monotonic()
            for _ in range(20):
                published += 1
                await publish(b, users, published)
            await asyncio.gather(*(f.until(session, b.url, published, 15) for f in followers))
            for f in followers:
                assert f.offsets == list(range(1, published + 1)), f.user
                assert f.payloads == list(range(1, published + 1)), f.user
                assert f.connects >= 2
            # A's heartbeats stopped with it: its sockets leave presence within the TTL.
            await eventually(lambda: _has_presence(b, users[0], 0), PRESENCE_TTL_S + 3, "ttl")
            assert time.monotonic() - killed_at < PRESENCE_TTL_S + 3


@contextlib.contextmanager
def own_redis(tmp_path: Path, port: int) -> Any:
    """A redis-server of this test's own (never the shared one), on `port`."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed")
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(
            subprocess.Popen(
                [binary, "--port", str(port), "--save", "", "--appendonly", "no"],
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop() -> None:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)

    try:
        start()
        yield start, stop
    finally:
        stop()


async def test_redis_restart(tmp_path: Path, require_service: Callable[[str, int], None]) -> None:
    port = free_port()
    with own_redis(tmp_path, port) as (start_redis, stop_redis):
        async with nodes_for(tmp_path, require_service, f"redis://127.0.0.1:{port}/0") as nodes:
            await nodes.start(2)
            a, b = nodes.apis
            user = f"r_{secrets.token_hex(4)}"
            f = Follower(user, await token(a, user))
            async with aiohttp.ClientSession() as session:
                reader = asyncio.create_task(f.follow(session, a.url, 25))
                await eventually(lambda: _has_presence(b, user, 1), 5, "socket open")
                await publish(b, [user], 1)
                await eventually(lambda: f.last == 1, 5, "live across nodes")
                stop_redis()
                for n in range(2, 6):  # published while Redis is away: no push reaches A
                    await publish(b, [user], n)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(start_redis)
                # The relay resubscribes by itself and nudges the socket to read the store.
                await eventually(lambda: f.last == 5, 10, "the missed ones, same socket")
                await publish(b, [user], 6)
                await eventually(lambda: f.last == 6, 5, "live again")
                assert f.offsets == list(range(1, 7)) and f.connects == 1
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader


async def test_reconnect_storm(tmp_path: Path, require_service: Callable[[str, int], None]) -> None:
    async with nodes_for(tmp_path, require_service) as nodes:
        await nodes.start(2)
        apis = nodes.apis
        tag = secrets.token_hex(4)
        users = [f"s{i}_{tag}" for i in range(200)]
        followers = [Follower(u, await token(apis[0], u)) for u in users]
        sent: dict[str, int] = dict.fromkeys(users, 0)
        rng = random.Random(15)
        storm_s = 20.0
        deadline = time.monotonic() + storm_s

        async def events(lane: int) -> None:
            n = 0
            while time.monotonic() < deadline and n < 1000:
                n += 1
                chosen = rng.sample(users, 10)
                await publish(apis[(n + lane) % 2], chosen, n)
                for u in chosen:
                    sent[u] += 1

        async def storm(f: Follower, session: aiohttp.ClientSession) -> None:
            rounds = 0
            while time.monotonic() < deadline and rounds < 400:
                rounds += 1
                if not await f.follow(session, rng.choice(apis).url, rng.uniform(0.05, 1.0)):
                    await asyncio.sleep(0.1)
                await asyncio.sleep(rng.uniform(0, 0.3))  # offline a moment

        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(
                *(events(lane) for lane in range(4)), *(storm(f, session) for f in followers)
            )
            await asyncio.gather(
                *(f.until(session, rng.choice(apis).url, sent[f.user], 30) for f in followers)
            )
        for f in followers:
            assert contiguous(f.offsets), (f.user, f.offsets)
            assert len(f.offsets) == sent[f.user], f.user
        print(
            f"storm: {sum(sent.values())} messages, {sum(f.connects for f in followers)} connects"
        )
        # Floors low enough for a loaded machine, high enough that the storm was one.
        assert sum(sent.values()) > 500
        assert sum(f.connects for f in followers) > 1000
