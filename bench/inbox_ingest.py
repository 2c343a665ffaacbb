"""Inbox ingest cost: a batch of 1,000 events with 10 recipients each against the same
batch with none (issue 15 asks for at most 2x), through the store itself.

    .venv/bin/python bench/inbox_ingest.py                    # SQLite, then PostgreSQL
    .venv/bin/python bench/inbox_ingest.py --database sqlite --batches 30

Each run opens a fresh store (SQLite: a file in a temporary directory; PostgreSQL: a new
schema of --postgres-url, dropped after), creates two webhook destinations subscribed to
`bench.*` (so every event also writes two delivery rows, as bench/ingest.py does), then
alternates batches without and with recipients (`--batches` of each; recipients drawn
from `--users` users, 10 distinct per event) and reports the median milliseconds per
batch of each kind and their ratio. This is the store's own time (the HTTP layer, the
same for both kinds, is left out, so the ratio is the strictest one). The last line of
standard output is a JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import msgspec

from tidings.model import DestinationSpec, EventIn
from tidings.store.base import Store, open_store

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def batch(n: int, recipients: int, users: int, rng: random.Random, tail: bytes) -> list[EventIn]:
    return [
        EventIn(
            topic="bench.created",
            key=f"k{rng.randrange(1_000_000)}",
            payload=msgspec.Raw(b'{"i": %d, "pad": "%s"}' % (i, tail)),
            recipients=[f"user-{u}" for u in rng.sample(range(users), recipients)]
            if recipients
            else [],
        )
        for i in range(n)
    ]


async def run_one(store: Store, args: argparse.Namespace) -> dict[str, float]:
    await store.open()
    try:
        for name in ("a", "b"):
            spec = DestinationSpec(
                kind="webhook", url="https://example.com/h", topics=["bench.*"], name=name
            )
            await store.create_destination(spec, "whsec_bench")
        rng = random.Random(7)
        tail = b"x" * args.pad  # ~1 KB events by default, as bench/ingest.py sends
        times: dict[int, list[float]] = {0: [], args.recipients: []}
        for _ in range(args.warmup):
            await store.append_events(batch(args.size, args.recipients, args.users, rng, tail))
        for _ in range(args.batches):
            for recipients in (0, args.recipients):
                events = batch(args.size, recipients, args.users, rng, tail)
                t0 = time.perf_counter()
                await store.append_events(events)
                times[recipients].append((time.perf_counter() - t0) * 1000)
        without = statistics.median(times[0])
        with_ = statistics.median(times[args.recipients])
        return {"without_ms": round(without, 2), "with_ms": round(with_, 2),
                "ratio": round(with_ / without, 2)}  # fmt: skip
    finally:
        await store.close()


async def drop_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--recipients", type=int, default=10)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--pad", type=int, default=900, help="payload padding bytes")
    args = parser.parse_args()
    out: dict[str, dict[str, float]] = {}
    if args.database in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            out["sqlite"] = await run_one(open_store(f"sqlite:///{Path(tmp) / 'b.db'}"), args)
        print("sqlite", out["sqlite"], flush=True)
    if args.database in ("postgres", "both"):
        schema = f"bench_{secrets.token_hex(4)}"
        try:
            out["postgres"] = await run_one(
                open_store(f"{args.postgres_url}?schema={schema}"), args
            )
        finally:
            await drop_schema(args.postgres_url, schema)
        print("postgres", out["postgres"], flush=True)
    print(json.dumps({"batch_size": args.size, "recipients": args.recipients, **out}))


if __name__ == "__main__":
    asyncio.run(main())
