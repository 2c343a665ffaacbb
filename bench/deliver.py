"""Delivery benchmark: webhook deliveries/s of a real `tidings serve`, the raw ceiling of the
same HTTP client, Celery + Redis doing the same job, and the latency from 202 to delivery.

    .venv/bin/pip install -e ".[bench]"                    # Celery + Redis client (celery runs)
    .venv/bin/python bench/deliver.py                      # both scenarios, 3 repeats
    .venv/bin/python bench/deliver.py --scenario throughput --events 20000 --repeats 3 --save
    .venv/bin/python bench/deliver.py --scenario throughput --only raw,celery --events 2000 \\
        --repeats 1                                        # no Tidings involved
    .venv/bin/python bench/deliver.py --scenario latency --rate 500 --latency-seconds 10
    .venv/bin/python bench/deliver.py --scenario throughput --only raw,tidings \\
        --database postgres --workers 2                    # tidings api + 2 tidings worker
    .venv/bin/python bench/deliver.py --scenario throughput --only raw,tidings \\
        --database postgres --workers 2 --repeats 5 --pin-receiver 1   # the ratio, paired

Everything runs on 127.0.0.1; Redis must listen on 127.0.0.1:6379 for the celery runs (db 15
is flushed before and after each of them: `--celery-broker` picks another).

The receiver
A separate process (this file, `_receiver` mode; aiohttp low-level server on uvloop) that
reads each POST and answers 204 at once. Per path (/d0 ... /d3, one per destination) it
counts requests and keeps, in first-arrival order, each `webhook-id` with the
time.monotonic() of its first arrival (CLOCK_MONOTONIC is one clock for every process of
the machine), plus the first few requests whole (headers and body) for the checks below.
The driver polls GET /stats and reads GET /arrivals and GET /samples at the end.

Scenario `throughput`: N events (`--events`, default 20,000, ~1 KB payloads, keys spread
over `--keys` lanes) fanned out to 4 webhook destinations = 4 N deliveries. Each run starts
a fresh receiver, and the figure is deliveries/s = 4 N / (last first-arrival - start).
Targets, interleaved in each repeat (raw, tidings, celery-<pool>...):
- `raw`, the ceiling: one process (aiohttp ClientSession + uvloop, the stack Tidings uses)
  posts the same webhook bodies (`{"type","timestamp","data"}`) with the same headers
  (`webhook-id`, `webhook-timestamp`, `webhook-signature` = HMAC-SHA256 computed per
  request, `tidings-attempt`), `--max-in-flight` requests in flight per destination;
  bodies are built before the clock starts. Start: the `go` signal.
- `tidings`: a real `tidings serve` (TIDINGS_DATABASE_URL, TIDINGS_API_KEY, TIDINGS_PORT,
  TIDINGS_ALLOW_PRIVATE_TARGETS=1, TIDINGS_LOG_LEVEL=warning) on a fresh database: with
  `--database sqlite` (the default) a new SQLite file; with `--database postgres` a new
  schema `bench_<random>` of `--postgres-url` (default $TIDINGS_BENCH_POSTGRES_URL, else
  postgresql://postgres@127.0.0.1:5432/postgres), dropped after the run (kept when the run
  fails its checks, or with --keep-tmp; a fresh schema has no planner statistics and
  autovacuum may be off or too slow to gather any during a run: `--analyze-every S` has
  the driver ANALYZE the run's tables every S s, as autovacuum would on a production
  server). With `--workers N` (N >= 1) it is one `tidings api` and N `tidings worker`
  processes on that database instead (the API first; each worker is ready when its log
  says "delivery worker started"). Either way, with 4 destinations (`ordering: fifo`,
  `max_in_flight: --max-in-flight`, topics `bench.*`); the driver ingests the N events
  with POST /v1/events/batch (`--batch-size` per request, one request at a time) while
  the engine already delivers. Start: the first batch POST; the ingest time is reported
  too. With `--preload` the destinations are paused (PATCH `{"state": "paused"}`) during
  ingest and the clock starts at the first PATCH `{"state": "active"}`: the drain alone.
  Each run's line and the results say which of these ran (database, processes, mode).
- `celery-threads` / `celery-prefork` (`--celery-pools`): bench/deliver_celery.py, one task
  per delivery (`autoretry_for=(Exception,)`, `retry_backoff=True`, `max_retries=8`, late
  acks, no result backend, Redis broker), a `celery worker` subprocess with
  `--celery-threads` threads or `--celery-procs` processes. The driver enqueues the 4 N
  tasks itself, as an application would (`deliver.apply_async` per delivery); the clock
  starts at the first enqueue, which is included. The best pool is reported as "celery".
Targets `stream-raw` and `stream-tidings` (`--only stream-raw,stream-tidings`, or
`--only stream` for both) do the same with Redis streams instead of webhooks: a
redis-server of the run's own on a free port (`--save "" --appendonly yes`, in the run's
folder), one stream per destination (`bench-s0` ...), the N events fanned out as 4 N
entries with the fields Tidings writes (`id`, `topic`, `key`, `payload`,
`received_at`). `stream-raw`, the ceiling: one process (redis-py asyncio + uvloop) XADDs
every entry itself, in pipelines of `--xadd-pipeline` commands, one pipeline in flight
per stream; `stream-tidings`: a `tidings serve` (TIDINGS_BUS_ALLOWED_URLS naming that
server) with 4 `redis_stream` destinations (fifo, `--max-in-flight`), ingested as for
webhooks. The figure is 4 N / (the last entry's time, from its stream id, - start);
checked: every stream holds each event id once (Tidings) and FIFO per key.

The ratio Tidings / raw ceiling is given twice: the median over the median (the medians
of each target) and `tidings_vs_raw_paired`, the median of each repeat's Tidings run
over the ceiling run just before it (interleaved, so a busy moment of a shared machine
weighs on both); `raw_spread` is the ceiling's max/min over the repeats. `--pin-receiver
CPU` keeps the receiver on one core (sched_setaffinity) so that the far end does not
wander between cores from run to run. On a machine shared with other work the kernel
shares CPU out per runnable process, so the one-process raw client loses more of it than
Tidings' many processes do, and the throughput ratio moves with the neighbours' load;
`cpu_us_per_delivery` (the delivering side's CPU per delivery: the raw client; or `tidings
serve`; or api + workers + PostgreSQL) moves much less, and `raw_vs_tidings_cpu_paired` is
the same pairing of the two: how much CPU Tidings spends per delivery over what the bare
POST costs.

Checks, every throughput run: each path received all N event ids (the wait fails after
`--timeout` s, or after `--stall` s without progress); more requests than ids are
duplicates and are reported; FIFO per lane (the order of first arrivals of each key's
events on each path equals the order they were ingested) is reported for every target and
is a failure for Tidings, whose destinations are `fifo`; the first requests of each path
are checked: Standard Webhooks signature with the destination's secret, `webhook-id`,
`webhook-timestamp` within 5 minutes, `tidings-attempt`, content type, body shape.

Scenario `latency` (Tidings only): a publisher process (aiohttp + uvloop) POSTs single
events to /v1/events on an open-loop schedule, `--rate` events/s for `--latency-seconds`,
at most `--publish-concurrency` requests in flight (a send that had to wait for a free slot
is counted as late). For each event it records when the request was sent and when the 202
arrived; the receiver records each delivery's first arrival. Reported over all 4
destinations' deliveries of the events sent after `--latency-warmup` s: `202->delivery`
(arrival - 202, clamped at 0: a delivery may beat its 202 to the client; how often is
reported) and `send->delivery` (arrival - request sent), p50 / p99 / max.

CPU columns (percent of one core over the timed part; for latency, the publishing window):
`sender` is the delivering side (raw client; tidings serve; the celery worker and its
children); with `--workers N`, `api` (tidings api) and `workers` (all tidings worker
processes together; each one is listed too); `db` (PostgreSQL: every process named
`postgres`, i.e. the run's backends, WAL writer, checkpointer), `receiver`, `publisher`
(latency), `driver` (this process: ingest or enqueue), `broker` (redis-server, celery
runs), `kernel` (kernel threads), `others` (whatever else the machine did: another test
suite, short-lived processes, interrupts) and `machine` (200% = both cores of a 2-core
machine). A run with `others` >= 20% is marked NOISE: on a
2-core machine its figures are not worth much; run again on a quiet machine.

The last line of standard output is a JSON object with the medians; `--save` also writes
every figure to bench/results/deliver-<timestamp>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import http.client
import importlib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ingest import (
    CLK_TCK,
    DB_PROCESS,
    PACKAGES,
    TOPIC,
    Analyzer,
    BenchError,
    database_options,
    drop_schema,
    event_body,
    free_port,
    http_json,
    is_healthy,
    machine_cpu,
    new_schema,
    payload_tail,
    percentile,
    postgres_version,
    read_line,
    run_steps,
    sdk,
    stop_process,
    tail_of,
    wait_idle,
    with_schema,
    write_results,
)
from ingest import versions as ingest_versions
from tidings import TidingsError

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
TARGETS = ("raw", "tidings", "celery", "stream-raw", "stream-tidings")
STREAM_TARGETS = ("stream-raw", "stream-tidings")
POOLS = ("threads", "prefork")
AIM_RAW_RATIO = 0.6
AIM_CELERY_FACTOR = 5.0
AIM_P99_MS = 50.0
SAMPLES_PER_PATH = 4
TIMESTAMP_TOLERANCE_S = 300
NOISE_PCT = 20  # CPU % of one core used by other work than the run's: a noisy figure
# the delivering side of a run: the raw client or Celery ("sender"), `tidings serve`
# ("sender"), or `tidings api` + workers + PostgreSQL; not the receiver, nor the driver
SENDING_ROLES = ("sender", "api", "workers", "db", "broker")
WORKER_READY = "delivery worker started"  # what `tidings worker` logs (info) when ready


# =============================================================== bodies (all processes)
def webhook_payload(seq: int, tail: bytes) -> bytes:
    """The event payload (`data` of the webhook body): `{"seq":N,...}`, ~payload_bytes."""
    return b'{"seq":' + str(seq).encode() + tail


def webhook_body(seq: int, tail: bytes, iso: str) -> bytes:
    """A Standard Webhooks body as Tidings sends it: `{"type","timestamp","data"}`."""
    return (
        b'{"type":"'
        + TOPIC.encode()
        + b'","timestamp":"'
        + iso.encode()
        + b'","data":'
        + webhook_payload(seq, tail)
        + b"}"
    )


def lane_key(seq: int, keys: int) -> str:
    return f"k{seq % keys}"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


# =============================================================== receiver process
def receiver_main(argv: list[str]) -> int:
    """`deliver.py _receiver --port P`: answer every POST with 204 at once; count requests
    per path, keep each webhook-id's first arrival time (time.monotonic()) in arrival
    order, keep the first requests of each path whole. GET /stats, /arrivals, /samples."""
    import asyncio

    import uvloop
    from aiohttp import web

    parser = argparse.ArgumentParser(prog="deliver.py _receiver")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--samples", type=int, default=SAMPLES_PER_PATH)
    args = parser.parse_args(argv)
    keep = args.samples
    monotonic = time.monotonic
    first_seen: dict[str, dict[str, float]] = {}  # path -> webhook-id -> first arrival
    counts: dict[str, int] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    totals = {"requests": 0, "first": 0.0, "last": 0.0, "last_new": 0.0}

    def as_json(doc: Any) -> web.Response:
        return web.Response(body=json.dumps(doc).encode(), content_type="application/json")

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "POST":
            body = await request.read()
            now = monotonic()
            path = request.path
            seen = first_seen.get(path)
            if seen is None:
                seen = first_seen[path] = {}
                counts[path] = 0
                samples[path] = []
            counts[path] += 1
            if not totals["requests"]:
                totals["first"] = now
            totals["requests"] += 1
            totals["last"] = now
            msg_id = request.headers.get("webhook-id", "")
            if msg_id not in seen:
                seen[msg_id] = now
                totals["last_new"] = now
            kept = samples[path]
            if len(kept) < keep:
                kept.append(
                    {"headers": dict(request.headers), "body": body.decode("utf-8", "replace")}
                )
            return web.Response(status=204)
        if request.path == "/stats":
            return as_json(
                {
                    **totals,
                    "paths": {p: [counts[p], len(s)] for p, s in first_seen.items()},
                }
            )
        if request.path == "/arrivals":
            return as_json({p: list(s.items()) for p, s in first_seen.items()})
        if request.path == "/samples":
            return as_json(samples)
        if request.path == "/healthz":
            return as_json({"status": "ok"})
        return web.Response(status=404)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = web.Server(handle, access_log=None)
        listener = await loop.create_server(server, "127.0.0.1", args.port, backlog=1024)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print("ready", flush=True)
        await stop.wait()
        listener.close()
        await server.shutdown(1)

    uvloop.run(serve())
    return 0


# =============================================================== raw-ceiling client process
def raw_client_main(config_json: str) -> int:
    """`deliver.py _raw-client CONFIG`: build every body, print `ready`, wait for `go T`
    (a time.monotonic() instant) on stdin, then post every event to every destination,
    `concurrency` requests in flight per destination, retrying anything but a 2xx."""
    import asyncio

    import aiohttp
    import uvloop

    cfg = json.loads(config_json)
    tail = payload_tail(cfg["payload_bytes"])
    n = cfg["events"]
    iso = iso_now()
    bodies = [webhook_body(seq, tail, iso) for seq in range(n)]
    ids = [f"{cfg['id_prefix']}{seq}" for seq in range(n)]
    errors: dict[str, int] = {}

    async def destination(url: str, secret: str) -> None:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        sha256 = hashlib.sha256
        cursor = [0]
        connector = aiohttp.TCPConnector(limit=cfg["concurrency"], ttl_dns_cache=None)
        timeout = aiohttp.ClientTimeout(total=cfg["request_timeout"])
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def lane() -> None:
                while cursor[0] < n:
                    seq = cursor[0]
                    cursor[0] += 1
                    body, msg_id = bodies[seq], ids[seq]
                    while True:
                        timestamp = int(time.time())
                        mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, sha256)
                        headers = {
                            "content-type": "application/json",
                            "webhook-id": msg_id,
                            "webhook-timestamp": str(timestamp),
                            "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
                            "tidings-attempt": "1",
                        }
                        try:
                            async with session.post(url, data=body, headers=headers) as resp:
                                await resp.read()
                                if 200 <= resp.status < 300:
                                    break
                                name = f"http_{resp.status}"
                        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                            name = type(exc).__name__
                        errors[name] = errors.get(name, 0) + 1
                        await asyncio.sleep(0.05)

            await asyncio.gather(*(lane() for _ in range(cfg["concurrency"])))

    async def run() -> None:
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        await asyncio.sleep(max(0.0, float(line.split()[1]) - time.monotonic()))
        await asyncio.gather(*(destination(d["url"], d["secret"]) for d in cfg["destinations"]))

    uvloop.run(run())
    Path(cfg["result_file"]).write_text(json.dumps({"errors": errors}))
    return 0


# =============================================================== raw XADD client process
def xadd_client_main(config_json: str) -> int:
    """`deliver.py _xadd-client CONFIG`: build every entry, print `ready`, wait for `go T`,
    then XADD every event to every stream in pipelines of `pipeline` commands, one
    pipeline in flight per stream (the Redis ceiling of what Tidings does per delivery)."""
    import asyncio

    import redis.asyncio as aioredis
    import uvloop

    cfg = json.loads(config_json)
    tail = payload_tail(cfg["payload_bytes"])
    n, size = cfg["events"], cfg["pipeline"]
    iso = iso_now()
    entries = [
        {
            "id": f"{cfg['id_prefix']}{seq}",
            "topic": TOPIC,
            "key": lane_key(seq, cfg["keys"]),
            "payload": webhook_payload(seq, tail),
            "received_at": iso,
        }
        for seq in range(n)
    ]

    async def stream(client: Any, name: str) -> None:
        for first in range(0, n, size):
            pipe = client.pipeline(transaction=False)
            for entry in entries[first : first + size]:
                pipe.xadd(name, entry)
            await pipe.execute()

    async def run() -> None:
        client = aioredis.from_url(cfg["url"], max_connections=len(cfg["streams"]) + 1)
        await client.ping()
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        await asyncio.sleep(max(0.0, float(line.split()[1]) - time.monotonic()))
        await asyncio.gather(*(stream(client, name) for name in cfg["streams"]))
        await client.aclose()

    uvloop.run(run())
    return 0


# =============================================================== latency publisher process
def post_open_loop(
    cfg: dict[str, Any],
    url: str,
    bodies: list[bytes],
    interval_s: float,
    records: list[list[Any]],
    answered: Callable[[int, Any], None],
) -> dict[str, int]:
    """From `go T` on standard input (after printing `ready`), POST `bodies[i]` to `url`
    at T + i * interval_s (open loop), at most `cfg["concurrency"]` in flight; write each
    request's due, sent and acked instants (time.monotonic()) and status into
    `records[i][2:6]`, hand each 202's decoded answer to `answered(i, answer)`; answer the
    transport errors by name (`answered` may count its own there)."""
    import asyncio

    import aiohttp
    import uvloop

    headers = {"Authorization": f"Bearer {cfg['api_key']}", "Content-Type": "application/json"}
    errors: dict[str, int] = {}

    async def run() -> None:
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        start = float(line.split()[1])
        slots = asyncio.Semaphore(cfg["concurrency"])
        connector = aiohttp.TCPConnector(limit=cfg["concurrency"], ttl_dns_cache=None)
        timeout = aiohttp.ClientTimeout(total=cfg.get("request_timeout", 30))
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def publish(i: int) -> None:
                record = records[i]
                try:
                    record[3] = time.monotonic()
                    async with session.post(url, data=bodies[i], headers=headers) as resp:
                        raw = await resp.read()
                        record[4] = time.monotonic()
                        record[5] = resp.status
                        if resp.status == 202:
                            answered(i, json.loads(raw))
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                finally:
                    slots.release()

            tasks = []
            for i in range(len(bodies)):
                due = start + i * interval_s
                records[i][2] = due
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await slots.acquire()
                tasks.append(asyncio.create_task(publish(i)))
            await asyncio.gather(*tasks)

    uvloop.run(run())
    return errors


def publisher_main(config_json: str) -> int:
    """`deliver.py _publisher CONFIG`: POST /v1/events on an open-loop schedule of `rate`
    events/s for `seconds` from `go T`, at most `concurrency` in flight; write, per event,
    [seq, id, scheduled, sent, acked, status] (time.monotonic() instants)."""
    cfg = json.loads(config_json)
    tail = payload_tail(cfg["payload_bytes"])
    rate, n = cfg["rate"], int(cfg["rate"] * cfg["seconds"])
    bodies = [event_body(lane_key(seq, cfg["keys"]).encode(), seq, tail) for seq in range(n)]
    records: list[list[Any]] = [[seq, None, 0.0, 0.0, 0.0, 0] for seq in range(n)]
    bad_fanout = 0

    def answered(seq: int, answer: Any) -> None:
        nonlocal bad_fanout
        records[seq][1] = answer["id"]
        if answer.get("deliveries", cfg["destinations"]) != cfg["destinations"]:
            bad_fanout += 1

    url = cfg["url"] + "/v1/events"
    errors = post_open_loop(cfg, url, bodies, 1 / rate, records, answered)
    if bad_fanout:
        errors["bad_fanout"] = bad_fanout
    Path(cfg["result_file"]).write_text(json.dumps({"records": records, "errors": errors}))
    return 0


# =============================================================== orchestration helpers
PF_KTHREAD = 0x00200000


def proc_stats() -> dict[int, tuple[str, int, bool, float]]:
    """pid -> (name, session id, is a kernel thread, CPU seconds) of every live process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        seconds = (int(fields[11]) + int(fields[12])) / CLK_TCK
        kernel = bool(int(fields[6]) & PF_KTHREAD)
        out[int(entry)] = (head.split("(", 1)[1], int(fields[3]), kernel, seconds)
    return out


