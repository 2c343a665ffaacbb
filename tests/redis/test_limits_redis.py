"""RedisLimiter against the real Redis on 127.0.0.1:6379.

One shared bucket across separate clients ("workers"), giving back, independent
destinations, the local fallback when Redis is unreachable or silent, and recovery when
it returns (through a TCP proxy the test can take down and bring back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from tidings.engine.limits import Grant, RedisLimiter

REDIS_PORT = 6379
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}"
LOGGER = "tidings.engine.limits"


@pytest.fixture
async def redis(
    require_service: Callable[[str, int], None],
) -> AsyncIterator[aioredis.Redis]:
    require_service("Redis", REDIS_PORT)
    client = aioredis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def prefix(redis: aioredis.Redis) -> AsyncIterator[str]:
    p = f"tidings:test:rl:{uuid.uuid4().hex}:"
    try:
        yield p
    finally:
        keys = [k async for k in redis.scan_iter(match=p + "*", count=1000)]
        if keys:
            await redis.delete(*keys)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


async def test_workers_share_one_bucket(redis: aioredis.Redis, prefix: str) -> None:
    rate, burst, want, duration = 20.0, 2.0, 2, 2.0
    limiters = [RedisLimiter(REDIS_URL, prefix=prefix) for _ in range(3)]
    rng = random.Random()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration

    async def worker(lim: RedisLimiter) -> int:
        got = 0
        for _ in range(5_000):
            if loop.time() >= deadline:
                break
            g = await lim.acquire("dest", rate, want)
            assert 0 <= g.granted <= want
            got += g.granted
            if g.granted < want:
                assert g.retry_in_s > 0
                # jittered as the dispatcher does: six workers sleeping exactly
                # retry_in_s wake in the same order every time, and one limiter's
                # workers could lose every race for 2 s (seen in CI)
                wait = g.retry_in_s * (1 + 0.2 * rng.random())
                await asyncio.sleep(max(0.0, min(wait, deadline - loop.time())))
        return got

    started = time.monotonic()
    try:
        counts = await asyncio.gather(*(worker(lim) for lim in limiters for _ in range(2)))
        elapsed = time.monotonic() - started
        assert not any(lim.degraded for lim in limiters)  # every grant came from Redis
    finally:
        for lim in limiters:
            await lim.close()
    total = sum(counts)
    ceiling = burst + rate * elapsed + 1
    assert total <= ceiling, (counts, elapsed)
    assert total >= 0.8 * ceiling, (counts, elapsed)
    assert all(counts[2 * i] + counts[2 * i + 1] > 0 for i in range(3))  # each worker got some


async def test_bucket_state_and_expiry(redis: aioredis.Redis, prefix: str) -> None:
    lim = RedisLimiter(REDIS_URL, prefix=prefix)
    try:
        assert await lim.acquire("d", 20, 1) == Grant(1, 0.0)
    finally:
        await lim.close()
    state = await redis.hgetall(prefix + "d")
    assert set(state) == {b"tokens", b"ts"}
    assert float(state[b"tokens"]) == pytest.approx(1.0, abs=0.2)
    ttl_ms = await redis.pttl(prefix + "d")
    assert 59_000 < ttl_ms <= 60_100  # burst/rate (0.1 s) + 60 s of inactivity


async def test_retry_in_and_give_back(redis: aioredis.Redis, prefix: str) -> None:
    lim = RedisLimiter(REDIS_URL, prefix=prefix)
    try:
        assert (await lim.acquire("d", 20, 10)).granted == 2  # a new bucket is full: burst 2
        g = await lim.acquire("d", 20, 10)
        assert g.granted == 0
        assert 0 < g.retry_in_s <= 0.05 + 1e-6
        await lim.give_back("d", 20, 1)
        assert (await lim.acquire("d", 20, 10)).granted == 1
        await lim.give_back("d", 20, 100)  # capped at the burst
        assert (await lim.acquire("d", 20, 10)).granted == 2
        await lim.give_back("d", 20, 0)
        assert await lim.acquire("d", 20, 0) == Grant(0, 0.0)
        assert not lim.degraded
    finally:
        await lim.close()


async def test_destinations_are_independent(redis: aioredis.Redis, prefix: str) -> None:
    a, b = RedisLimiter(REDIS_URL, prefix=prefix), RedisLimiter(REDIS_URL, prefix=prefix)
    try:
        assert (await a.acquire("one", 20, 10)).granted == 2
        assert (await b.acquire("one", 20, 10)).granted == 0  # same bucket from another worker
        assert (await b.acquire("two", 20, 10)).granted == 2
        assert (await a.acquire("two", 20, 10)).granted == 0
        await a.give_back("one", 20, 2)
        assert (await b.acquire("two", 20, 10)).granted == 0
        assert (await b.acquire("one", 20, 10)).granted == 2
    finally:
        await a.close()
        await b.close()
    assert await redis.exists(prefix + "one", prefix + "two") == 2


async def test_more_concurrent_calls_than_connections(redis: aioredis.Redis, prefix: str) -> None:
    lim = RedisLimiter(REDIS_URL, prefix=prefix, max_connections=3)
    try:
        grants = await asyncio.gather(*(lim.acquire(f"d{i}", 20, 5) for i in range(60)))
        assert not lim.degraded
    finally:
        await lim.close()
    assert all(g.granted == 2 for g in grants)  # each a new, full Redis bucket
    assert await redis.exists(*(f"{prefix}d{i}" for i in range(60))) == 60


async def test_closed_port_falls_back_quickly_and_warns_once(
    redis: aioredis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    lim = RedisLimiter("redis://127.0.0.1:1", prefix=prefix, retry_redis_after_s=0.05)
    granted = 0
    try:
        for _ in range(4):  # each round waits past retry_redis_after_s: Redis is retried
            t0 = time.monotonic()
            g = await lim.acquire("d", 20, 3)
            assert time.monotonic() - t0 < 1.0
            assert g.granted < 3 and g.retry_in_s > 0
            granted += g.granted
            await lim.give_back("d", 20, 0)
            await asyncio.sleep(0.06)
        assert lim.degraded
    finally:
        await lim.close()
    assert granted >= 1  # the local fallback limits, it does not block
    assert len(warnings_of(caplog)) == 1


async def test_silent_redis_times_out_quickly(
    redis: aioredis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that accepts and never answers costs one socket timeout, then the fallback."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    handlers: list[asyncio.Task[None] | None] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())
        try:
            for _ in range(1_000):
                if not await reader.read(4096):
                    break
        except OSError:
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lim = RedisLimiter(f"redis://127.0.0.1:{port}", prefix=prefix, timeout_s=0.3)
    try:
        t0 = time.monotonic()
        g = await lim.acquire("d", 20, 1)
        assert time.monotonic() - t0 < 1.0
        assert g == Grant(1, 0.0)  # from the fallback
        t0 = time.monotonic()
        await lim.acquire("d", 20, 1)  # within retry_redis_after_s: no Redis call at all
        assert time.monotonic() - t0 < 0.05
    finally:
        await lim.close()
        server.close()
        tasks = [task for task in handlers if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        await asyncio.sleep(0.01)  # aborted transports close their sockets in a callback
    assert len(warnings_of(caplog)) == 1


class Proxy:
    """A TCP proxy to Redis that can go down (refusing and cutting connections) and up."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for t in list(self._transports):
            t.abort()  # RST: cut existing connections at once
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._transports.clear()
        await asyncio.sleep(0.01)  # aborted transports close their sockets in a callback

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._transports.add(writer.transport)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            self._tasks.discard(task)
            return
        self._transports.add(up_writer.transport)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.transport.abort()
                self._transports.discard(w.transport)
            self._tasks.discard(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):  # ends when the connection does
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


