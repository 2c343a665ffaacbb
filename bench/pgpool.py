"""What returning an asyncpg connection to the pool costs: acquire, `SELECT 1`, release,
with asyncpg's default reset (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
ALL` on every release: one more round trip) against the no-op reset Tidings' store uses
(`reset=` of `asyncpg.create_pool`; asyncpg still rolls back an open transaction).

    .venv/bin/python bench/pgpool.py [--postgres-url URL] [--cycles 3000] [--repeats 3]

Per cycle, medians of the repeats (alternating): wall time, this process's CPU and the
CPU of the pool's one backend (/proc/PID/stat: the server must run on this machine for
that column). The last line of standard output is a JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import asyncpg

from ingest import CLK_TCK, DEFAULT_POSTGRES_URL


async def no_reset(conn: Any) -> None:
    return None


def backend_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def cycles(url: str, mode: str, n: int) -> tuple[float, float, float]:
    """(wall, client CPU, backend CPU) in us per acquire + query + release."""
    extra = {"reset": no_reset} if mode == "none" else {}
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1, **extra)
    try:
        async with pool.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        b0, c0, t0 = backend_cpu(pid), time.process_time(), time.perf_counter()
        for _ in range(n):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        backend = backend_cpu(pid) - b0
    finally:
        await pool.close()
    return wall / n * 1e6, cpu / n * 1e6, backend / n * 1e6


async def run(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, list[tuple[float, float, float]]] = {"default": [], "none": []}
    for _ in range(args.repeats):
        for mode in found:
            found[mode].append(await cycles(args.postgres_url, mode, args.cycles))
    out: dict[str, Any] = {}
    for mode, rows in found.items():
        wall, cpu, backend = (statistics.median(r[i] for r in rows) for i in range(3))
        print(
            f"reset {mode:8} per cycle: wall {wall:6.0f} us, client CPU {cpu:4.0f} us, "
            f"backend CPU {backend:4.0f} us (wall of each run: {[round(r[0]) for r in rows]})"
        )
        out[mode] = {
            "wall_us": round(wall),
            "client_cpu_us": round(cpu),
            "backend_us": round(backend),
        }
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench/pgpool.py", description=__doc__.split("\n")[0])
    p.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    p.add_argument("--cycles", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