class CpuMeter:
    """CPU, in percent of one core between start() and stop(), of each process session we
    started (start_new_session=True: a process and its children, e.g. prefork workers),
    this driver, the Redis server when `broker` (celery runs), kernel threads (loopback,
    fsync), `others`: everything else the machine did (someone's test suite, processes
    too short-lived to be seen, interrupts), and the whole machine (200% = 2 cores busy).
    `others` well above a few percent means the figures of that run are noisy."""

    def __init__(self) -> None:
        self.roles: dict[int, str] = {}  # session id -> role
        self.broker = False
        self.db = False
        self.session_pct: dict[int, float] = {}  # session id -> its own CPU
        self.began = 0.0
        self.before: dict[int, tuple[str, int, bool, float]] = {}
        self.machine: tuple[int, int] = (0, 0)
        self.pct: dict[str, float] = {}
        self.foreign_top = ""
        self.seconds = 0.0  # the window stop() measured

    def start(
        self, sessions: dict[str, int | list[int]], *, broker: bool = False, db: bool = False
    ) -> None:
        """`sessions`: role -> the session(s) it sums (e.g. every `tidings worker`); `db`:
        count PostgreSQL's processes as the role `db` (the run's backends, WAL writer,
        checkpointer) rather than as `others`."""
        self.roles = {}
        for role, sids in sessions.items():
            for sid in [sids] if isinstance(sids, int) else sids:
                self.roles[sid] = role
        self.broker = broker
        self.db = db
        self.began = time.monotonic()
        self.machine = machine_cpu()
        self.before = proc_stats()

    def stop(self) -> dict[str, float]:
        if not self.began:
            return {}
        after = proc_stats()
        busy, total = machine_cpu()
        seconds = self.seconds = max(1e-6, time.monotonic() - self.began)
        used = dict.fromkeys([*self.roles.values(), "driver"], 0.0)
        if self.broker:
            used["broker"] = 0.0
        if self.db:
            used["db"] = 0.0
        used["kernel"] = 0.0
        foreign: dict[str, float] = {}
        per_session = dict.fromkeys(self.roles, 0.0)
        for pid, (name, sid, kernel, cpu_s) in after.items():
            delta = cpu_s - (self.before[pid][3] if pid in self.before else 0.0)
            if pid == os.getpid():
                used["driver"] += delta
            elif sid in self.roles:
                used[self.roles[sid]] += delta
                per_session[sid] += delta
            elif self.broker and name == "redis-server":
                used["broker"] += delta
            elif self.db and name == DB_PROCESS:
                used["db"] += delta
            elif kernel:
                used["kernel"] += delta
            else:
                foreign[name] = foreign.get(name, 0.0) + delta
        ncpu = os.cpu_count() or 1
        machine = round(100 * ncpu * (busy - self.machine[0]) / max(1, total - self.machine[1]))
        self.pct = {k: round(100 * v / seconds) for k, v in used.items()}
        self.session_pct = {sid: round(100 * v / seconds) for sid, v in per_session.items()}
        self.pct["others"] = max(0, machine - sum(self.pct.values()))
        self.pct["machine"] = machine
        top = max(foreign.items(), key=lambda kv: kv[1], default=("", 0.0))
        self.foreign_top = top[0] if top[1] * 100 / seconds >= 1 else ""
        return self.pct


