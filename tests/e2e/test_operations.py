"""Operations against a real `tidings serve`: retention and Prometheus metrics."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import drop_schema, postgres_schema, postgres_url
from tests.e2e.procs import API_KEY, TidingsProcess, WorkerProcess, free_port

pytestmark = pytest.mark.e2e
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[str]]]:
    """A receiver on 127.0.0.1: /ok answers 200, /down 500; it records paths."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request.path)
        return web.Response(status=200 if request.path == "/ok" else 500)

    app = web.Application()
    app.router.add_post("/{name}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def _until(check: object, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within_s} s: {what}")


def _serve(tmp_path: Path, **env: str) -> TidingsProcess:
    proc = TidingsProcess(tmp_path, f"sqlite:///{tmp_path / 'ops.db'}")
    proc.extra_env.update(
        {"TIDINGS_ALLOW_PRIVATE_TARGETS": "1", "TIDINGS_POLL_INTERVAL_MS": "100", **env}
    )
    proc.start()
    return proc


async def test_retention_zero_deletes_delivered_events_and_keeps_dead_ones(
    tmp_path: Path, hook: tuple[str, list[str]]
) -> None:
    base, _ = hook
    proc = _serve(tmp_path, TIDINGS_RETENTION_TTL_S="0")
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as s:
            for name, path, topics in (("ok", "/ok", ["a.*", "b.*"]), ("down", "/down", ["b.*"])):
                body = {
                    "kind": "webhook",
                    "name": name,
                    "url": base + path,
                    "topics": topics,
                    "retry": {"max_attempts": 1},
                }
                async with s.post(proc.url + "/v1/destinations", json=body) as r:
                    assert r.status == 201, await r.text()
            ids = []
            for i in range(5):
                async with s.post(
                    proc.url + "/v1/events", json={"topic": "a.x", "key": str(i)}
                ) as r:
                    ids.append((await r.json())["id"])
            async with s.post(proc.url + "/v1/events", json={"topic": "b.x"}) as r:
                kept = (await r.json())["id"]

            async def status(event_id: str) -> int:
                async with s.get(f"{proc.url}/v1/events/{event_id}") as r:
                    return r.status

            async def swept() -> bool:
                return all([await status(i) == 404 for i in ids])

            await _until(swept, 15, "delivered events deleted by retention")
            async with s.get(f"{proc.url}/v1/events/{kept}") as r:
                assert r.status == 200
                states = sorted(d["state"] for d in (await r.json())["deliveries"])
            assert states == ["dead", "delivered"]  # a dead delivery keeps its event
    finally:
        proc.stop()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_count_ingest_outcomes_latency_and_backlog(
    tmp_path: Path, hook: tuple[str, list[str]]
) -> None:
    base, seen = hook
    proc = _serve(tmp_path)
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as s:
            ids = {}
            for name, path in (("ok", "/ok"), ("held", "/ok")):
                body = {"kind": "webhook", "name": name, "url": base + path, "topics": ["m.*"]}
                async with s.post(proc.url + "/v1/destinations", json=body) as r:
                    ids[name] = (await r.json())["id"]
            async with s.patch(
                f"{proc.url}/v1/destinations/{ids['held']}", json={"state": "paused"}
            ) as r:
                assert r.status == 200 and (await r.json())["state"] == "paused"
            batch = {"events": [{"topic": "m.x", "key": f"k{i % 3}"} for i in range(12)]}
            async with s.post(proc.url + "/v1/events/batch", json=batch) as r:
                assert r.status == 202

            async def all_sent() -> bool:
                return len(seen) >= 12

            await _until(all_sent, 15, "12 deliveries to the active destination")
            await asyncio.sleep(0.3)  # the outcomes' write
            async with s.get(proc.url + "/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain")
                samples = _samples(await r.text())
        ok, held = ids["ok"], ids["held"]
        assert samples[("tidings_events_ingested_total", ())] == 12
        key = (("destination", ok), ("outcome", "delivered"))
        assert samples[("tidings_delivery_attempts_total", key)] == 12
        assert (
            samples[("tidings_deliveries_total", (("destination", ok), ("state", "delivered")))]
            == 12
        )
        assert samples[("tidings_attempt_latency_seconds_count", (("destination", ok),))] == 12
        backlog = (("destination", held), ("state", "pending"))
        assert samples[("tidings_backlog", backlog)] == 12
        assert samples[("tidings_oldest_pending_age_seconds", (("destination", held),))] > 0
        assert ("tidings_backlog", (("destination", ok), ("state", "pending"))) not in samples
        assert len(seen) == 12  # nothing was sent to the paused destination
    finally:
        proc.stop()


