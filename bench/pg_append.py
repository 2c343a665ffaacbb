"""The PostgreSQL store's ingest alone: CPU per event of its database backends.

    .venv/bin/python bench/pg_append.py                    # batches of 100, single events
    .venv/bin/python bench/pg_append.py --baseline SRC     # and the code of SRC, interleaved

No HTTP and no load generator: concurrent tasks of one process call
`PostgresStore.append_events` in a loop (scenario `batch`: 4 tasks of 100 events per
call; `single`: 32 tasks of one), ~1 KB events on distinct keys,
into a new schema with two fifo webhook destinations (so each event writes 2 deliveries),
the same shape as bench/ingest.py. After `--warmup` s it measures for `--duration` s:
events/s, and the CPU time of the store's own backends (their pids, read from
/proc/PID/stat: other sessions' load on a shared server is not counted) and of this
process, each per event. CPU per event is what moves with the schema and the statements;
events/s also moves with whatever else the machine is doing.

With `--baseline SRC` each repeat also runs the store from SRC (the src/ folder of
another checkout) in a child process, interleaved. The last line is a JSON object with
the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import time
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_URL = os.environ.get(
    "TIDINGS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PAYLOAD = b'{"seq":1,"note":"' + b"x" * 1000 + b'"}'


def _cpu_s(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK_TCK


async def _run(
    url: str, batch: int, clients: int, warmup: float, duration: float
) -> dict[str, Any]:
    import asyncpg
    import msgspec

    from tidings.model import DestinationSpec, EventIn
    from tidings.store.postgres import PostgresStore

    schema = "benchappend_" + secrets.token_hex(4)
    store = PostgresStore(f"{url}{'&' if '?' in url else '?'}schema={schema}")
    await store.open()
    try:
        for i in range(2):
            spec = {"kind": "webhook", "name": f"d{i}", "url": "http://127.0.0.1:9/x",
                    "topics": ["bench.*"], "ordering": "fifo"}  # fmt: skip
            await store.create_destination(msgspec.convert(spec, DestinationSpec), "whsec_a")
        counted = False
        stop = False
        events = 0

        async def client(c: int) -> None:
            nonlocal events
            k = 0
            while not stop:
                k += 1
                await store.append_events(
                    [
                        EventIn(
                            topic="bench.created", key=f"{c}-{k}-{j}", payload=msgspec.Raw(PAYLOAD)
                        )
                        for j in range(batch)
                    ]
                )
                if counted:
                    events += batch

        tasks = [asyncio.create_task(client(c)) for c in range(clients)]
        await asyncio.sleep(warmup)
        pool: Any = store._pool
        pids = {h._con.get_server_pid() for h in pool._holders if h._con is not None}
        counted = True
        db0, me0, t0 = _cpu_s(pids), resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        await asyncio.sleep(duration)
        counted = False
        db1, me1, t1 = _cpu_s(pids), resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        stop = True
        await asyncio.gather(*tasks)
    finally:
        await store.close()
        conn = await asyncpg.connect(url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    seconds = t1 - t0
    me = (me1.ru_utime + me1.ru_stime) - (me0.ru_utime + me0.ru_stime)
    return {
        "events_per_s": round(events / seconds),
        "db_us_per_event": round(1e6 * (db1 - db0) / events, 1),
        "store_us_per_event": round(1e6 * me / events, 1),
        "backends": len(pids),
    }


def run_child(script: str, argv: list[str], baseline: str | None) -> dict[str, Any]:
    """One measuring run of `script` in a child process (`--_one` + `argv`), with the code
    of `baseline` (a src/ folder) first on its path when given; its last line, as JSON."""
    env = dict(os.environ)
    if baseline:
        env["PYTHONPATH"] = baseline + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, script, "--_one", *argv]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres-url", default=DEFAULT_URL)
    ap.add_argument("--scenarios", default="batch,single", help="batch (100 x 4), single (1 x 32)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--baseline", help="src/ folder of another checkout, run interleaved")
    ap.add_argument("--_one", help=argparse.SUPPRESS)  # child: one run, JSON out
    args = ap.parse_args()
    shapes = {"batch": (100, 4), "single": (1, 32)}
    if args._one:
        batch, clients = shapes[args._one]
        out = asyncio.run(_run(args.postgres_url, batch, clients, args.warmup, args.duration))
        print(json.dumps(out))
        return
    medians: dict[str, Any] = {}
    for scenario in args.scenarios.split(","):
        runs: dict[str, list[dict[str, Any]]] = {"tidings": [], "base": []}
        for i in range(args.repeats):
            for target in ("base", "tidings") if args.baseline else ("tidings",):
                argv = [scenario, "--postgres-url", args.postgres_url,
                        "--warmup", str(args.warmup), "--duration", str(args.duration)]  # fmt: skip
                result = run_child(__file__, argv, args.baseline if target == "base" else None)
                runs[target].append(result)
                print(f"{scenario:6} {target:7} run {i + 1}/{args.repeats}: "
                      f"{result['events_per_s']:>8,} events/s | database "
                      f"{result['db_us_per_event']:6.1f} us/event | store process "
                      f"{result['store_us_per_event']:5.1f} us/event", flush=True)  # fmt: skip
        for target, results in runs.items():
            if not results:
                continue
            for key in ("events_per_s", "db_us_per_event", "store_us_per_event"):
                medians[f"{scenario}_{target}_{key}"] = statistics.median(r[key] for r in results)
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