def lane_violations(order: list[str], seq_of: dict[str, int], keys: int) -> int:
    """How many first arrivals came before an event of the same lane ingested earlier."""
    last: dict[int, int] = {}
    bad = 0
    for msg_id in order:
        seq = seq_of.get(msg_id)
        if seq is None:
            continue
        lane = seq % keys
        if seq < last.get(lane, -1):
            bad += 1
        else:
            last[lane] = seq
    return bad


def check_sample(
    sample: dict[str, Any], secret: str, seq_of: dict[str, int], now: float
) -> str | None:
    """What is wrong with one received request, or None."""
    headers = {k.lower(): v for k, v in sample["headers"].items()}
    body = sample["body"].encode()
    msg_id = headers.get("webhook-id", "")
    if msg_id not in seq_of:
        return f"unknown webhook-id {msg_id!r}"
    if not headers.get("content-type", "").startswith("application/json"):
        return f"content-type {headers.get('content-type')!r}"
    if headers.get("tidings-attempt") != "1":
        return f"tidings-attempt {headers.get('tidings-attempt')!r} (no retries expected)"
    try:
        timestamp = int(headers.get("webhook-timestamp", ""))
    except ValueError:
        return f"webhook-timestamp {headers.get('webhook-timestamp')!r}"
    if abs(now - timestamp) > TIMESTAMP_TOLERANCE_S:
        return f"webhook-timestamp {timestamp} is {now - timestamp:.0f} s off"
    expected = sign(secret, msg_id, timestamp, body)
    offered = headers.get("webhook-signature", "").split()
    if not any(hmac.compare_digest(expected, s) for s in offered):
        return f"bad webhook-signature for {msg_id}"
    try:
        doc = json.loads(body)
    except ValueError:
        return "body is not JSON"
    if doc.get("type") != TOPIC or "timestamp" not in doc:
        return f"body type/timestamp: {str(doc)[:80]}"
    if not isinstance(doc.get("data"), dict) or doc["data"].get("seq") != seq_of[msg_id]:
        return f"body data does not match event {msg_id}"
    return None


# =============================================================== runs
@dataclass
class Run:
    scenario: str  # "throughput" | "latency"
    target: str  # "raw" | "tidings" | "celery-threads" | "celery-prefork"
    repeat: int
    events: int = 0
    deliveries: int = 0
    elapsed_s: float = 0.0
    deliveries_per_s: float = 0.0
    ingest_s: float | None = None  # tidings: batch ingest; celery: enqueue
    received: int = 0
    unique: int = 0
    duplicates: int = 0
    per_path: dict[str, list[int]] = field(default_factory=dict)
    fifo_violations: int = 0
    signatures_checked: int = 0
    sender_errors: dict[str, int] = field(default_factory=dict)
    cpu_pct: dict[str, float] = field(default_factory=dict)
    foreign_top: str = ""  # the busiest process that is not part of the run
    idle_wait_s: float = 0.0
    server_stop: str = ""
    problems: list[str] = field(default_factory=list)
    # tidings: where and how it ran
    database: str = ""  # "sqlite" | "postgres"
    schema: str = ""  # postgres: the run's schema (dropped after the run unless kept)
    workers: int = 0  # 0: `tidings serve`; N: `tidings api` + N `tidings worker`
    mode: str = ""  # "ingest+deliver" (clock from the first POST) | "preload" (drain alone)
    cpu_workers_pct: list[float] = field(default_factory=list)  # each `tidings worker`
    analyze_runs: int = 0  # postgres, --analyze-every: ANALYZEs done during the run
    # CPU of the delivering side (SENDING_ROLES) per delivery: what a busy machine's
    # share of CPU does not move as much as it moves deliveries/s
    cpu_us_per_delivery: float = 0.0
    # latency
    rate: float = 0.0
    sent: int = 0
    acked: int = 0
    late_sends: int = 0
    measured_deliveries: int = 0
    early_deliveries: int = 0
    ack_p50_ms: float = 0.0
    ack_p99_ms: float = 0.0
    ack_to_delivery_p50_ms: float = 0.0
    ack_to_delivery_p99_ms: float = 0.0
    ack_to_delivery_max_ms: float = 0.0
    send_to_delivery_p50_ms: float = 0.0
    send_to_delivery_p99_ms: float = 0.0


@dataclass
class Tidings:
    """A running Tidings: `tidings serve` (workers == []), or `tidings api` and N
    `tidings worker` processes on one database."""

    work: Path
    schema: str = ""
    database_url: str = ""  # set: this database as it is (bench/cpu.py: a fresh database)
    url: str = ""
    api_key: str = ""
    api: subprocess.Popen[bytes] | None = None  # `serve` or `api`
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    watch: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)
    analyzer: Analyzer | None = None

    def sessions(self) -> dict[str, int | list[int]]:
        """CpuMeter roles: `sender` for `tidings serve`, else `api` and `workers`."""
        assert self.api is not None
        if not self.workers:
            return {"sender": self.api.pid}
        return {"api": self.api.pid, "workers": [w.pid for w in self.workers]}


def setup_label(args: argparse.Namespace, throughput: bool = True) -> str:
    """Which Tidings ran, on what, (throughput) timed how: stated in the output and the
    results."""
    if args.workers:
        processes = "processes" if args.workers > 1 else "process"
        how = f"`tidings api` + {args.workers} `tidings worker` {processes}"
    else:
        how = "`tidings serve` (API and worker in one process)"
    when = (
        "preload: destinations paused during ingest, the drain alone is timed"
        if args.preload
        else "ingest while delivering: the clock starts at the first batch POST"
    )
    where = args.database
    if args.database == "postgres" and args.analyze_every > 0:
        where += f" (ANALYZEd every {args.analyze_every:g} s)"
    return f"{how} on {where}" + (f"; throughput: {when}" if throughput else "")


