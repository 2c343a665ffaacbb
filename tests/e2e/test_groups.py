"""Pull groups across two real processes: a long poll on one node is woken at once by
an event published on another, through PostgreSQL LISTEN/NOTIFY, or through Redis on a
shared SQLite file (which has no notifications of its own). The fallback poll is a
second, so an answer within a fraction of it after the publish is the wake-up's doing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import drop_schema, postgres_schema, postgres_url
from tests.e2e.procs import API_KEY, TidingsProcess
from tidings import AsyncClient, Lease

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("via", ["postgresql", "redis"])
async def test_a_long_poll_is_woken_by_a_publish_on_another_node(
    tmp_path: Path, via: str, require_service: Callable[[str, int], None]
) -> None:
    env = {"TIDINGS_POLL_INTERVAL_MS": "1000"}
    if via == "postgresql":
        require_service("PostgreSQL", 5432)
        db = postgres_url(postgres_schema(tmp_path))
    else:
        require_service("Redis", 6379)
        db = f"sqlite:///{tmp_path / 'shared.db'}"
        env["TIDINGS_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    publisher = TidingsProcess(tmp_path, db, role="serve", extra_env=env)
    publisher.start()
    poller = TidingsProcess(tmp_path, db, role="api", extra_env=env)
    poller.start()
    try:
        async with (
            AsyncClient(publisher.url, api_key=API_KEY) as pub,
            AsyncClient(poller.url, api_key=API_KEY) as pol,
        ):
            await pub.create_destination("group", ["user.*"], name="blog")
            lags = []
            for i in range(3):

                async def poll() -> tuple[float, list[Lease]]:
                    items = (await pol.lease("blog", wait_ms=10_000)).items
                    return time.monotonic(), items

                waiting = asyncio.create_task(poll())
                await asyncio.sleep(0.3)  # the poll has looked once and waits
                assert not waiting.done()
                published = time.monotonic()
                await pub.publish("user.renamed", {"i": i}, key=f"u{i}")
                answered, items = await asyncio.wait_for(waiting, 15)
                assert len(items) == 1 and items[0].event.payload == {"i": i}
                lags.append(answered - published)
                ids = [items[0].lease_id]
                assert (await pol.ack("blog", ids)).ok == ids
        # Well within the one-second fallback poll, every time.
        assert max(lags) < 0.5, lags
    finally:
        poller.stop()
        publisher.stop()
        if via == "postgresql":
            await drop_schema(postgres_schema(tmp_path))
