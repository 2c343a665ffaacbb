"""SDK benchmark: publishes/s through `tidings.AsyncClient` / `tidings.Client` beside a
bare aiohttp client doing the same requests, in the same run.

    .venv/bin/python bench/sdk.py                       # 3 repeats x 4 s per figure
    .venv/bin/python bench/sdk.py --duration 8 --repeats 5 --concurrency 1 32

What one invocation does
- starts two servers as subprocesses: `raw`, the trivial aiohttp + uvloop server of
  bench/ingest.py (reads the body, answers a canned 202: what is left is the client's own
  cost), and `tidings`, a real `tidings serve` on a fresh SQLite file;
- for each server, concurrency and repeat, runs each client for `--duration` seconds
  after a 1 s warm-up, interleaved (aiohttp, httpx2, sdk-async, aiohttp, ...), and
  counts the publishes answered 202 inside the window:
  - `aiohttp`: one ClientSession, each ~200-byte event encoded and each answer decoded
    with msgspec (what bench/ingest.py's load generator does, in-process);
  - `httpx2`: the same requests through a bare `httpx2.AsyncClient` (the SDK's HTTP
    library alone: what the SDK adds is the difference to `sdk-async`);
  - `sdk-async`: `AsyncClient.publish(...)`: encodes the event, makes an idempotency
    key, sends, decodes into `Published`;
  - `sdk-sync` (concurrency 1 only): `Client.publish(...)` in a loop;
  each with `concurrency` tasks sending one request at a time, in this one process;
- prints medians per (server, concurrency, client) and the SDK's ratio to aiohttp.

The last line of standard output is a JSON object with the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import msgspec

import tidings
from ingest import free_port, is_healthy, stop_process

HERE = Path(__file__).resolve().parent
API_KEY = "tdk_bench_sdk"
WARMUP_S = 1.0


class _Published(msgspec.Struct):
    id: str
    deliveries: int


def payload(n: int) -> dict[str, Any]:
    return {"user": f"user-{n % 1000}", "n": n, "note": "x" * 120}


async def run_aiohttp(url: str, concurrency: int, duration: float) -> int:
    decode = msgspec.json.Decoder(_Published).decode
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(n: int) -> None:
            body = msgspec.json.encode(
                {"topic": "bench.sdk", "key": f"k{n}", "payload": payload(n)}
            )
            async with session.post(url + "/v1/events", data=body) as r:
                decode(await r.read())
                assert r.status == 202, r.status

        return await _window(one, concurrency, duration)


async def run_httpx2(url: str, concurrency: int, duration: float) -> int:
    """The SDK's HTTP library alone: the aiohttp run's requests through httpx2."""
    decode = msgspec.json.Decoder(_Published).decode
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    async with httpx2.AsyncClient(base_url=url, headers=headers) as http:

        async def one(n: int) -> None:
            event = {"topic": "bench.sdk", "key": f"k{n}", "payload": payload(n)}
            r = await http.post("/v1/events", content=msgspec.json.encode(event))
            decode(r.content)
            assert r.status_code == 202, r.status_code

        return await _window(one, concurrency, duration)


async def run_sdk_async(url: str, concurrency: int, duration: float) -> int:
    async with tidings.AsyncClient(url, api_key=API_KEY) as client:

        async def one(n: int) -> None:
            await client.publish("bench.sdk", payload(n), key=f"k{n}")

        return await _window(one, concurrency, duration)


def run_sdk_sync(url: str, duration: float) -> int:
    with tidings.Client(url, api_key=API_KEY) as client:
        start = time.monotonic()
        w_start, w_end, n, counted = start + WARMUP_S, start + WARMUP_S + duration, 0, 0
        while time.monotonic() < w_end:
            client.publish("bench.sdk", payload(n), key=f"k{n}")
            n += 1
            done = time.monotonic()
            if w_start <= done < w_end:
                counted += 1
        return counted


async def _window(one: Any, concurrency: int, duration: float) -> int:
    """Publishes completed inside [start + warm-up, + duration), by `concurrency` tasks."""
    start = time.monotonic()
    w_start, w_end = start + WARMUP_S, start + WARMUP_S + duration
    counted = 0
    seq = iter(range(10**9))

    async def task() -> None:
        nonlocal counted
        while time.monotonic() < w_end:
            await one(next(seq))
            done = time.monotonic()
            if w_start <= done < w_end:
                counted += 1

    await asyncio.gather(*(task() for _ in range(concurrency)))
    return counted


def start_server(kind: str, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    if kind == "tidings":
        env.update(
            TIDINGS_DATABASE_URL=f"sqlite:///{work / 'tidings.db'}",
            TIDINGS_API_KEY=API_KEY,
            TIDINGS_PORT=str(port),
            TIDINGS_LOG_LEVEL="warning",
        )
        argv = [sys.executable, "-m", "tidings.cli", "serve"]
    else:
        argv = [sys.executable, str(HERE / "ingest.py"), "_raw-server", str(port), "1"]
    log = (work / f"{kind}.log").open("wb")
    proc = subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not is_healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{kind} server did not start: {(work / f'{kind}.log').read_text()}")
        time.sleep(0.05)
    return proc, url


def one_run(client: str, url: str, concurrency: int, duration: float) -> float:
    """Publishes/s of one client for one window."""
    if client == "aiohttp":
        done = asyncio.run(run_aiohttp(url, concurrency, duration))
    elif client == "httpx2":
        done = asyncio.run(run_httpx2(url, concurrency, duration))
    elif client == "sdk-async":
        done = asyncio.run(run_sdk_async(url, concurrency, duration))
    else:
        done = run_sdk_sync(url, duration)
    return done / duration


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args(argv)
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="tidings-bench-sdk-") as tmp:
        for kind in ("raw", "tidings"):
            work = Path(tmp) / kind
            work.mkdir()
            proc, url = start_server(kind, work)
            try:
                for c in args.concurrency:
                    clients = ["aiohttp", "httpx2", "sdk-async"] + (["sdk-sync"] if c == 1 else [])
                    for repeat in range(args.repeats):
                        for client in clients:
                            rate = one_run(client, url, c, args.duration)
                            figures.setdefault(f"{kind}_c{c}_{client}", []).append(rate)
                            print(f"{kind:8} c={c:<3} {client:10} run {repeat + 1}: {rate:8,.0f}/s")
            finally:
                stop_process(proc, 10)
    medians = {name: round(statistics.median(rates)) for name, rates in figures.items()}
    print("\n# medians (publishes/s) and the SDK's ratio to aiohttp, same server and concurrency")
    for name, value in medians.items():
        base = medians[name.rsplit("_", 1)[0] + "_aiohttp"]
        print(f"{name:32} {value:8,}  ratio {value / base:.2f}")
    print(json.dumps(medians))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