class Runner:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self._celery: Any = None

    # ----------------------------------------------------------- processes
    def spawn(
        self,
        argv: list[str],
        log: Path,
        cwd: Path,
        *,
        env: dict[str, str] | None = None,
        talks: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start a process in its own session; one that `talks` (says `ready`, reads
        `go T`) gets pipes, the others write stdout and stderr to `log`."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE if talks else out,
                stdin=subprocess.PIPE if talks else subprocess.DEVNULL,
                stderr=out,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> str:
        if proc is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            if proc.stdin:
                proc.stdin.close()
        how = stop_process(proc, timeout)
        if how == "sigkill":  # its children too (prefork workers): the group we started
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError, ValueError):
            if proc.stdout:
                proc.stdout.close()
        if proc in self.procs:
            self.procs.remove(proc)
        return how

    def kill_all(self) -> None:
        for proc in list(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        self.procs.clear()

    def start_receiver(self, work: Path) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        argv = [sys.executable, __file__, "_receiver", "--port", str(port)]
        proc = self.spawn(argv, work / "receiver.log", work, talks=True)
        line = read_line(proc, time.monotonic() + 30, "receiver")
        if line != "ready":
            raise BenchError(f"receiver said {line!r}:\n{tail_of(work / 'receiver.log')}")
        pin = getattr(self.args, "pin_receiver", None)
        if pin is not None:  # one core of its own: the far end is not what is measured
            os.sched_setaffinity(proc.pid, {pin})
        return proc, f"http://127.0.0.1:{port}"

    def start_redis(self, work: Path) -> tuple[subprocess.Popen[bytes], str]:
        """A redis-server of the run's own on a free port, its files in `work`."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        port = free_port()
        argv = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--dir", str(work),
        ]  # fmt: skip
        log = work / "redis.log"
        proc = self.spawn(argv, log, work)
        deadline = time.monotonic() + 30
        while "Ready to accept connections" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"redis-server did not start:\n{tail_of(log)}")
            time.sleep(0.05)
        return proc, f"redis://127.0.0.1:{port}/0"

    def new_tidings(self, work: Path) -> Tidings:
        """A Tidings not started yet: on PostgreSQL, its schema is chosen here, so that
        `stop_tidings` can drop it even when `start_tidings` fails half-way."""
        return Tidings(work, schema=new_schema() if self.args.database == "postgres" else "")

    def start_tidings(self, t: Tidings, extra_env: dict[str, str] | None = None) -> None:
        """`tidings serve` (--workers 0), or `tidings api` then --workers `tidings worker`
        processes on the same database (the API first: it creates the schema)."""
        args, work = self.args, t.work
        port = free_port()
        t.api_key = "tdk_bench_" + secrets.token_urlsafe(16)
        t.url = f"http://127.0.0.1:{port}"
        if t.database_url:
            database_url = t.database_url
        elif args.database == "postgres":
            database_url = with_schema(args.postgres_url, t.schema)
        else:
            database_url = f"sqlite:///{work / 'bench.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env.update(
            TIDINGS_DATABASE_URL=database_url,
            TIDINGS_API_KEY=t.api_key,
            TIDINGS_HOST="127.0.0.1",
            TIDINGS_PORT=str(port),
            TIDINGS_ALLOW_PRIVATE_TARGETS="1",
            TIDINGS_LOG_LEVEL="warning",
        )
        if args.sender_processes is not None:
            env["TIDINGS_SENDER_PROCESSES"] = str(args.sender_processes)
        env.update(extra_env or {})
        role = "api" if args.workers else "serve"
        name = f"tidings {role}"
        log = work / "server.log"
        proc = t.api = self.spawn([sys.executable, "-m", "tidings.cli", role], log, work, env=env)
        t.watch.append((name, proc, log))
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode}:\n{tail_of(log)}")
            if is_healthy(t.url):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{name} not healthy after 30 s:\n{tail_of(log)}")
            time.sleep(0.05)
        t.analyzer = Analyzer(args.postgres_url, t.schema, args.analyze_every).start()
        if not args.workers:
            return
        # `info`: the worker says when it is ready (it has no HTTP port to poll)
        worker_env = {**env, "TIDINGS_LOG_LEVEL": "info", "TIDINGS_LOG_FORMAT": "json"}
        del worker_env["TIDINGS_PORT"], worker_env["TIDINGS_HOST"]
        for i in range(args.workers):
            log = work / f"worker-{i + 1}.log"
            proc = self.spawn(
                [sys.executable, "-m", "tidings.cli", "worker"], log, work, env=worker_env
            )
            t.workers.append(proc)
            t.watch.append((f"tidings worker {i + 1}", proc, log))
        deadline = time.monotonic() + 30
        for name, proc, log in t.watch[1:]:
            while True:
                if proc.poll() is not None:
                    raise BenchError(f"{name} exited with {proc.returncode}:\n{tail_of(log)}")
                with contextlib.suppress(OSError):
                    if WORKER_READY in log.read_text(errors="replace"):
                        break
                if time.monotonic() > deadline:
                    raise BenchError(f"{name} not ready after 30 s:\n{tail_of(log)}")
                time.sleep(0.05)

    def stop_tidings(self, t: Tidings, keep: bool) -> str:
        """SIGTERM every process of `t` at once (SIGKILL after --stop-timeout); then drop
        its PostgreSQL schema unless `keep`. Answers how the processes ended."""
        if t.analyzer is not None:
            t.analyzer.stop()
        procs = [p for p in (t.api, *t.workers) if p is not None]
        ends = []
        for proc in procs:
            if proc.poll() is not None:
                ends.append(f"already exited ({proc.returncode})")
                continue
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
            ends.append("sigterm")
        deadline = time.monotonic() + self.args.stop_timeout
        for i, proc in enumerate(procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
                ends[i] = "sigkill"
            if proc in self.procs:
                self.procs.remove(proc)
        if t.schema:
            if keep:
                print(f"# kept PostgreSQL schema {t.schema}", file=sys.stderr, flush=True)
            else:
                try:
                    drop_schema(self.args.postgres_url, t.schema)
                except Exception as exc:  # a leftover schema is not worth a failed run
                    print(f"# could not drop schema {t.schema}: {exc}", file=sys.stderr)
        return ",".join(dict.fromkeys(ends))

    def describe_tidings(self, run: Run, t: Tidings) -> None:
        args = self.args
        run.database, run.schema, run.workers = args.database, t.schema, args.workers
        run.mode = "preload" if args.preload else "ingest+deliver"

    def create_destinations(
        self, url: str, api_key: str, receiver_url: str
    ) -> list[tuple[str, str]]:
        """(id, secret) of each new destination: webhooks to the receiver's /d0 ..., or
        with a redis:// `receiver_url`, redis_stream destinations to bench-s0 ..."""
        made = []
        for i in range(self.args.destinations):
            if receiver_url.startswith("redis://"):
                kind = {"kind": "redis_stream", "url": receiver_url, "stream": f"bench-s{i}"}
            else:
                kind = {"kind": "webhook", "url": f"{receiver_url}/d{i}"}
            spec = {"name": f"bench-d{i}", "max_in_flight": self.args.max_in_flight, **kind}
            with sdk(url, api_key) as client:
                try:
                    body = client.create_destination(
                        spec.pop("kind"), ["bench.*"], ordering="fifo", extra=spec
                    )
                except TidingsError as exc:
                    raise BenchError(f"creating a destination: {exc}") from None
            made.append((body.id, body.secret))
        return made

    def set_state(self, url: str, api_key: str, dest_id: str, state: str) -> None:
        with sdk(url, api_key) as client:
            try:
                client.update_destination(dest_id, state=state)
            except TidingsError as exc:
                raise BenchError(
                    f"--preload needs PATCH /v1/destinations/{{id}} {{'state': {state!r}}}; "
                    f"the server answered {exc}"
                ) from None

    # ----------------------------------------------------------- waiting and checking
    def wait_delivered(
        self,
        receiver_url: str,
        expected: int,
        t0: float,
        what: str,
        watch: list[tuple[str, subprocess.Popen[bytes], Path]],
    ) -> dict[str, Any]:
        """Poll the receiver until every path has `expected` distinct webhook-ids. Fails
        after --timeout s from t0, after --stall s without a new id, or when a watched
        process exits."""
        args = self.args
        paths = [f"/d{i}" for i in range(args.destinations)]
        deadline = t0 + args.timeout
        last_unique, last_progress = -1, time.monotonic()

        def poll() -> tuple[dict[str, Any], int, bool]:
            try:
                status, stats = http_json("GET", receiver_url + "/stats", timeout=10)
            except OSError as exc:
                raise BenchError(f"{what}: the receiver does not answer: {exc}") from None
            if status != 200:
                raise BenchError(f"{what}: receiver /stats answered {status}")
            per = stats["paths"]
            unique = sum(per.get(p, [0, 0])[1] for p in paths)
            return stats, unique, all(per.get(p, [0, 0])[1] >= expected for p in paths)

        while True:
            stats, unique, done = poll()
            if done:
                return stats
            now = time.monotonic()
            if unique != last_unique:
                last_unique, last_progress = unique, now
            for name, proc, log in watch:
                if proc.poll() is not None:
                    stats, unique, done = poll()  # it may have finished in between
                    if done:
                        return stats
                    raise BenchError(
                        f"{what}: {name} exited with {proc.returncode} after {unique:,} of "
                        f"{expected * len(paths):,} deliveries:\n{tail_of(log)}"
                    )
            if now > deadline or now - last_progress > args.stall:
                per = stats["paths"]
                counted = ", ".join(f"{p} {per.get(p, [0, 0])[1]:,}" for p in paths)
                why = (
                    f"timed out after {args.timeout:g} s"
                    if now > deadline
                    else f"no new delivery for {args.stall:g} s"
                )
                hint = ""
                if what.startswith("tidings"):
                    hint = (
                        " Does `tidings serve` deliver webhooks yet (delivery engine running, "
                        "TIDINGS_ALLOW_PRIVATE_TARGETS honoured)?"
                    )
                tails = [(name, tail_of(log, 15).strip()) for name, _, log in watch]
                logs = "".join(f"\n--- {name} log:\n{text}" for name, text in tails if text)
                raise BenchError(
                    f"{what}: {why}: the receiver has {unique:,} of "
                    f"{expected * len(paths):,} deliveries ({counted}).{hint}{logs}"
                )
            time.sleep(0.1)

    def collect(
        self,
        run: Run,
        receiver_url: str,
        seq_of: dict[str, int],
        secret_of: dict[str, str],
        expected: int,
    ) -> dict[str, list[list[Any]]]:
        """After a settle time (late duplicates), read the receiver and check the run."""
        args = self.args
        time.sleep(args.settle)
        _, stats = http_json("GET", receiver_url + "/stats", timeout=30)
        _, arrivals = http_json("GET", receiver_url + "/arrivals", timeout=60)
        _, samples = http_json("GET", receiver_url + "/samples", timeout=30)
        run.received = stats["requests"]
        run.per_path = stats["paths"]
        run.unique = sum(u for _, u in stats["paths"].values())
        run.duplicates = run.received - run.unique
        for path, pairs in arrivals.items():
            strangers = [m for m, _ in pairs if m not in seq_of]
            if strangers:
                run.problems.append(f"{path}: {len(strangers)} unknown ids, e.g. {strangers[0]!r}")
            if path not in secret_of:
                run.problems.append(f"requests on unexpected path {path}")
            if len(pairs) != expected:
                run.problems.append(f"{path}: {len(pairs)} distinct ids, expected {expected}")
            run.fifo_violations += lane_violations([m for m, _ in pairs], seq_of, args.keys)
        now = time.time()
        for path, kept in samples.items():
            for sample in kept:
                if path not in secret_of:
                    continue
                wrong = check_sample(sample, secret_of[path], seq_of, now)
                run.signatures_checked += 1
                if wrong:
                    run.problems.append(f"{path}: {wrong}")
        if run.fifo_violations and run.target == "tidings":
            run.problems.append(
                f"FIFO broken: {run.fifo_violations} first deliveries overtook an earlier "
                "event of their lane"
            )
        return arrivals

    # ----------------------------------------------------------- throughput
    def _begin(self, target: str, repeat: int) -> tuple[Path, Run]:
        """The run's folder and record, once the machine is idle (or --wait-idle ran out)."""
        args = self.args
        work = self.root / f"throughput-{target}-{repeat}"
        work.mkdir()
        run = Run("throughput", target, repeat, events=args.events)
        run.deliveries = args.events * args.destinations
        run.idle_wait_s = round(wait_idle(args.wait_idle), 1)
        return work, run

    def throughput(self, target: str, repeat: int) -> Run:
        if target in STREAM_TARGETS:
            return self.stream_throughput(target, repeat)
        args = self.args
        work, run = self._begin(target, repeat)
        n = args.events
        receiver, receiver_url = self.start_receiver(work)
        watch = [("receiver", receiver, work / "receiver.log")]
        sender: subprocess.Popen[bytes] | None = None
        tidings: Tidings | None = None
        meter = CpuMeter()
        redis_client = None
        finished = False
        try:
            if target == "raw":
                sender, t0, seq_of, secret_of = self._start_raw(work, receiver_url, repeat)
                watch.append(("raw client", sender, work / "raw-client.log"))
                meter.start({"sender": sender.pid, "receiver": receiver.pid})
            elif target == "tidings":
                tidings = t = self.new_tidings(work)
                self.describe_tidings(run, t)
                self.start_tidings(t)
                watch.extend(t.watch)
                t0, seq_of, secret_of = self._tidings_ingest(
                    run,
                    t.url,
                    t.api_key,
                    receiver_url,
                    lambda: meter.start(
                        {**t.sessions(), "receiver": receiver.pid},
                        db=self.args.database == "postgres",
                    ),
                )
            else:
                pool = target.split("-", 1)[1]
                redis_client = self._redis()
                redis_client.flushdb()
                sender = self._start_celery_worker(work, pool)
                watch.append(("celery worker", sender, work / "celery.log"))
                worker_pid = sender.pid
                t0, seq_of, secret_of = self._celery_enqueue(
                    run,
                    receiver_url,
                    repeat,
                    lambda: meter.start(
                        {"sender": worker_pid, "receiver": receiver.pid}, broker=True
                    ),
                )
            stats = self.wait_delivered(receiver_url, n, t0, f"{target} run {repeat + 1}", watch)
            meter.stop()
            run.elapsed_s = round(stats["last_new"] - t0, 4)
            run.deliveries_per_s = round(run.deliveries / max(1e-9, run.elapsed_s), 1)
            run.cpu_pct = meter.pct
            run.foreign_top = meter.foreign_top
            delivering = sum(meter.pct.get(k, 0) for k in SENDING_ROLES)
            run.cpu_us_per_delivery = round(delivering * meter.seconds * 1e4 / run.deliveries, 1)
            if tidings is not None:
                run.cpu_workers_pct = [meter.session_pct[w.pid] for w in tidings.workers]
            self.collect(run, receiver_url, seq_of, secret_of, n)
            if target == "raw" and sender is not None:
                try:
                    sender.wait(30)
                    result = json.loads((work / "raw-result.json").read_text())
                    run.sender_errors = result["errors"]
                except (subprocess.TimeoutExpired, OSError, ValueError) as exc:
                    run.problems.append(f"raw client did not finish cleanly: {exc!r}")
            finished = True
        finally:
            if target.startswith("celery"):
                run.server_stop = self.stop(sender, 30)
            elif tidings is not None:
                keep = args.keep_tmp or not finished or bool(run.problems)
                run.server_stop = self.stop_tidings(tidings, keep)
                run.analyze_runs = tidings.analyzer.runs if tidings.analyzer else 0
            elif sender is not None:
                run.server_stop = self.stop(sender, args.stop_timeout)
            self.stop(receiver, 5)
            if redis_client is not None:
                with contextlib.suppress(Exception):
                    redis_client.flushdb()
        return run

    def stream_throughput(self, target: str, repeat: int) -> Run:
        """N events x --destinations Redis streams: the raw XADD pipeline, or Tidings."""
        import redis

        args = self.args
        work, run = self._begin(target, repeat)
        n, ndest = args.events, args.destinations
        server, redis_url = self.start_redis(work)
        watch = [("redis-server", server, work / "redis.log")]
        client = redis.Redis.from_url(redis_url)
        streams = [f"bench-s{i}" for i in range(ndest)]
        meter = CpuMeter()
        tidings: Tidings | None = None
        sender: subprocess.Popen[bytes] | None = None
        finished = False
        try:
            if target == "stream-raw":
                prefix = f"msg_xadd{repeat}_"
                cfg = {
                    "url": redis_url,
                    "streams": streams,
                    "events": n,
                    "keys": args.keys,
                    "payload_bytes": args.payload_bytes,
                    "pipeline": args.xadd_pipeline,
                    "id_prefix": prefix,
                }
                sender = self.spawn(
                    [sys.executable, __file__, "_xadd-client", json.dumps(cfg)],
                    work / "xadd-client.log",
                    work,
                    talks=True,
                )
                watch.append(("xadd client", sender, work / "xadd-client.log"))
                line = read_line(sender, time.monotonic() + 60, "xadd client")
                if line != "ready":
                    raise BenchError(f"xadd client said {line!r}")
                t0 = time.monotonic() + 0.05
                t0_wall = time.time() + 0.05
                meter.start({"sender": sender.pid, "bus": server.pid})
                assert sender.stdin is not None
                sender.stdin.write(f"go {t0}\n".encode())
                sender.stdin.close()
                seq_of = {f"{prefix}{seq}": seq for seq in range(n)}
            else:
                tidings = t = self.new_tidings(work)
                self.describe_tidings(run, t)
                prefix_env = redis_url.rsplit("/", 1)[0]
                self.start_tidings(t, {"TIDINGS_BUS_ALLOWED_URLS": prefix_env})
                watch.extend(t.watch)
                starts: list[float] = []

                def on_start() -> None:
                    starts.append(time.time())
                    meter.start({**t.sessions(), "bus": server.pid}, db=args.database == "postgres")

                t0, seq_of, _ = self._tidings_ingest(run, t.url, t.api_key, redis_url, on_start)
                t0_wall = starts[-1]
            last_ms = self.wait_streams(client, streams, n, t0, f"{target} run {repeat + 1}", watch)
            meter.stop()
            run.elapsed_s = round(last_ms / 1000 - t0_wall, 4)
            run.deliveries_per_s = round(run.deliveries / max(1e-9, run.elapsed_s), 1)
            run.cpu_pct = meter.pct
            run.foreign_top = meter.foreign_top
            if tidings is not None:
                run.cpu_workers_pct = [meter.session_pct[w.pid] for w in tidings.workers]
            self.check_streams(run, client, streams, seq_of)
            finished = True
        finally:
            client.close()
            if tidings is not None:
                keep = args.keep_tmp or not finished or bool(run.problems)
                run.server_stop = self.stop_tidings(tidings, keep)
            elif sender is not None:
                run.server_stop = self.stop(sender, args.stop_timeout)
            self.stop(server, 10)
        return run

    def wait_streams(
        self,
        client: Any,
        streams: list[str],
        expected: int,
        t0: float,
        what: str,
        watch: list[tuple[str, subprocess.Popen[bytes], Path]],
    ) -> int:
        """Poll XLEN until every stream holds `expected` entries; answer the newest
        entry's time (ms, from its id). Fails as `wait_delivered` does."""
        args = self.args
        deadline = t0 + args.timeout
        last_total, last_progress = -1, time.monotonic()
        while True:
            lengths = [client.xlen(name) for name in streams]
            if all(length >= expected for length in lengths):
                newest = [client.xrevrange(name, count=1)[0][0] for name in streams]
                return max(int(entry_id.split(b"-")[0]) for entry_id in newest)
            now = time.monotonic()
            if sum(lengths) != last_total:
                last_total, last_progress = sum(lengths), now
            for name, proc, log in watch:
                if proc.poll() is not None and not (name == "xadd client" and proc.returncode == 0):
                    raise BenchError(
                        f"{what}: {name} exited with {proc.returncode}:\n{tail_of(log)}"
                    )
            if now > deadline or now - last_progress > args.stall:
                tails = "".join(f"\n--- {name} log:\n{tail_of(log, 15)}" for name, _, log in watch)
                raise BenchError(
                    f"{what}: the streams hold {lengths} of {expected} entries each{tails}"
                )
            time.sleep(0.05)

    def check_streams(
        self, run: Run, client: Any, streams: list[str], seq_of: dict[str, int]
    ) -> None:
        """Every stream holds each event once (duplicates reported), in FIFO per key,
        with the fields and payload of its event."""
        tail = payload_tail(self.args.payload_bytes)
        for name in streams:
            ids: list[str] = []
            for _, fields in client.xrange(name):
                msg_id = fields[b"id"].decode()
                ids.append(msg_id)
                seq = seq_of.get(msg_id)
                if seq is None:
                    run.problems.append(f"{name}: unknown id {msg_id!r}")
                    break
                if len(ids) <= SAMPLES_PER_PATH and (
                    fields[b"topic"].decode() != TOPIC
                    or fields[b"key"].decode() != lane_key(seq, self.args.keys)
                    or fields[b"payload"] != webhook_payload(seq, tail)
                ):
                    run.problems.append(f"{name}: entry of {msg_id} has other fields")
                run.signatures_checked += len(ids) <= SAMPLES_PER_PATH
            run.received += len(ids)
            run.unique += len(set(ids))
            run.per_path[name] = [len(ids), len(set(ids))]
            if set(ids) != set(seq_of):
                run.problems.append(f"{name}: {len(set(ids))} distinct ids of {len(seq_of)}")
            run.fifo_violations += lane_violations(ids, seq_of, self.args.keys)
        run.duplicates = run.received - run.unique
        if run.fifo_violations and run.target == "stream-tidings":
            run.problems.append(f"FIFO broken: {run.fifo_violations} entries overtook")

    def _start_raw(
        self, work: Path, receiver_url: str, repeat: int
    ) -> tuple[subprocess.Popen[bytes], float, dict[str, int], dict[str, str]]:
        args = self.args
        prefix = f"msg_raw{repeat}_"
        dests = [
            {"url": f"{receiver_url}/d{i}", "secret": new_secret()}
            for i in range(args.destinations)
        ]
        cfg = {
            "destinations": dests,
            "events": args.events,
            "payload_bytes": args.payload_bytes,
            "concurrency": args.max_in_flight,
            "request_timeout": 30.0,
            "id_prefix": prefix,
            "result_file": str(work / "raw-result.json"),
        }
        proc = self.spawn(
            [sys.executable, __file__, "_raw-client", json.dumps(cfg)],
            work / "raw-client.log",
            work,
            talks=True,
        )
        line = read_line(proc, time.monotonic() + 60, "raw client")
        if line != "ready":
            raise BenchError(f"raw client said {line!r}")
        t0 = time.monotonic() + 0.05
        assert proc.stdin is not None
        proc.stdin.write(f"go {t0}\n".encode())
        proc.stdin.close()
        seq_of = {f"{prefix}{seq}": seq for seq in range(args.events)}
        secret_of = {f"/d{i}": d["secret"] for i, d in enumerate(dests)}
        return proc, t0, seq_of, secret_of

    def _tidings_ingest(
        self,
        run: Run,
        url: str,
        api_key: str,
        receiver_url: str,
        on_start: Callable[[], None],
    ) -> tuple[float, dict[str, int], dict[str, str]]:
        """Create the destinations, ingest every event in batches; answer the start of the
        clock (first batch POST, or first resume with --preload), when `on_start` runs."""
        args = self.args
        dests = self.create_destinations(url, api_key, receiver_url)
        secret_of = {f"/d{i}": secret for i, (_, secret) in enumerate(dests)}
        if args.preload:
            for dest_id, _ in dests:
                self.set_state(url, api_key, dest_id, "paused")
        tail = payload_tail(args.payload_bytes)
        batches = []
        for first in range(0, args.events, args.batch_size):
            seqs = range(first, min(args.events, first + args.batch_size))
            parts = [event_body(lane_key(s, args.keys).encode(), s, tail) for s in seqs]
            batches.append(b'{"events":[' + b",".join(parts) + b"]}")
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        port = int(url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        ids: list[str] = []
        if not args.preload:
            on_start()
        t0 = time.monotonic()
        try:
            for body in batches:
                conn.request("POST", "/v1/events/batch", body, headers)
                response = conn.getresponse()
                raw = response.read()
                if response.status != 202:
                    raise BenchError(
                        f"POST /v1/events/batch answered {response.status}: {raw[:300]!r}"
                    )
                answer = json.loads(raw)
                fanout = answer.get("deliveries")
                if fanout is not None and any(d != args.destinations for d in fanout):
                    raise BenchError(f"a batch fanned out to {set(fanout)} destinations")
                ids.extend(answer["ids"])
                if time.monotonic() - t0 > args.timeout:
                    raise BenchError(f"ingest did not finish in {args.timeout:g} s")
        finally:
            conn.close()
        run.ingest_s = round(time.monotonic() - t0, 3)
        if len(ids) != args.events or len(set(ids)) != len(ids):
            raise BenchError(f"ingest answered {len(set(ids))} distinct ids for {args.events}")
        if args.preload and not receiver_url.startswith("redis://"):
            _, stats = http_json("GET", receiver_url + "/stats")
            if stats["requests"]:
                raise BenchError(f"{stats['requests']} deliveries arrived while paused")
            on_start()
            t0 = time.monotonic()
            for dest_id, _ in dests:
                self.set_state(url, api_key, dest_id, "active")
        return t0, {msg_id: seq for seq, msg_id in enumerate(ids)}, secret_of

    def _redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.args.celery_broker)

    def _start_celery_worker(self, work: Path, pool: str) -> subprocess.Popen[bytes]:
        args = self.args
        ready = work / "celery.ready"
        env = dict(os.environ)
        env.update(
            DELIVER_CELERY_BROKER=args.celery_broker,
            DELIVER_CELERY_READY_FILE=str(ready),
            DELIVER_CELERY_PREFETCH=str(args.celery_prefetch),
            PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")])),
        )
        concurrency = args.celery_threads if pool == "threads" else args.celery_procs
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "deliver_celery",
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-O",
            "fair",
            "-n",
            f"bench-{pool}@%h",
        ]
        log = work / "celery.log"
        proc = self.spawn(argv, log, work, env=env)
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None:
                raise BenchError(f"celery worker exited with {proc.returncode}:\n{tail_of(log)}")
            if time.monotonic() > deadline:
                raise BenchError(f"celery worker not ready after 60 s:\n{tail_of(log)}")
            time.sleep(0.05)
        return proc

    def _celery_enqueue(
        self, run: Run, receiver_url: str, repeat: int, on_start: Callable[[], None]
    ) -> tuple[float, dict[str, int], dict[str, str]]:
        """One task per delivery, enqueued by this process as an application would."""
        args = self.args
        if self._celery is None:
            os.environ["DELIVER_CELERY_BROKER"] = args.celery_broker
            self._celery = importlib.import_module("deliver_celery")
        deliver = self._celery.deliver
        prefix = f"msg_{run.target}{repeat}_"
        secret_of = {f"/d{i}": new_secret() for i in range(args.destinations)}
        targets = [(f"{receiver_url}{path}", secret) for path, secret in secret_of.items()]
        tail = payload_tail(args.payload_bytes)
        iso = iso_now()
        bodies = [webhook_body(seq, tail, iso).decode() for seq in range(args.events)]
        on_start()
        t0 = time.monotonic()
        for seq, body in enumerate(bodies):
            for target_url, secret in targets:
                deliver.apply_async((target_url, f"{prefix}{seq}", body, secret))
            if seq % 1000 == 999 and time.monotonic() - t0 > args.timeout:
                raise BenchError(f"{run.target}: enqueueing took more than {args.timeout:g} s")
        run.ingest_s = round(time.monotonic() - t0, 3)
        return t0, {f"{prefix}{seq}": seq for seq in range(args.events)}, secret_of

    # ----------------------------------------------------------- latency
    def latency(self, repeat: int) -> Run:
        args = self.args
        work = self.root / f"latency-tidings-{repeat}"
        work.mkdir()
        run = Run("latency", "tidings", repeat, rate=args.rate)
        run.idle_wait_s = round(wait_idle(args.wait_idle), 1)
        receiver, receiver_url = self.start_receiver(work)
        watch = [("receiver", receiver, work / "receiver.log")]
        publisher = None
        tidings = t = self.new_tidings(work)
        self.describe_tidings(run, t)
        run.mode = "steady rate"
        finished = False
        try:
            self.start_tidings(t)
            url, api_key = t.url, t.api_key
            watch.extend(t.watch)
            dests = self.create_destinations(url, api_key, receiver_url)
            secret_of = {f"/d{i}": secret for i, (_, secret) in enumerate(dests)}
            cfg = {
                "url": url,
                "api_key": api_key,
                "rate": args.rate,
                "seconds": args.latency_seconds,
                "keys": args.keys,
                "payload_bytes": args.payload_bytes,
                "concurrency": args.publish_concurrency,
                "destinations": args.destinations,
                "request_timeout": 30.0,
                "result_file": str(work / "publisher.json"),
            }
            publisher = self.spawn(
                [sys.executable, __file__, "_publisher", json.dumps(cfg)],
                work / "publisher.log",
                work,
                talks=True,
            )
            line = read_line(publisher, time.monotonic() + 60, "publisher")
            if line != "ready":
                raise BenchError(f"publisher said {line!r}")
            meter = CpuMeter()
            meter.start(
                {**t.sessions(), "receiver": receiver.pid, "publisher": publisher.pid},
                db=args.database == "postgres",
            )
            t0 = time.monotonic() + 0.1
            assert publisher.stdin is not None
            publisher.stdin.write(f"go {t0}\n".encode())
            publisher.stdin.close()
            # CPU over the publishing window, read while the publisher still exists
            time.sleep(max(0.0, t0 + args.latency_seconds - 0.05 - time.monotonic()))
            run.cpu_pct = meter.stop()
            run.foreign_top = meter.foreign_top
            run.cpu_workers_pct = [meter.session_pct[w.pid] for w in tidings.workers]
            try:
                rc = publisher.wait(60)
            except subprocess.TimeoutExpired:
                raise BenchError("latency publisher did not finish in time") from None
            if rc:
                raise BenchError(f"publisher failed ({rc}):\n{tail_of(work / 'publisher.log')}")
            result = json.loads((work / "publisher.json").read_text())
            run.sender_errors = result["errors"]
            records = result["records"]
            acked = [r for r in records if r[5] == 202 and r[1]]
            run.sent = len(records)
            run.acked = len(acked)
            run.events = run.acked
            run.deliveries = run.acked * args.destinations
            run.late_sends = sum(1 for r in records if r[3] - r[2] > 0.005)
            statuses: dict[str, int] = {}
            for r in records:
                if r[5] != 202:
                    statuses[str(r[5])] = statuses.get(str(r[5]), 0) + 1
            if statuses:
                run.problems.append(f"not 202: {statuses}")
            if acked:
                span = max(r[3] for r in acked) - min(r[3] for r in acked)
                run.rate = round((len(acked) - 1) / span, 1) if span > 0 else 0.0
            self.wait_delivered(receiver_url, run.acked, t0, "tidings latency", watch)
            seq_of = {r[1]: r[0] for r in acked}
            arrivals = self.collect(run, receiver_url, seq_of, secret_of, run.acked)
            skip = int(args.latency_warmup * args.rate)
            measured = {r[1]: r for r in acked if r[0] >= skip}
            from_ack: list[float] = []
            from_send: list[float] = []
            for pairs in arrivals.values():
                for msg_id, arrived in pairs:
                    rec = measured.get(msg_id)
                    if rec is None:
                        continue
                    if arrived < rec[4]:
                        run.early_deliveries += 1
                    from_ack.append(max(0.0, arrived - rec[4]) * 1000)
                    from_send.append((arrived - rec[3]) * 1000)
            from_ack.sort()
            from_send.sort()
            acks = sorted((r[4] - r[3]) * 1000 for r in measured.values())
            run.measured_deliveries = len(from_ack)
            run.ack_p50_ms = round(percentile(acks, 0.50), 2)
            run.ack_p99_ms = round(percentile(acks, 0.99), 2)
            run.ack_to_delivery_p50_ms = round(percentile(from_ack, 0.50), 2)
            run.ack_to_delivery_p99_ms = round(percentile(from_ack, 0.99), 2)
            run.ack_to_delivery_max_ms = round(from_ack[-1], 2) if from_ack else 0.0
            run.send_to_delivery_p50_ms = round(percentile(from_send, 0.50), 2)
            run.send_to_delivery_p99_ms = round(percentile(from_send, 0.99), 2)
            finished = True
        finally:
            self.stop(publisher, 5)
            keep = args.keep_tmp or not finished or bool(run.problems)
            run.server_stop = self.stop_tidings(tidings, keep)
            run.analyze_runs = tidings.analyzer.runs if tidings.analyzer else 0
            self.stop(receiver, 5)
        return run