async def test_recovers_when_redis_comes_back(
    redis: aioredis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    key = prefix + "d"
    proxy = Proxy(REDIS_PORT)
    await proxy.start()
    lim = RedisLimiter(f"redis://127.0.0.1:{proxy.port}", prefix=prefix, retry_redis_after_s=0.2)
    try:
        assert (await lim.acquire("d", 20, 1)).granted == 1
        assert await redis.exists(key) == 1  # through the proxy to Redis
        await redis.delete(key)

        await proxy.stop()  # Redis "goes down": the pooled connection is cut, no listener
        for _ in range(2):  # the first call and one probe after retry_redis_after_s
            t0 = time.monotonic()
            g = await lim.acquire("d", 20, 1)
            assert time.monotonic() - t0 < 1.0
            assert lim.degraded
            assert await redis.exists(key) == 0
            await asyncio.sleep(0.25)
        assert g.granted + (await lim.acquire("d", 20, 1)).granted >= 1  # local tokens

        await proxy.start()  # same port
        await lim.acquire("d", 20, 1)
        assert await redis.exists(key) == 0  # still inside retry_redis_after_s
        await asyncio.sleep(0.25)
        assert (await lim.acquire("d", 20, 1)).granted == 1  # a fresh Redis bucket
        assert not lim.degraded
        assert await redis.exists(key) == 1
        assert await redis.pttl(key) > 0
        await lim.give_back("d", 20, 1)
        assert float(await redis.hget(key, "tokens") or 0) == pytest.approx(2.0, abs=0.01)
    finally:
        await lim.close()
        await proxy.stop()
    assert len(warnings_of(caplog)) == 1
    assert any(r.levelno == logging.INFO and "back" in r.getMessage() for r in caplog.records)
