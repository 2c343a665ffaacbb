"""WAL bytes, CPU and rate per event of tablesize.py's loads (batch ingest, single-event
ingest, claim + complete) on existing SQLite store files, e.g. copies of a filled
`tablesize.py --dir` store with one index changed, measured in one process:

    .venv/bin/python bench/tablesize.py --delivered 0 --pending 1000000 --runs 0 \\
        --retention-s 0 --dir /tmp/backlog               # fill once (about a minute)
    cp /tmp/backlog/full.db /tmp/a.db   # (then change a.db, or run another checkout)
    .venv/bin/python bench/walbytes.py /tmp/a.db /tmp/b.db --runs 2

The store's checkpointer and its backstop are off while it runs, and before each load a
TRUNCATE checkpoint empties the WAL, so the WAL's growth over a load is every page its
commits wrote (SQLite writes a dirtied page whole, once per commit). WAL KiB per event (or
delivery) needs no quiet machine; the CPU time is this process's (all of SQLite's work),
the rate is only indicative on a loaded one. A store of a newer schema than the checkout
is opened as is; an older one is migrated first. The stores are changed (events added,
deliveries claimed): measure copies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import tablesize

import tidings.store.sqlite as sqlite_store

LOADS: dict[str, tuple[int, Callable[[sqlite_store.SQLiteStore, list[str]], Awaitable[float]]]] = {
    "batch": (tablesize.BATCH_EVENTS, lambda s, _: tablesize.batch_ingest(s)),
    "single": (
        tablesize.SINGLE_TASKS * (tablesize.SINGLE_EVENTS // tablesize.SINGLE_TASKS),
        lambda s, _: tablesize.single_ingest(s),
    ),
    "claim": (tablesize.CLAIM_DELIVERIES, tablesize.claim_rate),
}


def wal_size(path: str) -> int:
    try:
        return os.path.getsize(f"{path}-wal")
    except FileNotFoundError:
        return 0


def empty_wal(path: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()


async def measure(path: str, loads: list[str]) -> dict[str, tuple[float, float, float]]:
    store = sqlite_store.SQLiteStore(path)
    await store.open()
    try:
        dests = await tablesize.destinations_of(store, 2)
        out = {}
        for name in loads:
            count, fn = LOADS[name]
            empty_wal(path)
            wal, cpu = wal_size(path), time.process_time()
            rate = await fn(store, dests)
            out[name] = (
                (wal_size(path) - wal) / count / 1024,
                (time.process_time() - cpu) / count * 1e6,
                rate,
            )
        return out
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+", help="SQLite store files (changed: use copies)")
    parser.add_argument("--runs", type=int, default=1, help="rounds over the stores")
    parser.add_argument("--loads", default="batch,single,claim")
    opts = parser.parse_args()
    sqlite_store.CHECKPOINT_EVERY_S = 1e9  # read when the store opens
    sqlite_store.BACKSTOP_PAGES = 1 << 40
    loads = opts.loads.split(",")
    for r in range(opts.runs):
        for path in opts.stores:
            got = asyncio.run(measure(path, loads))
            print(
                f"run {r + 1} {Path(path).name:16} "
                + "  ".join(
                    f"{k}: {w:.2f} KiB WAL, {c:.1f} us CPU, {x:,.0f}/s"
                    for k, (w, c, x) in got.items()
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