# =============================================================== reporting
def describe(run: Run, repeats: int) -> str:
    head = f"{run.scenario:10} {run.target:14} run {run.repeat + 1}/{repeats}: "
    if run.scenario == "throughput":
        line = (
            head + f"{run.deliveries_per_s:>9,.0f} deliveries/s ({run.deliveries:,} in "
            f"{run.elapsed_s:.2f} s)"
        )
        if run.ingest_s is not None:
            what = "enqueue" if run.target.startswith("celery") else "ingest"
            line += f" | {what} {run.ingest_s:.2f} s"
    else:
        line = (
            head + f"{run.acked:,} events at {run.rate:,.0f}/s ({run.late_sends} late sends) | "
            f"202 p50 {run.ack_p50_ms:.1f} p99 {run.ack_p99_ms:.1f} ms | 202->delivery p50 "
            f"{run.ack_to_delivery_p50_ms:.1f} p99 {run.ack_to_delivery_p99_ms:.1f} max "
            f"{run.ack_to_delivery_max_ms:.1f} ms ({run.early_deliveries} before their 202) | "
            f"send->delivery p50 {run.send_to_delivery_p50_ms:.1f} p99 "
            f"{run.send_to_delivery_p99_ms:.1f} ms"
        )
    if run.database:
        where = f"api + {run.workers} worker(s)" if run.workers else "serve"
        line += f" | {where} on {run.database}, {run.mode}"
    if run.cpu_pct:
        line += " | cpu " + " ".join(f"{k} {v:.0f}%" for k, v in run.cpu_pct.items())
    if len(run.cpu_workers_pct) > 1:
        line += " (each worker: " + " ".join(f"{v:.0f}%" for v in run.cpu_workers_pct) + ")"
    if run.analyze_runs:
        line += f" | {run.analyze_runs} x ANALYZE"
    if run.cpu_pct.get("others", 0) >= NOISE_PCT:
        line += f" | NOISE: the machine was busy with other work ({run.foreign_top or '?'})"
    line += (
        f" | received {run.received:,} = {run.unique:,} distinct"
        + (f" + {run.duplicates:,} DUPLICATES" if run.duplicates else "")
        + f", fifo {'ok' if not run.fifo_violations else f'{run.fifo_violations:,} out of order'}"
        + f", {run.signatures_checked} sampled requests verified"
    )
    if run.sender_errors:
        line += f" | sender errors {run.sender_errors}"
    if run.problems:
        line += " | PROBLEMS: " + "; ".join(run.problems[:5])
    return line


