"""The PostgreSQL store's delivery path alone: CPU per delivery of its database backends.

    .venv/bin/python bench/pg_deliver.py                    # 500 events/s, 4 destinations
    .venv/bin/python bench/pg_deliver.py --baseline SRC     # and the code of SRC, interleaved

No HTTP, no engine, no senders: one store ingests single events at `--rate` per second
(`--keys` distinct keys, ~1 KB each) into a new schema with `--destinations` fifo webhook
destinations, while `--workers` stores (the worker processes) each loop over
`claim` (every destination, up to 128 each) and `complete` (every claimed delivery
delivered), waiting for a NOTIFY when a round found nothing: the statements the engine sends,
at the batching a moderate rate gives them, without the rest of the machine's load in
the figure. After `--warmup` s it measures for `--duration` s the CPU time of the
stores' own backends (their pids, from /proc/PID/stat), per delivery and per statement
sent (claims + completes + ingest calls), and the deliveries completed per second; a
connection of its own (not measured) ANALYZEs the tables every `--analyze-every` s, as
autovacuum would, as bench/cpu.py does.
CPU per delivery is what moves with the schema and the statements.

With `--baseline SRC` each repeat also runs the store from SRC (the src/ folder of
another checkout) in a child process, interleaved. The last line is a JSON object with
the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import sys
import time
from typing import Any

from pg_append import DEFAULT_URL, PAYLOAD, _cpu_s, run_child


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg
    import msgspec

    from tidings.model import AttemptResult, ClaimAsk, Completion, DestinationSpec, EventIn
    from tidings.store.postgres import PostgresStore
    from tidings.timeutil import now_us

    schema = "benchdeliver_" + secrets.token_hex(4)
    url = f"{args.postgres_url}{'&' if '?' in args.postgres_url else '?'}schema={schema}"
    ingest = PostgresStore(url)
    await ingest.open()
    workers = [PostgresStore(url) for _ in range(args.workers)]
    dests = []
    counted = stop = False
    delivered = calls = 0
    try:
        for w in workers:
            await w.open()
        for i in range(args.destinations):
            spec = {"kind": "webhook", "name": f"d{i}", "url": "http://127.0.0.1:9/x",
                    "topics": ["bench.*"], "ordering": "fifo"}  # fmt: skip
            d = await ingest.create_destination(msgspec.convert(spec, DestinationSpec), "whsec_a")
            dests.append(d.id)

        async def publish() -> None:
            nonlocal calls
            start, n = time.monotonic(), 0
            while not stop:
                key = f"k{n % args.keys}"
                await ingest.append_events(
                    [EventIn(topic="bench.created", key=key, payload=msgspec.Raw(PAYLOAD))]
                )
                calls += counted
                n += 1
                await asyncio.sleep(max(0.0, start + n / args.rate - time.monotonic()))

        async def work(store: PostgresStore, owner: str) -> None:
            nonlocal delivered, calls
            asks = [ClaimAsk(destination_id=d, limit=128, lease_us=60_000_000) for d in dests]
            woken = asyncio.Event()
            await store.listen(woken.set, woken.set)  # NOTIFY, as the engine is woken
            while not stop:
                woken.clear()
                got = await store.claim(owner, asks, now_us())
                calls += counted
                if not got.claims:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), timeout=0.2)
                    continue
                done = [
                    Completion(
                        delivery_id=c.delivery_id,
                        destination_id=c.destination_id,
                        lane_key=c.lane_key,
                        owner=owner,
                        attempt=AttemptResult(at=now_us(), outcome="delivered", latency_ms=1.0),
                        state="delivered",
                        next_attempt_at=None,
                        release_lane=True,
                        failed=False,
                        event_id=c.event_id,
                        attempt_number=c.attempt,
                    )
                    for c in got.claims
                ]
                await store.complete(done, 100)
                calls += counted
                delivered += len(done) * counted

        async def analyze() -> None:  # as autovacuum would (off on some servers)
            conn = await asyncpg.connect(args.postgres_url, server_settings={"search_path": schema})
            try:
                while not stop:
                    await asyncio.sleep(args.analyze_every)
                    await conn.execute("ANALYZE events, deliveries, attempts")
            finally:
                await conn.close()

        tasks = [asyncio.create_task(publish())]
        if args.analyze_every > 0:
            tasks.append(asyncio.create_task(analyze()))
        tasks += [asyncio.create_task(work(w, f"w{i}")) for i, w in enumerate(workers)]
        await asyncio.sleep(args.warmup)
        pids: set[int] = set()
        for s in (ingest, *workers):
            pool: Any = s._pool
            pids |= {h._con.get_server_pid() for h in pool._holders if h._con is not None}
        counted = True
        db0, t0 = _cpu_s(pids), time.monotonic()
        await asyncio.sleep(args.duration)
        counted = False
        db1, t1 = _cpu_s(pids), time.monotonic()
        stop = True
        await asyncio.gather(*tasks)
    finally:
        for s in (ingest, *workers):
            await s.close()
        conn = await asyncpg.connect(args.postgres_url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    seconds = t1 - t0
    return {
        "deliveries_per_s": round(delivered / seconds),
        "db_us_per_delivery": round(1e6 * (db1 - db0) / max(1, delivered), 1),
        "db_us_per_call": round(1e6 * (db1 - db0) / max(1, calls), 1),
        "calls_per_delivery": round(calls / max(1, delivered), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres-url", default=DEFAULT_URL)
    ap.add_argument("--rate", type=float, default=500.0, help="single events/s ingested")
    ap.add_argument("--destinations", type=int, default=4)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument(
        "--analyze-every", type=float, default=5.0, metavar="S", help="ANALYZE every S s (0: never)"
    )
    ap.add_argument("--baseline", help="src/ folder of another checkout, run interleaved")
    ap.add_argument("--_one", action="store_true", help=argparse.SUPPRESS)  # child: one run
    args = ap.parse_args()
    if args._one:
        print(json.dumps(asyncio.run(_run(args))))
        return
    runs: dict[str, list[dict[str, Any]]] = {"tidings": [], "base": []}
    passed = [a for a in sys.argv[1:] if a != "--baseline" and a != args.baseline]
    for i in range(args.repeats):
        for target in ("base", "tidings") if args.baseline else ("tidings",):
            result = run_child(__file__, passed, args.baseline if target == "base" else None)
            runs[target].append(result)
            print(f"{target:7} run {i + 1}/{args.repeats}: "
                  f"{result['deliveries_per_s']:>6,} deliveries/s | database "
                  f"{result['db_us_per_delivery']:6.1f} us/delivery, "
                  f"{result['db_us_per_call']:6.1f} us/call, "
                  f"{result['calls_per_delivery']:.3f} calls/delivery", flush=True)  # fmt: skip
    medians: dict[str, Any] = {}
    for target, results in runs.items():
        for key in results[0] if results else ():
            medians[f"{target}_{key}"] = statistics.median(r[key] for r in results)
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