async def test_a_separate_worker_serves_its_own_metrics(
    tmp_path: Path, hook: tuple[str, list[str]]
) -> None:
    """The engine's counters live in the worker process: with TIDINGS_METRICS_PORT a
    `tidings worker` serves them (and its health), and nothing else."""
    base, seen = hook
    env = {"TIDINGS_ALLOW_PRIVATE_TARGETS": "1", "TIDINGS_POLL_INTERVAL_MS": "100"}
    db = f"sqlite:///{tmp_path / 'split.db'}"
    api = TidingsProcess(tmp_path, db, role="api", extra_env=env)
    metrics_port = free_port()
    worker = WorkerProcess(
        tmp_path, db, extra_env={**env, "TIDINGS_METRICS_PORT": str(metrics_port)}
    )
    api.start()
    worker.start()
    probe = f"http://127.0.0.1:{metrics_port}"
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as s:
            body = {"kind": "webhook", "url": base + "/ok", "topics": ["w.*"]}
            async with s.post(api.url + "/v1/destinations", json=body) as r:
                destination_id = (await r.json())["id"]
            batch = {"events": [{"topic": "w.x", "key": f"k{i}"} for i in range(5)]}
            async with s.post(api.url + "/v1/events/batch", json=batch) as r:
                assert r.status == 202

            async def counted() -> bool:
                async with s.get(probe + "/metrics") as r:
                    samples = _samples(await r.text())
                key = (("destination", destination_id), ("outcome", "delivered"))
                return samples.get(("tidings_delivery_attempts_total", key)) == 5

            await _until(counted, 15, "the worker's /metrics counting 5 delivered attempts")
            assert len(seen) == 5
            async with s.get(probe + "/healthz") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
            async with s.get(probe + "/readyz") as r:
                assert r.status == 200
            async with s.get(probe + "/v1/events") as r:  # no API on the worker
                assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    finally:
        worker.stop()
        api.stop()


async def test_redis_signals_wake_a_separate_worker_at_once(
    tmp_path: Path,
    hook: tuple[str, list[str]],
    require_service: Callable[[str, int], None],
) -> None:
    """`tidings api` and `tidings worker` on one SQLite file (no LISTEN/NOTIFY there): with
    TIDINGS_REDIS_URL the worker is woken by the API at once, not at its next poll."""
    require_service("Redis", 6379)
    base, seen = hook
    env = {
        "TIDINGS_ALLOW_PRIVATE_TARGETS": "1",
        "TIDINGS_POLL_INTERVAL_MS": "10000",  # polling alone would take up to 10 s
        "TIDINGS_REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    db = f"sqlite:///{tmp_path / 'split.db'}"
    api = TidingsProcess(tmp_path, db, role="api", extra_env=env)
    worker = WorkerProcess(tmp_path, db, extra_env=env)
    api.start()
    worker.start()
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as s:
            body = {"kind": "webhook", "url": base + "/ok", "topics": ["s.*"]}
            async with s.post(api.url + "/v1/destinations", json=body) as r:
                assert r.status == 201
            await asyncio.sleep(0.5)  # the worker learns of the destination (signal)
            latencies = []
            for i in range(5):
                before = len(seen)
                started = time.monotonic()
                async with s.post(api.url + "/v1/events", json={"topic": "s.x", "key": str(i)}):
                    pass

                async def arrived(before: int = before) -> bool:
                    return len(seen) > before

                await _until(arrived, 5, f"delivery {i} through the separate worker")
                latencies.append(time.monotonic() - started)
        assert max(latencies) < 2.0, latencies
    finally:
        worker.stop()
        api.stop()


async def test_on_postgresql_redis_carries_no_wake_ups(
    tmp_path: Path,
    hook: tuple[str, list[str]],
    require_service: Callable[[str, int], None],
) -> None:
    """`tidings api` and `tidings worker` on PostgreSQL with TIDINGS_REDIS_URL: NOTIFY wakes
    the worker at once, and neither process subscribes to or publishes Redis wake-ups,
    which would only repeat each NOTIFY (a claim round more per ingest)."""
    require_service("PostgreSQL", 5432)
    require_service("Redis", 6379)
    base, seen = hook
    prefix = f"t{secrets.token_hex(4)}:"
    env = {
        "TIDINGS_ALLOW_PRIVATE_TARGETS": "1",
        "TIDINGS_POLL_INTERVAL_MS": "10000",  # polling alone would take up to 10 s
        "TIDINGS_REDIS_URL": "redis://127.0.0.1:6379/0",
        "TIDINGS_REDIS_PREFIX": prefix,
    }
    schema = postgres_schema(tmp_path)
    await drop_schema(schema)
    api = TidingsProcess(tmp_path, postgres_url(schema), role="api", extra_env=env)
    worker = WorkerProcess(tmp_path, postgres_url(schema), extra_env=env)
    redis = aioredis.from_url("redis://127.0.0.1:6379/0")
    api.start()
    worker.start()
    try:
        monitor = redis.pubsub()
        await monitor.psubscribe(prefix + "signal:*")
        async with aiohttp.ClientSession(headers=HEADERS) as s:
            body = {"kind": "webhook", "url": base + "/ok", "topics": ["s.*"]}
            async with s.post(api.url + "/v1/destinations", json=body) as r:
                assert r.status == 201
            await asyncio.sleep(0.5)  # the worker learns of the destination (NOTIFY)
            started = time.monotonic()
            async with s.post(api.url + "/v1/events", json={"topic": "s.x", "key": "k"}) as r:
                assert r.status == 202

            async def arrived() -> bool:
                return len(seen) == 1

            await _until(arrived, 5, "the delivery through the separate worker")
            assert time.monotonic() - started < 2.0
        subscribers = await redis.pubsub_numsub(
            prefix + "signal:work", prefix + "signal:destinations"
        )
        assert [n for _, n in subscribers] == [0, 0]
        heard = await monitor.get_message(ignore_subscribe_messages=True, timeout=0.2)
        assert heard is None, heard  # nothing was published either
        await monitor.aclose()
    finally:
        await redis.aclose()
        worker.stop()
        api.stop()
        await drop_schema(schema)