def medians(runs: list[Run]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    through = [r for r in runs if r.scenario == "throughput"]
    order = ["raw", "tidings", *(f"celery-{p}" for p in POOLS), *STREAM_TARGETS]
    for target in sorted({r.target for r in through}, key=order.index):
        mine = [r for r in through if r.target == target]
        name = target.replace("-", "_")
        out[f"{name}_deliveries_per_s"] = round(statistics.median(r.deliveries_per_s for r in mine))
        if target == "stream-tidings":
            out["stream_tidings_ingest_s"] = round(
                statistics.median(r.ingest_s or 0 for r in mine), 3
            )
        if target == "tidings":
            out["tidings_ingest_s"] = round(statistics.median(r.ingest_s or 0 for r in mine), 3)
            out["tidings_database"] = mine[0].database
            out["tidings_workers"] = mine[0].workers
            out["tidings_mode"] = mine[0].mode
    pools = {k: v for k, v in out.items() if k.startswith("celery_")}
    if pools:
        best = max(pools, key=lambda k: pools[k])
        out["celery_best_pool"] = best.removeprefix("celery_").removesuffix("_deliveries_per_s")
        out["celery_deliveries_per_s"] = pools[best]
    tidings = out.get("tidings_deliveries_per_s")
    if tidings and out.get("raw_deliveries_per_s"):
        out["tidings_vs_raw"] = round(tidings / out["raw_deliveries_per_s"], 3)
        # Each repeat's Tidings run over the ceiling run next to it: the machine's mood
        # of the moment is in both, so this ratio swings less than either figure.
        raw_of = {r.repeat: r.deliveries_per_s for r in through if r.target == "raw"}
        each = [
            round(r.deliveries_per_s / raw_of[r.repeat], 3)
            for r in through
            if r.target == "tidings" and raw_of.get(r.repeat)
        ]
        out["tidings_vs_raw_each"] = each
        out["tidings_vs_raw_paired"] = round(statistics.median(each), 3)
        raws = sorted(raw_of.values())
        out["raw_spread"] = round(raws[-1] / max(1e-9, raws[0]), 2)
        # CPU per delivery, raw over Tidings, paired the same way: the efficiency ratio,
        # which a busy machine moves much less than the throughput ratio
        raw_cpu = {r.repeat: r.cpu_us_per_delivery for r in through if r.target == "raw"}
        cpu_each = [
            round(raw_cpu[r.repeat] / r.cpu_us_per_delivery, 3)
            for r in through
            if r.target == "tidings" and raw_cpu.get(r.repeat) and r.cpu_us_per_delivery
        ]
        if cpu_each:
            out["cpu_us_per_delivery_raw"] = statistics.median(raw_cpu.values())
            out["cpu_us_per_delivery_tidings"] = statistics.median(
                r.cpu_us_per_delivery for r in through if r.target == "tidings"
            )
            out["raw_vs_tidings_cpu_each"] = cpu_each
            out["raw_vs_tidings_cpu_paired"] = round(statistics.median(cpu_each), 3)
    streams, xadd = (
        out.get("stream_tidings_deliveries_per_s"),
        out.get("stream_raw_deliveries_per_s"),
    )
    if streams and xadd:
        out["stream_tidings_vs_raw"] = round(streams / xadd, 3)
    if tidings and out.get("celery_deliveries_per_s"):
        out["tidings_vs_celery"] = round(tidings / out["celery_deliveries_per_s"], 2)
    if out.get("raw_deliveries_per_s") and out.get("celery_deliveries_per_s"):
        out["raw_vs_celery"] = round(
            out["raw_deliveries_per_s"] / out["celery_deliveries_per_s"], 2
        )
    lat = [r for r in runs if r.scenario == "latency"]
    if lat:
        out["latency_database"] = lat[0].database
        out["latency_workers"] = lat[0].workers
        out["latency_rate_per_s"] = round(statistics.median(r.rate for r in lat), 1)
        for name in (
            "ack_p50_ms",
            "ack_p99_ms",
            "ack_to_delivery_p50_ms",
            "ack_to_delivery_p99_ms",
            "send_to_delivery_p50_ms",
            "send_to_delivery_p99_ms",
        ):
            out[f"latency_{name}"] = round(statistics.median(getattr(r, name) for r in lat), 2)
    return out


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def print_summary(summary: dict[str, Any]) -> None:
    print("\n# medians")
    if "tidings_database" in summary:
        workers = summary["tidings_workers"]
        how = f"api + {workers} worker(s)" if workers else "serve"
        print(
            f"tidings throughput: {how} on {summary['tidings_database']}, {summary['tidings_mode']}"
        )
    for key, value in summary.items():
        if key.endswith("_deliveries_per_s") and key != "celery_deliveries_per_s":
            print(f"throughput {key.removesuffix('_deliveries_per_s'):15} {value:>9,} deliveries/s")
    if "celery_best_pool" in summary:
        print(f"celery best pool: {summary['celery_best_pool']}")
    if "tidings_vs_raw" in summary:
        ratio = summary["tidings_vs_raw"]
        print(
            f"tidings / raw ceiling: {ratio:.2f} "
            f"({verdict(ratio >= AIM_RAW_RATIO)} the aim >= {AIM_RAW_RATIO})"
        )
    if "tidings_vs_raw_paired" in summary:
        print(
            f"tidings / raw ceiling, paired per repeat: median "
            f"{summary['tidings_vs_raw_paired']:.2f} of {summary['tidings_vs_raw_each']} "
            f"(raw ceiling max/min {summary['raw_spread']:.2f})"
        )
    if "raw_vs_tidings_cpu_paired" in summary:
        print(
            f"CPU per delivery: raw {summary['cpu_us_per_delivery_raw']:,.0f} us, tidings "
            f"{summary['cpu_us_per_delivery_tidings']:,.0f} us (api, workers, database); raw / "
            f"tidings paired per repeat: median {summary['raw_vs_tidings_cpu_paired']:.2f} of "
            f"{summary['raw_vs_tidings_cpu_each']}"
        )
    if "tidings_vs_celery" in summary:
        factor = summary["tidings_vs_celery"]
        print(
            f"tidings / celery: {factor:.1f}x "
            f"({verdict(factor >= AIM_CELERY_FACTOR)} the aim >= {AIM_CELERY_FACTOR:g}x)"
        )
    if "stream_tidings_vs_raw" in summary:
        print(f"tidings redis_stream / raw XADD pipeline: {summary['stream_tidings_vs_raw']:.2f}")
    if "raw_vs_celery" in summary:
        print(f"raw ceiling / celery: {summary['raw_vs_celery']:.1f}x")
    if "latency_ack_to_delivery_p99_ms" in summary:
        p99 = summary["latency_ack_to_delivery_p99_ms"]
        print(
            f"latency at {summary['latency_rate_per_s']:,.0f} events/s: 202->delivery p50 "
            f"{summary['latency_ack_to_delivery_p50_ms']:.1f} ms p99 {p99:.1f} ms "
            f"({verdict(p99 < AIM_P99_MS)} the aim p99 < {AIM_P99_MS:g} ms); send->delivery "
            f"p50 {summary['latency_send_to_delivery_p50_ms']:.1f} ms p99 "
            f"{summary['latency_send_to_delivery_p99_ms']:.1f} ms"
        )


def versions(postgres_url: str | None = None) -> dict[str, str]:
    return ingest_versions(postgres_url, (*PACKAGES, "celery", "kombu", "redis"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/deliver.py",
        description=(
            "Delivery benchmark: N events fanned out to 4 webhook destinations on a local "
            "receiver; end-to-end deliveries/s of `tidings serve` beside the raw ceiling of "
            "the same HTTP client and beside Celery + Redis; and the latency from 202 to "
            "delivery at a steady rate."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--scenario", default="all", choices=["throughput", "latency", "all"])
    p.add_argument(
        "--only", default="raw,tidings,celery", help="targets to run (latency needs tidings)"
    )
    p.add_argument("--events", type=int, default=20_000, help="events per throughput run")
    p.add_argument("--repeats", type=int, default=3, help="runs per target")
    p.add_argument("--destinations", type=int, default=4, help="webhook destinations")
    p.add_argument("--keys", type=int, default=1000, help="distinct event keys (fifo lanes)")
    p.add_argument("--payload-bytes", type=int, default=1024, help="size of each payload")
    p.add_argument("--max-in-flight", type=int, default=16, help="per destination (raw: the same)")
    p.add_argument("--batch-size", type=int, default=1000, help="events per ingest request")
    p.add_argument(
        "--preload",
        action="store_true",
        help="tidings: pause the destinations during ingest and time the drain alone",
    )
    database_options(
        p,
        "tidings: sqlite (a new file per run) or postgres (a new schema per run, dropped after it)",
        analyze=True,
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="tidings: 0 = `tidings serve` (all in one process); N = `tidings api` + N "
        "`tidings worker` processes on the same database",
    )
    p.add_argument(
        "--sender-processes",
        type=int,
        default=None,
        help="tidings: TIDINGS_SENDER_PROCESSES of each worker (default: Tidings' own "
        "default, one per CPU up to 4); their CPU counts in the worker's column",
    )
    p.add_argument(
        "--pin-receiver",
        type=int,
        default=None,
        metavar="CPU",
        help="pin the receiver process to this CPU (sched_setaffinity)",
    )
    p.add_argument("--xadd-pipeline", type=int, default=100, help="stream-raw: XADDs per pipeline")
    p.add_argument("--celery-pools", default="threads,prefork", help="threads and/or prefork")
    p.add_argument("--celery-threads", type=int, default=32, help="threads pool concurrency")
    p.add_argument("--celery-procs", type=int, default=2, help="prefork pool processes")
    p.add_argument("--celery-prefetch", type=int, default=4, help="worker_prefetch_multiplier")
    p.add_argument(
        "--celery-broker", default="redis://127.0.0.1:6379/15", help="flushed before and after"
    )
    p.add_argument("--rate", type=float, default=500.0, help="latency: events/s")
    p.add_argument("--latency-seconds", type=float, default=10.0, help="latency: publish time")
    p.add_argument("--latency-warmup", type=float, default=1.0, help="latency: not measured")
    p.add_argument("--publish-concurrency", type=int, default=64, help="latency: max in flight")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run, at most")
    p.add_argument("--stall", type=float, default=60.0, help="fail after so long without progress")
    p.add_argument("--settle", type=float, default=0.5, help="wait for late duplicates (s)")
    p.add_argument("--stop-timeout", type=float, default=20.0, help="SIGTERM grace (s)")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=30.0,
        help="before each run, wait up to this many seconds for the machine to be idle",
    )
    p.add_argument("--save", action="store_true", help="write bench/results/deliver-<ts>.json")
    p.add_argument("--output", type=Path, help="write the results JSON to this path")
    p.add_argument(
        "--keep-tmp", action="store_true", help="keep databases (files, schemas) and logs"
    )
    args = p.parse_args(argv)
    args.only = [t.strip() for t in args.only.split(",") if t.strip()]
    if "stream" in args.only:
        args.only = [t for t in args.only if t != "stream"] + list(STREAM_TARGETS)
    args.celery_pools = [t.strip() for t in args.celery_pools.split(",") if t.strip()]
    for t in args.only:
        if t not in TARGETS:
            p.error(f"--only: unknown target {t!r} ({', '.join(TARGETS)}, stream)")
    for pool in args.celery_pools:
        if pool not in POOLS:
            p.error(f"--celery-pools: unknown pool {pool!r} (threads, prefork)")
    if args.events < 1 or args.repeats < 1 or args.destinations < 1 or args.keys < 1:
        p.error("--events, --repeats, --destinations and --keys must be >= 1")
    if not 1 <= args.batch_size <= 1000:
        p.error("--batch-size must be 1..1000 (the API's limit)")
    if not 1 <= args.max_in_flight <= 1000:
        p.error("--max-in-flight must be 1..1000 (the API's limit)")
    if args.rate <= 0 or args.latency_seconds <= args.latency_warmup:
        p.error("--rate > 0 and --latency-seconds > --latency-warmup")
    if not 0 <= args.workers <= 16:
        p.error("--workers must be 0..16")
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(scenario, target) of each run of one repeat, interleaved."""
    runs: list[tuple[str, str]] = []
    if args.scenario in ("throughput", "all"):
        for target in TARGETS:
            if target not in args.only:
                continue
            if target == "celery":
                runs.extend(("throughput", f"celery-{pool}") for pool in args.celery_pools)
            else:
                runs.append(("throughput", target))
    if args.scenario in ("latency", "all") and "tidings" in args.only:
        runs.append(("latency", "tidings"))
    return runs


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    steps = plan(args)
    if not steps:
        print("nothing to run", file=sys.stderr)
        return 1
    if any(t == "tidings" for _, t in steps):
        try:
            import tidings  # noqa: F401
        except ImportError:
            print(f"{sys.executable} cannot import tidings: use .venv/bin/python", file=sys.stderr)
            return 1
        if args.database == "postgres":
            try:
                postgres_version(args.postgres_url)
            except BenchError as exc:
                print(exc, file=sys.stderr)
                return 1
    if any(t.startswith("celery") for _, t in steps):
        try:
            importlib.import_module("celery")
            redis = importlib.import_module("redis")
        except ImportError:
            print('celery runs need `pip install -e ".[bench]"`', file=sys.stderr)
            return 1
        try:
            redis.Redis.from_url(args.celery_broker, socket_timeout=5).ping()
        except Exception as exc:
            print(f"celery runs need Redis at {args.celery_broker}: {exc}", file=sys.stderr)
            return 1
    through = any(s == "throughput" for s, _ in steps)
    setup = setup_label(args, through)
    print(
        f"# tidings delivery bench: {os.cpu_count()} CPUs, {args.repeats} repeats; throughput: "
        f"{args.events:,} events x {args.destinations} destinations = "
        f"{args.events * args.destinations:,} deliveries, {args.keys} keys, payload "
        f"{args.payload_bytes} B, max_in_flight {args.max_in_flight}/destination, celery "
        f"threads={args.celery_threads} prefork={args.celery_procs}; latency: {args.rate:g} "
        f"events/s for {args.latency_seconds:g} s; runs per repeat: "
        + ", ".join(f"{s}/{t}" for s, t in steps)
        + (f"\n# tidings: {setup}" if any(t == "tidings" for _, t in steps) else ""),
        flush=True,
    )
    runs: list[Run] = []
    root = Path(tempfile.mkdtemp(prefix="tidings-deliver-"))
    runner = Runner(args, root)

    def run_all() -> int:
        failed = 0
        for repeat in range(args.repeats):
            for scenario, target in steps:
                if scenario == "throughput":
                    run = runner.throughput(target, repeat)
                else:
                    run = runner.latency(repeat)
                runs.append(run)
                print(describe(run, args.repeats), flush=True)
                if run.problems:
                    failed = 2
        return failed

    status = run_steps(run_all, runner, root, args.keep_tmp, "CHECK FAILED")
    if status == 2:
        print("\n!!! some runs failed their checks (PROBLEMS above)", file=sys.stderr)
    if not runs or status not in (0, 2):
        return status
    summary = medians(runs)
    if args.database == "postgres" and any(r.database for r in runs):
        summary["analyze_every_s"] = args.analyze_every
    print_summary(summary)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(args.postgres_url if args.database == "postgres" else None),
        "tidings_setup": setup,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "aims": {
            "tidings_vs_raw": AIM_RAW_RATIO,
            "tidings_vs_celery": AIM_CELERY_FACTOR,
            "latency_ack_to_delivery_p99_ms": AIM_P99_MS,
        },
        "medians": summary,
        "runs": [asdict(r) for r in runs],
    }
    write_results("deliver", document, summary, args)
    return status


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_receiver":
        sys.exit(receiver_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "_raw-client":
        sys.exit(raw_client_main(sys.argv[2]))
    if len(sys.argv) > 1 and sys.argv[1] == "_xadd-client":
        sys.exit(xadd_client_main(sys.argv[2]))
    if len(sys.argv) > 1 and sys.argv[1] == "_publisher":
        sys.exit(publisher_main(sys.argv[2]))
    sys.exit(main(sys.argv[1:]))
