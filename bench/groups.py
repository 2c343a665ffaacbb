"""Pull-group benchmark: lease + ack round trips per second one HTTP client gets.

    .venv/bin/python bench/groups.py                 # 3 runs x (healthz, max=1, max=100)
    .venv/bin/python bench/groups.py --events 20000 --repeats 5

What one run does: starts a real `tidings serve` on a fresh SQLite file in a temporary
directory, creates a fifo pull group and publishes `--events` events over `--keys` keys
(batches of 1000, before the clock starts), then one aiohttp client (one keep-alive
connection, one request at a time, uvloop) drains the group: `POST .../lease` with
`max`, then `POST .../ack` with every lease id it got, until nothing is left. Reported:
lease+ack round trips/s and events/s. The baseline, in the same run and on the same
server and connection: `GET /healthz` requests/s (the HTTP stack with no work behind
it), each lease+ack round trip being two requests. At the end the group's metrics must
show nothing waiting and nothing leased, and every event acked exactly once (exit 2 if
not). Medians of `--repeats` runs; the last line of stdout is their JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

KEY = "tdk_bench_groups_key"
HEADERS = {"Authorization": f"Bearer {KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "TIDINGS_DATABASE_URL": f"sqlite:///{workdir / 'tidings.db'}",
        "TIDINGS_API_KEY": KEY,
        "TIDINGS_PORT": str(port),
        "TIDINGS_LOG_LEVEL": "warning",
    }
    log = (workdir / "server.log").open("wb")
    tidings = Path(sys.executable).with_name("tidings")
    proc = subprocess.Popen([str(tidings), "serve"], env=env, stdout=log, stderr=log)
    return proc, f"http://127.0.0.1:{port}"


async def wait_healthy(s: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with s.get(url + "/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("tidings serve did not come up")


async def healthz_rate(s: aiohttp.ClientSession, url: str, seconds: float) -> float:
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        async with s.get(url + "/healthz") as r:
            await r.read()
        n += 1
    return n / seconds


async def drain(
    s: aiohttp.ClientSession, url: str, group: str, batch: int
) -> tuple[int, int, float]:
    """(round trips, events acked, seconds) to empty the group."""
    trips = acked = 0
    started = time.monotonic()
    while True:
        async with s.post(f"{url}/v1/groups/{group}/lease", json={"max": batch}) as r:
            items = (await r.json())["items"]
        if not items:
            return trips, acked, time.monotonic() - started
        ids = [x["lease_id"] for x in items]
        async with s.post(f"{url}/v1/groups/{group}/ack", json={"ids": ids}) as r:
            done = await r.json()
        if done["lost"]:
            raise SystemExit(f"acks lost: {done['lost'][:3]}")
        trips += 1
        acked += len(done["ok"])


async def one_run(events: int, keys: int, batches: list[int]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tidings-bench-groups-") as tmp:
        proc, url = start_server(Path(tmp))
        try:
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(headers=HEADERS, connector=connector) as s:
                await wait_healthy(s, url)
                out: dict[str, float] = {"healthz_per_s": await healthz_rate(s, url, 2.0)}
                for batch in batches:
                    group = f"g{batch}"
                    body = {"kind": "group", "name": group, "topics": [f"{group}.*"]}
                    async with s.post(url + "/v1/destinations", json=body) as r:
                        assert r.status == 201, await r.text()
                    for start in range(0, events, 1000):
                        chunk = [
                            {"topic": f"{group}.x", "key": f"k{i % keys}", "payload": {"i": i}}
                            for i in range(start, min(events, start + 1000))
                        ]
                        async with s.post(url + "/v1/events/batch", json={"events": chunk}) as r:
                            assert r.status == 202, await r.text()
                    trips, acked, took = await drain(s, url, group, batch)
                    if acked != events:
                        print(f"acked {acked} of {events} (max={batch})", file=sys.stderr)
                        raise SystemExit(2)
                    out[f"max{batch}_trips_per_s"] = trips / took
                    out[f"max{batch}_events_per_s"] = acked / took
                async with s.get(url + "/metrics") as r:
                    text = await r.text()
                for batch in batches:
                    for gauge in ("tidings_group_backlog", "tidings_group_leased"):
                        if f'{gauge}{{group="g{batch}"}} 0.0' not in text:
                            print(f"{gauge} of g{batch} is not 0 after the drain", file=sys.stderr)
                            raise SystemExit(2)
                return out
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="1,100", help="lease `max` values, comma separated")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    runs = []
    for i in range(args.repeats):
        run = asyncio.run(one_run(args.events, args.keys, batches))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:,.0f}" for k, v in run.items()))
        runs.append(run)
    medians: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    for batch in batches:
        # Two requests per round trip, against healthz requests/s: the share of the HTTP
        # stack's ceiling a lease+ack cycle reaches.
        trips = medians[f"max{batch}_trips_per_s"]
        medians[f"max{batch}_vs_healthz"] = round(2 * trips / medians["healthz_per_s"], 3)
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
