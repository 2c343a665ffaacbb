"""`tidings bench`: publish a number of events to a running Tidings and measure it.

Owns the load generator (aiohttp, one keep-alive connection per concurrent client, each
sending one request at a time) and the summary of what it measured. It only talks HTTP to
the URL it is given; it never opens a store. The repository's `bench/` holds the
benchmarks with baselines; this is the quick check of a deployment.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp


@dataclass(frozen=True)
class LoadPlan:
    events: int
    concurrency: int
    batch_size: int  # 1: POST /v1/events; more: POST /v1/events/batch
    payload_bytes: int
    topic: str
    keys: int  # events rotate over this many keys (lanes)


@dataclass
class LoadResult:
    accepted: int = 0  # events answered 202 (or 200 for a repeat)
    elapsed_s: float = 0.0
    # One per successful request; an array of doubles (8 bytes each, not a float object).
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    failures: Counter[int] = field(default_factory=Counter)  # by status (0: no answer)
    first_error: str | None = None
    stopped: str | None = None  # why the run stopped early, if it did


class Refused(Exception):
    """The server refused the requests themselves (4xx): going on would only repeat it."""


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in [0, 100]) of values sorted ascending; 0 if none."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary(plan: LoadPlan, result: LoadResult) -> dict[str, object]:
    """What `tidings bench` prints, as one JSON-able object."""
    lat = sorted(result.latencies_ms)
    rate = result.accepted / result.elapsed_s if result.elapsed_s > 0 else 0.0
    return {
        "events": result.accepted,
        "events_per_s": round(rate, 1),
        "elapsed_s": round(result.elapsed_s, 3),
        "requests": len(lat),
        "batch_size": plan.batch_size,
        "concurrency": plan.concurrency,
        "latency_ms": {
            "p50": round(percentile(lat, 50), 2),
            "p95": round(percentile(lat, 95), 2),
            "p99": round(percentile(lat, 99), 2),
            "max": round(lat[-1], 2) if lat else 0.0,
        },
        "failed_requests": {str(k): v for k, v in sorted(result.failures.items())},
        "first_error": result.first_error,
        "stopped": result.stopped,
    }


def _event(plan: LoadPlan, n: int, filler: str) -> dict[str, object]:
    return {
        "topic": plan.topic,
        "key": f"k{n % plan.keys}",
        "payload": {"n": n, "fill": filler},
    }


async def run_load(
    url: str,
    api_key: str | None,
    plan: LoadPlan,
    progress: Callable[[int], None] = lambda n: None,
    request_timeout_s: float = 30.0,
) -> LoadResult:
    """Publish `plan.events` events; `progress` is told of each acknowledged request's
    event count. Stops early, with `result.stopped`, when the server cannot be reached or
    answers a 4xx (a bad key, a too-large payload: every request would fail alike); other
    failures (5xx, timeouts) are counted and the run goes on."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    filler = "x" * max(0, plan.payload_bytes - 20)  # the rest of the payload is ~20 bytes
    single = plan.batch_size == 1
    endpoint = url.rstrip("/") + ("/v1/events" if single else "/v1/events/batch")
    result = LoadResult()
    next_n = 0

    def take() -> list[int] | None:
        nonlocal next_n
        if next_n >= plan.events:
            return None
        size = min(plan.batch_size, plan.events - next_n)
        numbers = list(range(next_n, next_n + size))
        next_n += size
        return numbers

    async def client(session: aiohttp.ClientSession) -> None:
        while (numbers := take()) is not None:
            events = [_event(plan, n, filler) for n in numbers]
            body = json.dumps(events[0] if single else {"events": events}).encode()
            t0 = time.perf_counter()
            try:
                async with session.post(endpoint, data=body, headers=headers) as response:
                    text = await response.text()
                    status = response.status
            except aiohttp.ClientConnectorError as exc:
                result.failures[0] += 1
                message = f"cannot reach Tidings at {url}: {exc.os_error}"
                result.first_error = result.first_error or message
                raise Refused(message) from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, text = 0, f"no answer: {exc!r}"
            if status in (200, 202):
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)
                result.accepted += len(numbers)
                progress(len(numbers))
                continue
            result.failures[status] += 1
            message = f"{status or 'error'}: {text[:300]}"
            result.first_error = result.first_error or message
            if 400 <= status < 500:
                raise Refused(message)

    timeout = aiohttp.ClientTimeout(total=request_timeout_s)
    connector = aiohttp.TCPConnector(limit=plan.concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        start = time.perf_counter()
        tasks = [asyncio.create_task(client(session)) for _ in range(plan.concurrency)]
        try:
            await asyncio.gather(*tasks)
        except Refused as exc:
            result.stopped = f"stopped: {exc}"
        finally:
            # Whatever ended the run, no client outlives the session it sends through.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            result.elapsed_s = time.perf_counter() - start
    return result
