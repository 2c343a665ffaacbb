"""Cross-process wake-ups over the real Redis: delivered, and harmless when Redis is gone."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable

from tidings.engine.signals import RedisSignals

REDIS_URL = "redis://127.0.0.1:6379/0"


async def _wait(condition: Callable[[], bool], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


async def test_a_publisher_wakes_every_subscriber(
    require_service: Callable[[str, int], None],
) -> None:
    require_service("Redis", 6379)
    prefix = f"tidings:test:{secrets.token_hex(6)}:"
    publisher = RedisSignals(REDIS_URL, prefix=prefix)
    workers = [RedisSignals(REDIS_URL, prefix=prefix) for _ in range(2)]
    seen: list[list[str]] = [[], []]
    try:
        for i, w in enumerate(workers):
            w.subscribe(
                lambda i=i: seen[i].append("work"),  # type: ignore[misc]
                lambda i=i: seen[i].append("destinations"),  # type: ignore[misc]
            )
        # Once subscribed, each acts on what it may have missed before: destinations
        # changed, work announced (a worker that starts after a destination was created,
        # or comes back after Redis was away, must not wait for its next refresh).
        assert await _wait(lambda: all(s == ["destinations", "work"] for s in seen), 5), seen
        publisher.work()
        publisher.destinations()
        assert await _wait(lambda: all(len(s) == 4 for s in seen), 5), seen
        assert all(sorted(s[2:]) == ["destinations", "work"] for s in seen), seen
        other = RedisSignals(REDIS_URL, prefix=prefix + "other:")
        other.work()  # another prefix (another deployment) wakes nobody here
        await asyncio.sleep(0.3)
        await other.close()
        assert all(len(s) == 4 for s in seen), seen
    finally:
        for s in (publisher, *workers):
            await s.close()


async def test_publishing_without_redis_never_fails_or_blocks() -> None:
    signals = RedisSignals("redis://127.0.0.1:1/0")  # nothing listens on port 1
    woken: list[str] = []
    signals.subscribe(lambda: woken.append("w"), lambda: woken.append("d"))
    started = time.monotonic()
    for _ in range(20):
        signals.work()
    assert time.monotonic() - started < 0.1  # fire and forget
    await asyncio.sleep(0.5)
    await signals.close()  # the reconnecting subscriber stops cleanly
    assert woken == []
