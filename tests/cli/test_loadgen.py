"""`tidings bench`'s load generator (tidings.loadgen.run_load) against a real HTTP server
on 127.0.0.1 that answers as the test scripts it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from tidings.loadgen import LoadPlan, run_load


@dataclass
class Script:
    """Answers request n (from 0) with statuses(n); records the bodies it got."""

    statuses: Callable[[int], int]
    bodies: list[dict[str, object]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Script]]:
    script = Script(lambda n: 202)

    async def handle(request: web.Request) -> web.Response:
        n = len(script.bodies)
        script.bodies.append(json.loads(await request.read()))
        script.paths.append(request.path)
        script.auth.append(request.headers.get("Authorization"))
        await asyncio.sleep(0)
        status = script.statuses(n)
        return web.json_response({"n": n}, status=status)

    app = web.Application()
    app.router.add_post("/v1/events", handle)
    app.router.add_post("/v1/events/batch", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", script
    finally:
        await runner.cleanup()


def plan(events: int, concurrency: int = 4, batch_size: int = 1, keys: int = 5) -> LoadPlan:
    return LoadPlan(events, concurrency, batch_size, 64, "bench.t", keys)


async def test_single_events_each_sent_once(server: tuple[str, Script]) -> None:
    url, script = server
    seen: list[int] = []
    result = await run_load(url, "k1", plan(57), seen.append)
    assert result.accepted == 57 and sum(seen) == 57 and len(result.latencies_ms) == 57
    assert sorted(b["payload"]["n"] for b in script.bodies) == list(range(57))  # type: ignore[index]
    assert {b["key"] for b in script.bodies} == {f"k{i}" for i in range(5)}
    assert set(script.paths) == {"/v1/events"} and set(script.auth) == {"Bearer k1"}
    assert result.stopped is None and not result.failures


async def test_batches_split_the_events_exactly(server: tuple[str, Script]) -> None:
    url, script = server
    result = await run_load(url, None, plan(105, concurrency=3, batch_size=20))
    assert result.accepted == 105
    sizes = sorted(len(b["events"]) for b in script.bodies)  # type: ignore[arg-type]
    assert sizes == [5, 20, 20, 20, 20, 20]
    numbers = [e["payload"]["n"] for b in script.bodies for e in b["events"]]  # type: ignore[attr-defined,index]
    assert sorted(numbers) == list(range(105))
    assert set(script.paths) == {"/v1/events/batch"} and set(script.auth) == {None}


async def test_server_errors_are_counted_and_the_run_goes_on(server: tuple[str, Script]) -> None:
    url, script = server
    script.statuses = lambda n: 503 if n in (3, 4, 9) else 202
    result = await run_load(url, None, plan(30, concurrency=2))
    assert result.accepted == 27 and dict(result.failures) == {503: 3}
    assert len(script.bodies) == 30 and result.stopped is None
    assert result.first_error is not None and result.first_error.startswith("503: ")


async def test_a_4xx_stops_the_run_and_names_itself(server: tuple[str, Script]) -> None:
    url, script = server
    script.statuses = lambda n: 503 if n == 0 else (401 if n >= 5 else 202)
    result = await run_load(url, None, plan(1000, concurrency=4))
    assert result.stopped is not None and result.stopped.startswith("stopped: 401: ")
    assert result.first_error is not None and result.first_error.startswith("503: ")
    assert result.accepted == 4
    # The clients stop at once: at most one request each after the first 401.
    assert len(script.bodies) <= 5 + 4


async def test_an_unreachable_server_stops_the_run() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await run_load(f"http://127.0.0.1:{port}", None, plan(10, concurrency=2))
    assert result.accepted == 0
    assert result.stopped is not None and "cannot reach Tidings" in result.stopped
    assert result.first_error is not None and "cannot reach" in result.first_error
