"""Dashboard benchmark: how long the overview takes with 1,000,000 deliveries in a SQLite
store, against the same reads on a store of 25,000 deliveries with the same backlog and
dead letters, measured in the same run.

    .venv/bin/python bench/dashboard.py                       # 1M deliveries, 100 repeats
    .venv/bin/python bench/dashboard.py --deliveries 100000   # smaller, quicker

What one run does
- fills a fresh SQLite store (a temporary directory) through the store interface, in
  bulk: `--destinations` (10) unordered webhook destinations subscribed to `order.*`,
  then events in batches of 2,000, each fanned out to every destination, until
  `--deliveries` exist; then all but `--pending` (10,000: the backlog) are claimed and
  completed, `--dead` (10,000) of them dead and the rest delivered, one attempt each with
  a latency: a store that has run a while, with attempts to compute health from;
- does the same for the baseline store of `--baseline` (25,000) deliveries: the same
  backlog and dead letters, far fewer delivered. The backlog is counted row by row (its
  oldest is asked too), so it costs what it holds; what the ratio shows is that the rest
  of the table (the delivered deliveries and their attempts) costs nothing;
- times, `--repeats` times each (after 5 warm-up calls), in this order: the overview's
  reads as the SSE stream does them (`figures.overview`, with the previous sample, so
  the rate counts run), the destinations page's reads (`figures.destination_rows`, with
  health over the newest 2,000 attempts), and `GET /` through the real aiohttp app on a
  real port with a signed-in session (HTML rendered, over loopback HTTP);
- prints the medians and p95 per store, and the ratio big/baseline (about 1 means the
  read does not grow with the table); the last line is a JSON object of the medians.

Fails (exit status 2) if the big store does not hold the deliveries asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from tidings.api.app import create_app, start_site
from tidings.api.auth import digest
from tidings.config import Settings
from tidings.dashboard import figures
from tidings.model import (
    Answer,
    AttemptResult,
    ClaimAsk,
    Completion,
    EventIn,
    Raw,
    WebhookSpec,
)
from tidings.store.base import Store
from tidings.store.sqlite import SQLiteStore
from tidings.timeutil import US, now_us

KEY = "tdk_bench_dashboard"
BATCH = 2_000


async def fill(store: Store, deliveries: int, destinations: int, pending: int, dead: int) -> None:
    ids = []
    for i in range(destinations):
        d = await store.create_destination(
            WebhookSpec(
                name=f"dest-{i}",
                url="https://example.com/hook",
                topics=["order.*"],
                ordering="none",
            ),
            "whsec_AAAA",
        )
        ids.append(d.id)
    events = deliveries // destinations
    payload = Raw(b'{"order": 12345, "total": 99.5}')
    for start in range(0, events, BATCH):
        n = min(BATCH, events - start)
        await store.append_events(
            [
                EventIn(topic="order.created", key=f"k{(start + j) % 5000}", payload=payload)
                for j in range(n)
            ]
        )
    # Per destination: the last `pending` stay pending (the backlog), the `dead` before
    # them die, every other one is delivered (one attempt each).
    to_complete = events - pending // destinations
    dead_from = to_complete - dead // destinations
    for d in ids:
        done = 0
        while done < to_complete:
            ask = ClaimAsk(
                destination_id=d, limit=min(5_000, to_complete - done), lease_us=600 * US
            )
            batch = await store.claim("bench", [ask], now_us())
            if not batch.claims:
                break
            completions = []
            for c in batch.claims:
                ok = done < dead_from
                done += 1
                completions.append(
                    Completion(
                        delivery_id=c.delivery_id,
                        destination_id=c.destination_id,
                        lane_key=c.lane_key,
                        owner="bench",
                        attempt=AttemptResult(
                            at=now_us(),
                            outcome="delivered" if ok else "http_error",
                            latency_ms=5.0 + (done % 50),
                            error=None if ok else "HTTP 500",
                            answer=Answer(200 if ok else 500, "ok"),
                        ),
                        state="delivered" if ok else "dead",
                        next_attempt_at=None,
                        release_lane=True,
                        failed=not ok,
                    )
                )
            await store.complete(completions, pause_after=0)


async def timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    for _ in range(5):
        await fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 3),
    }


async def measure(
    path: Path, deliveries: int, destinations: int, pending: int, dead: int, repeats: int
) -> dict[str, dict[str, float]]:
    store = SQLiteStore(str(path))
    await store.open()
    try:
        t = time.perf_counter()
        await fill(store, deliveries, destinations, pending, dead)
        fill_s = time.perf_counter() - t
        rows = await figures.destination_rows(store, with_health=False)
        held = sum(r.backlog + r.dead for r in rows)
        total = 0
        for r in rows:
            for state in ("delivered", "dead", "pending"):
                total += await store.count_deliveries(r.destination.id, state, None, None, 10**9)
        if total < deliveries * 0.99:
            print(f"store holds {total} deliveries, asked {deliveries}", file=sys.stderr)
            sys.exit(2)
        print(
            f"  {path.name}: {total:,} deliveries ({held:,} pending or dead),"
            f" filled in {fill_s:.1f} s"
        )

        sample: list[figures.Sample | None] = [None]

        async def overview() -> None:
            _, sample[0] = await figures.overview(store, sample[0], time.monotonic())

        async def destinations_page() -> None:
            await figures.destination_rows(store)

        settings = Settings(database_url=f"sqlite:///{path}", port=0, api_key=KEY)
        app = create_app(settings, store, [digest(KEY)])
        runner, port = await start_site(app, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}"
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.post(url + "/ui/signin", data={"key": KEY, "next": "/"}) as r:
                assert r.status == 200 and re.search("Overview", await r.text())

            async def page() -> None:
                async with http.get(url + "/") as r:
                    await r.read()
                    assert r.status == 200

            result = {
                "overview_reads": summary(await timed(overview, repeats)),
                "destinations_reads": summary(await timed(destinations_page, repeats)),
                "get_overview_page": summary(await timed(page, repeats)),
            }
        await runner.cleanup()
        return result
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=25_000)
    parser.add_argument("--pending", type=int, default=10_000, help="the backlog, in both")
    parser.add_argument("--dead", type=int, default=10_000, help="dead letters, in both")
    parser.add_argument("--destinations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tidings-bench-dashboard-") as tmp:
        print("filling the stores…")
        shape = (args.destinations, args.pending, args.dead, args.repeats)
        base = await measure(Path(tmp) / "baseline.db", args.baseline, *shape)
        big = await measure(Path(tmp) / "big.db", args.deliveries, *shape)
    print(f"\n{'read':<22}{'baseline median':>16}{'big median':>12}{'big p95':>10}{'ratio':>8}")
    for name in base:
        b, g = base[name]["median_ms"], big[name]["median_ms"]
        print(f"{name:<22}{b:>14.2f}ms{g:>10.2f}ms{big[name]['p95_ms']:>8.2f}ms{g / b:>8.2f}")
    print(
        json.dumps(
            {
                "deliveries": args.deliveries,
                "baseline_deliveries": args.baseline,
                "pending": args.pending,
                "dead": args.dead,
                "baseline": base,
                "big": big,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
