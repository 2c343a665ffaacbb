"""Ingest benchmark: events/s a real `tidings serve` acknowledges with 202, and the ceiling.

    .venv/bin/python bench/ingest.py                      # 3 x (raw, tidings) x (single, batch)
    .venv/bin/python bench/ingest.py --duration 8 --repeats 3 --save
    .venv/bin/python bench/ingest.py --database postgres --save   # PostgreSQL on 127.0.0.1
    git archive main src | tar -x -C /tmp/base        # the code to compare with, then:
    .venv/bin/python bench/ingest.py --database postgres --baseline /tmp/base/src

What one run does
- starts a real `tidings serve` subprocess on a fresh database (TIDINGS_DATABASE_URL,
  TIDINGS_API_KEY, TIDINGS_PORT, TIDINGS_LOG_LEVEL=warning): with `--database sqlite` (the
  default) a new SQLite file in a temporary directory; with `--database postgres` a new
  schema `bench_<random>` of `--postgres-url` (default $TIDINGS_BENCH_POSTGRES_URL, else
  postgresql://postgres@127.0.0.1:5432/postgres), created by Tidings on start and dropped
  after the run (kept, and named, when the check below fails or with --keep-tmp; a fresh
  schema has no planner statistics, and autovacuum may be off or too slow to gather any
  during a run: `--analyze-every S` has the driver ANALYZE the run's tables every S s,
  as autovacuum would on a production server); waits for /healthz and creates two
  webhook destinations subscribed to `bench.*`, so every event also writes two delivery
  rows (the destinations are paused, so nothing is sent: this measures ingest alone);
- starts the load generator as separate processes (aiohttp client on uvloop), so that it
  does not share a GIL with the server; each process runs a number of client tasks, each
  with its own keep-alive connection, and each task sends one request at a time;
- scenario `single`: POST /v1/events, one ~1 KB event per request, a distinct key per
  event; scenario `batch`: POST /v1/events/batch, `--batch-size` events per request;
- after `--warmup` seconds, counts for `--duration` seconds the events of the 202
  responses that complete inside the window: events/s. Latency percentiles are of the
  requests completed inside the window;
- stops the server (SIGTERM; SIGKILL after a timeout), reads the database (SQLite: the file,
  opened read-only; PostgreSQL: the run's schema, with asyncpg) and checks that it holds
  exactly the events acknowledged with 202 (by count and by id: every acknowledged id is
  stored) and two deliveries per event; any difference fails the benchmark loudly (exit
  status 2).

With `--baseline SRC` each repeat also runs target `base`: the same `tidings serve`, with
SRC (the src/ folder of another checkout) first on PYTHONPATH, interleaved with the
others, so that a change is measured against the code before it in the same sitting
(`vs base` in the medians).

The raw ceiling
The same client, same process and task counts, against a trivial aiohttp + uvloop server
(this file, `_raw-server` mode) that reads the body and answers 202 at once with a canned
body of the same shape. It is what the load generator and the HTTP stack reach on this
machine with no work behind them; Tidings is reported as a ratio of it, measured in the
same invocation and interleaved with the Tidings runs (raw, tidings, raw, tidings, ...).

`server N us/event`: the server process's CPU (every thread) in the window over the
events acknowledged in it: what one event costs the API, which other processes' load
skews less than events/s.

CPU columns (percent of one core, over the measurement window): `loop` is the server's
main thread (event loop: HTTP parsing, msgspec, middlewares, routing), `other` its other
threads (for Tidings on SQLite: the SQLite writer), `db` the PostgreSQL server (every
process named `postgres`: the run's backends, WAL writer, checkpointer; 0 on SQLite),
`clients` all load-generator processes together and `machine` the whole machine (200% =
both cores of a 2-core machine busy).

The last line of standard output is a JSON object with the medians; `--save` also writes
every figure to bench/results/ingest-<timestamp>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import tidings

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
RESULTS = HERE / "results"
TOPIC = "bench.order-created"
DESTINATIONS = 2
TARGETS = {"single": 3_000.0, "batch": 30_000.0}
CLK_TCK = os.sysconf("SC_CLK_TCK")
DATABASES = ("sqlite", "postgres")
DEFAULT_POSTGRES_URL = os.environ.get(
    "TIDINGS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TIDINGS_TARGETS = ("tidings", "base")
DB_PROCESS = "postgres"  # the name (comm) of every PostgreSQL server process


class BenchError(Exception):
    """The benchmark could not run (a process failed to start, a timeout, ...)."""


class VerificationError(BenchError):
    """The store does not hold exactly what was acknowledged: a durability failure."""


# =============================================================== payloads (client + server)


def database_options(p: argparse.ArgumentParser, database_help: str, analyze: bool) -> None:
    """The options every server bench takes for its store: --database, --postgres-url and,
    with `analyze`, --analyze-every."""
    p.add_argument("--database", choices=DATABASES, default="sqlite", help=database_help)
    p.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="PostgreSQL server for --database postgres ($TIDINGS_BENCH_POSTGRES_URL)",
    )
    if analyze:
        p.add_argument(
            "--analyze-every",
            type=float,
            default=0.0,
            metavar="S",
            help="postgres: ANALYZE the run's tables every S seconds during the run, as "
            "autovacuum would (0: never; check `SHOW autovacuum` on your server)",
        )


def run_steps(steps: Callable[[], int], runner: Any, root: Path, keep: bool, check: str) -> int:
    """Run a bench's runs (`steps` answers 0, or 2 when a run failed its checks), then stop
    every process `runner` started and remove `root`, kept when asked or when anything
    failed. Answers the exit status: 2 a check failed (`check` names it), 1 the bench
    failed, 130 interrupted."""
    status = 0
    try:
        status = steps()
    except VerificationError as exc:
        print(f"\n!!! {check}: {exc}\n", file=sys.stderr, flush=True)
        status = 2
    except BenchError as exc:
        print(f"\n!!! benchmark failed: {exc}\n", file=sys.stderr, flush=True)
        status = 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        status = 130
    finally:
        runner.kill_all()
        if keep or status:
            print(f"# kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return status


def payload_tail(size: int) -> bytes:
    """The constant part of a ~`size`-byte JSON payload; `{"seq":N` goes before it."""
    head = (
        ',"order_id":"ord_8f14e45fceea167a5a36dedd4bea2543","currency":"EUR",'
        '"customer":{"id":"cus_c4ca4238a0b923820dcc509a6f75849b","name":"Ada Lovelace",'
        '"email":"ada@example.com","tier":"gold"},"lines":['
        + ",".join(
            f'{{"sku":"SKU-{i:04d}","qty":{i % 5 + 1},"unit_price":{i * 3 + 0.99:.2f}}}'
            for i in range(8)
        )
        + '],"note":"'
    )
    pad = max(0, size - len(head) - len('{"seq":0000000"}') - 2)
    return (head + "x" * pad + '"}').encode()


def event_body(key: bytes, seq: int, tail: bytes) -> bytes:
    return (
        b'{"topic":"'
        + TOPIC.encode()
        + b'","key":"'
        + key
        + b'","payload":{"seq":'
        + str(seq).encode()
        + tail
        + b"}"
    )


# =============================================================== load generator process
def client_main(config_json: str) -> int:
    """One load-generator process (`ingest.py _client CONFIG`). Prints `ready`, waits for
    `go T` on stdin (T: time.monotonic() start, shared by all processes of the run), runs
    the warm-up and the window, finishes requests in flight and writes its figures to
    config["result_file"]."""
    import asyncio
    import resource

    import aiohttp
    import msgspec
    import uvloop

    cfg = json.loads(config_json)

    class One(msgspec.Struct):
        id: str
        deliveries: int

    class Many(msgspec.Struct):
        ids: list[str]
        deliveries: list[int]
        duplicates: int

    one = msgspec.json.Decoder(One)
    many = msgspec.json.Decoder(Many)
    tail = payload_tail(cfg["payload_bytes"])
    batch = cfg["mode"] == "batch"
    path = "/v1/events/batch" if batch else "/v1/events"
    url = cfg["url"] + path
    headers = {
        "Authorization": f"Bearer {cfg['api_key']}",
        "Content-Type": "application/json",
    }
    expect_deliveries = cfg["expect_deliveries"]
    out: dict[str, Any] = {
        "acked_events": 0,
        "acked_requests": 0,
        "window_events": 0,
        "window_requests": 0,
        "statuses": {},
        "errors": {},
        "bad_fanout": 0,
        "latencies_ms": [],
        "cpu_s": 0.0,
    }
    acked_ids: list[str] = []

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    async def run() -> None:
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        start = float(line.split()[1])
        w_start = start + cfg["warmup"]
        w_end = w_start + cfg["duration"]
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        timeout = aiohttp.ClientTimeout(total=cfg["request_timeout"])
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def worker(task: int) -> None:
                prefix = f"{cfg['key_prefix']}t{task}-".encode()
                seq = 0
                lat = out["latencies_ms"]
                while True:
                    t0 = time.monotonic()
                    if t0 >= w_end:
                        return
                    if batch:
                        parts = []
                        for _ in range(cfg["batch_size"]):
                            parts.append(event_body(prefix + str(seq).encode(), seq, tail))
                            seq += 1
                        body = b'{"events":[' + b",".join(parts) + b"]}"
                    else:
                        body = event_body(prefix + str(seq).encode(), seq, tail)
                        seq += 1
                    try:
                        async with session.post(url, data=body, headers=headers) as resp:
                            raw = await resp.read()
                            status = resp.status
                    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                        name = type(exc).__name__
                        out["errors"][name] = out["errors"].get(name, 0) + 1
                        await asyncio.sleep(0.01)
                        continue
                    t1 = time.monotonic()
                    key = str(status)
                    out["statuses"][key] = out["statuses"].get(key, 0) + 1
                    if status != 202:
                        continue
                    if batch:
                        answer = many.decode(raw)
                        ids = answer.ids
                        fanout_ok = answer.duplicates == 0 and all(
                            d == expect_deliveries for d in answer.deliveries
                        )
                    else:
                        single = one.decode(raw)
                        ids = [single.id]
                        fanout_ok = single.deliveries == expect_deliveries
                    if not fanout_ok:
                        out["bad_fanout"] += 1
                    out["acked_events"] += len(ids)
                    out["acked_requests"] += 1
                    if cfg["collect_ids"]:
                        acked_ids.extend(ids)
                    if w_start <= t1 < w_end:
                        out["window_events"] += len(ids)
                        out["window_requests"] += 1
                        lat.append(round((t1 - t0) * 1000, 3))

            async def cpu_sampler() -> None:
                await asyncio.sleep(max(0.0, w_start - time.monotonic()))
                before = cpu()
                await asyncio.sleep(max(0.0, w_end - time.monotonic()))
                out["cpu_s"] = cpu() - before

            await asyncio.gather(cpu_sampler(), *(worker(i) for i in range(cfg["tasks"])))

    uvloop.run(run())
    if cfg["collect_ids"]:
        Path(cfg["ids_file"]).write_text("\n".join(acked_ids))
    Path(cfg["result_file"]).write_text(json.dumps(out))
    return 0


# =============================================================== trivial server process
def raw_server_main(argv: list[str]) -> int:
    """`ingest.py _raw-server PORT BATCH_SIZE`: read the body, answer 202 at once."""
    import uvloop
    from aiohttp import web

    port, batch_size = int(argv[0]), int(argv[1])
    fake_id = "evt_01JDQ0ZJ6R3W1T9V8Y2K4M5N7P"
    one = json.dumps(
        {"id": fake_id, "received_at": "2024-11-23T12:00:00.000000Z", "deliveries": DESTINATIONS}
    ).encode()
    many = json.dumps(
        {
            "ids": [f"evt_01JDQ0ZJ6R3W1T9V8Y2K{i:06d}" for i in range(batch_size)],
            "deliveries": [DESTINATIONS] * batch_size,
            "duplicates": 0,
        }
    ).encode()

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    async def publish(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=one, status=202, content_type="application/json")

    async def publish_batch(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=many, status=202, content_type="application/json")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/v1/events", publish)
    app.router.add_post("/v1/events/batch", publish_batch)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
    return 0


# =============================================================== orchestration helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail_of(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def sdk(
    url: str, api_key: str | None = None, timeout: float = 10, retries: int = 3
) -> tidings.Client:
    """The SDK's client of the Tidings under test (the calls that set a run up, not the
    load: that is the raw aiohttp generator above, the same against both servers)."""
    policy = tidings.Retries(max_retries=retries)
    return tidings.Client(url, api_key=api_key or "", timeout=timeout, retries=policy)


def is_healthy(url: str) -> bool:
    """Whether a Tidings answers /healthz now (one try: the caller polls)."""
    with sdk(url, timeout=2, retries=0) as client:
        try:
            client.health()
        except tidings.TidingsError:
            return False
    return True


def paused_destinations(url: str, api_key: str, count: int, topics: list[str]) -> None:
    """`count` webhook destinations of `topics`, paused: the deliveries are written with
    the events and never sent, so a run measures ingest alone."""
    with sdk(url, api_key) as client:
        try:
            for i in range(count):
                made = client.create_destination(
                    "webhook", topics, name=f"bench-{i + 1}", url="http://127.0.0.1:9/hook"
                )
                client.update_destination(made.id, state="paused")
        except tidings.TidingsError as exc:
            raise BenchError(f"setting up the destinations: {exc}") from None


def http_json(
    method: str, url: str, body: Any = None, api_key: str | None = None, timeout: float = 10
) -> tuple[int, Any]:
    """A JSON call to what is not a Tidings (a receiver's /stats, the raw ceiling)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:500]


# =============================================================== PostgreSQL (driver side)
def new_schema() -> str:
    """A fresh schema name for one run (Tidings creates it on first start)."""
    return f"bench_{secrets.token_hex(6)}"


def with_schema(url: str, schema: str) -> str:
    """`url` with `schema=` set: the TIDINGS_DATABASE_URL of a run."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"] + [("schema", schema)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def pg_call(url: str, schema: str | None, fn: Any) -> Any:
    """`await fn(conn)` on a new asyncpg connection (search_path = `schema`), from sync code."""
    import asyncio

    import asyncpg

    async def go() -> Any:
        settings = {"search_path": schema} if schema else {}
        try:
            conn = await asyncpg.connect(url, timeout=10, server_settings=settings)
        except (OSError, asyncpg.PostgresError) as exc:
            raise BenchError(f"cannot connect to PostgreSQL at {url}: {exc}") from exc
        try:
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def drop_schema(url: str, schema: str) -> None:
    async def drop(conn: Any) -> None:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    pg_call(url, None, drop)


class Analyzer:
    """`--analyze-every S`: ANALYZE the run's tables every S seconds from a thread of the
    driver, as autovacuum would on a server where it is on (it is off on some CI
    servers, and a fresh schema has no statistics at all: the planner then guesses, and
    may pick plans that scan every row). Its cost counts as the database's CPU."""

    TABLES = "events, deliveries, attempts"

    def __init__(self, url: str, schema: str, every: float) -> None:
        import threading

        self.url, self.schema, self.every = url, schema, every
        self.runs = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="analyze", daemon=True)

    def start(self) -> Analyzer:
        if self.every > 0 and self.schema:
            self._thread.start()
        return self

    def _loop(self) -> None:
        async def analyze(conn: Any) -> None:
            await conn.execute(f"ANALYZE {self.TABLES}")

        while not self._stop.wait(self.every):
            try:
                pg_call(self.url, self.schema, analyze)
                self.runs += 1
            except Exception as exc:  # the schema may be going away at the end
                self.errors.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)


def postgres_version(url: str) -> str:
    async def ask(conn: Any) -> str:
        return str(await conn.fetchval("SHOW server_version"))

    return str(pg_call(url, None, ask))


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """SIGTERM, then SIGKILL after `timeout`; answers how it ended."""
    if proc.poll() is not None:
        return f"already exited ({proc.returncode})"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return "sigterm"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return "sigkill"


def thread_cpu(pid: int) -> tuple[float, float]:
    """(main thread, all other threads) CPU seconds of a process, from /proc."""
    main = other = 0.0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0, 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / CLK_TCK
        if int(tid) == pid:
            main += seconds
        else:
            other += seconds
    return main, other


PF_KTHREAD = 0x00200000


def processes_cpu(exclude: set[int]) -> dict[int, tuple[str, bool, float]]:
    """pid -> (name, is a kernel thread, CPU seconds) of every process not in `exclude`."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        kernel = bool(int(fields[6]) & PF_KTHREAD)
        seconds = (int(fields[11]) + int(fields[12])) / CLK_TCK
        out[int(entry)] = (head.split("(", 1)[1], kernel, seconds)
    return out


def foreign_cpu(
    before: dict[int, tuple[str, bool, float]],
    after: dict[int, tuple[str, bool, float]],
    db: bool = False,
) -> tuple[float, float, str, float]:
    """(user processes, kernel threads, the busiest user process, the database server)
    CPU seconds in between; a process born in between counts from zero, one that died in
    between is missed. With `db`, PostgreSQL's processes count as the database, not as
    user processes."""
    user = kernel = database = 0.0
    by_name: dict[str, float] = {}
    for pid, (name, is_kernel, seconds) in after.items():
        delta = seconds - (before[pid][2] if pid in before else 0.0)
        if is_kernel:
            kernel += delta
        elif db and name == DB_PROCESS:
            database += delta
        else:
            user += delta
            by_name[name] = by_name.get(name, 0.0) + delta
    top = max(by_name.items(), key=lambda kv: kv[1], default=("", 0.0))
    return user, kernel, top[0] if top[1] > 0 else "", database


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


def wait_idle(limit: float, threshold: float = 0.25) -> float:
    """Wait (up to `limit` seconds) for half a second in which the machine uses less than
    `threshold` cores: other people's test runs on a 2-core machine skew every figure.
    Answers the seconds waited (`limit` or more when it never went quiet)."""
    began = time.monotonic()
    ncpu = os.cpu_count() or 1
    while True:
        busy0, total0 = machine_cpu()
        time.sleep(0.5)
        busy1, total1 = machine_cpu()
        if ncpu * (busy1 - busy0) / max(1, total1 - total0) < threshold:
            return time.monotonic() - began
        if time.monotonic() - began >= limit:
            return time.monotonic() - began


def read_line(proc: subprocess.Popen[bytes], deadline: float, what: str) -> str:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"{what}: timed out waiting for it to be ready")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                raise BenchError(f"{what}: exited before it was ready (rc {proc.poll()})")
            buf += chunk
    return buf.decode().strip()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


# =============================================================== one run
@dataclass
class Run:
    scenario: str
    target: str  # "tidings" | "raw" | "base" (--baseline: another checkout's tidings)
    repeat: int
    events_per_s: float = 0.0
    requests_per_s: float = 0.0
    window_events: int = 0
    acked_events: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    cpu_loop_pct: float = 0.0
    server_us_per_event: float = 0.0  # the server process's CPU (all threads) / window events
    cpu_other_pct: float = 0.0
    cpu_clients_pct: float = 0.0
    cpu_machine_pct: float = 0.0
    cpu_foreign_pct: float = 0.0
    cpu_kernel_pct: float = 0.0
    cpu_db_pct: float = 0.0
    foreign_top: str = ""
    idle_wait_s: float = 0.0
    database: str = "sqlite"
    schema: str = ""  # postgres: the run's schema (dropped after the run unless kept)
    analyze_runs: int = 0  # postgres, --analyze-every: ANALYZEs done during the run
    stored_events: int | None = None
    stored_deliveries: int | None = None
    server_stop: str = ""
    verified: bool | None = None


@dataclass
class Options:
    duration: float
    warmup: float
    batch_size: int
    payload_bytes: int
    request_timeout: float
    stop_timeout: float
    wait_idle: float
    clients: dict[str, tuple[int, int]]  # scenario -> (processes, tasks in all)
    database: str = "sqlite"  # "sqlite" | "postgres"
    postgres_url: str = DEFAULT_POSTGRES_URL
    keep: bool = False  # keep every postgres schema (--keep-tmp)
    analyze_every: float = 0.0  # postgres: ANALYZE the run's tables this often (0: never)
    baseline: Path | None = None  # --baseline: the src/ folder of the code to compare with


class Runner:
    def __init__(self, opts: Options, root: Path) -> None:
        self.opts = opts
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def _spawn(self, argv: list[str], log: Path, cwd: Path, **kw: Any) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=kw.pop("stdout", out), stderr=out, cwd=cwd, **kw)
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        self.procs.clear()

    def _wait_healthy(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"server exited with {proc.returncode}:\n{tail_of(log)}")
            if is_healthy(url):
                return
            time.sleep(0.05)
        raise BenchError(f"server not healthy after 30 s:\n{tail_of(log)}")

    def database_url(self, work: Path, schema: str) -> str:
        if self.opts.database == "postgres":
            return with_schema(self.opts.postgres_url, schema)
        return f"sqlite:///{work / 'bench.db'}"

    def _start_server(
        self, target: str, work: Path, port: int, api_key: str, schema: str
    ) -> tuple[subprocess.Popen[bytes], Path]:
        log = work / "server.log"
        if target in TIDINGS_TARGETS:
            env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
            if target == "base":  # the baseline's sources first on the path
                env["PYTHONPATH"] = str(self.opts.baseline)
            env.update(
                TIDINGS_DATABASE_URL=self.database_url(work, schema),
                TIDINGS_API_KEY=api_key,
                TIDINGS_PORT=str(port),
                TIDINGS_HOST="127.0.0.1",
                TIDINGS_LOG_LEVEL="warning",
                TIDINGS_ALLOW_PRIVATE_TARGETS="1",
            )
            argv = [sys.executable, "-m", "tidings.cli", "serve"]
        else:
            env = dict(os.environ)
            argv = [sys.executable, __file__, "_raw-server", str(port), str(self.opts.batch_size)]
        proc = self._spawn(argv, log, cwd=work, env=env, start_new_session=True)
        return proc, log

    def run(self, scenario: str, target: str, repeat: int) -> Run:
        """One run; on PostgreSQL, in a schema of its own, dropped afterwards (kept when
        the durability check fails, or with --keep-tmp)."""
        opts = self.opts
        result = Run(scenario, target, repeat, database=opts.database)
        if target not in TIDINGS_TARGETS or opts.database != "postgres":
            return self._run(result)
        result.schema = new_schema()
        keep = opts.keep
        try:
            return self._run(result)
        except VerificationError:
            keep = True
            raise
        finally:
            if keep:
                print(f"# kept PostgreSQL schema {result.schema}", file=sys.stderr, flush=True)
            else:
                try:
                    drop_schema(opts.postgres_url, result.schema)
                except Exception as exc:  # a leftover schema is not worth a failed run
                    print(
                        f"# could not drop schema {result.schema}: {exc}",
                        file=sys.stderr,
                        flush=True,
                    )

    def _run(self, result: Run) -> Run:
        opts = self.opts
        scenario, target, repeat = result.scenario, result.target, result.repeat
        work = self.root / f"{scenario}-{target}-{repeat}"
        work.mkdir()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        api_key = "tdk_bench_" + secrets.token_urlsafe(16)
        result.idle_wait_s = round(wait_idle(opts.wait_idle), 1)
        server, log = self._start_server(target, work, port, api_key, result.schema)
        clients: list[subprocess.Popen[bytes]] = []
        configs: list[dict[str, Any]] = []
        analyzer = Analyzer(opts.postgres_url, result.schema, opts.analyze_every)
        try:
            self._wait_healthy(server, url, log)
            if target in TIDINGS_TARGETS:
                # Paused: bench/deliver.py measures delivery.
                paused_destinations(url, api_key, DESTINATIONS, ["bench.*"])
                analyzer.start()
            processes, tasks = opts.clients[scenario]
            configs = []
            for p in range(processes):
                share = tasks // processes + (1 if p < tasks % processes else 0)
                configs.append(
                    {
                        "url": url,
                        "api_key": api_key,
                        "mode": scenario,
                        "tasks": share,
                        "batch_size": opts.batch_size,
                        "payload_bytes": opts.payload_bytes,
                        "warmup": opts.warmup,
                        "duration": opts.duration,
                        "request_timeout": opts.request_timeout,
                        "key_prefix": f"r{repeat}p{p}",
                        "expect_deliveries": DESTINATIONS,
                        "collect_ids": target in TIDINGS_TARGETS,
                        "ids_file": str(work / f"ids-{p}.txt"),
                        "result_file": str(work / f"client-{p}.json"),
                    }
                )
            for p, cfg in enumerate(configs):
                clients.append(
                    self._spawn(
                        [sys.executable, __file__, "_client", json.dumps(cfg)],
                        work / f"client-{p}.log",
                        cwd=work,
                        stdout=subprocess.PIPE,
                        stdin=subprocess.PIPE,
                        start_new_session=True,
                    )
                )
            deadline = time.monotonic() + 30
            for p, proc in enumerate(clients):
                line = read_line(proc, deadline, f"client {p}")
                if line != "ready":
                    raise BenchError(f"client {p} said {line!r}")
            start = time.monotonic() + 0.2
            for proc in clients:
                assert proc.stdin is not None
                proc.stdin.write(f"go {start}\n".encode())
                proc.stdin.close()
            w_start = start + opts.warmup
            w_end = w_start + opts.duration
            time.sleep(max(0.0, w_start - time.monotonic()))
            ours = {os.getpid(), server.pid, *(c.pid for c in clients)}
            loop0, other0 = thread_cpu(server.pid)
            busy0, total0 = machine_cpu()
            procs0 = processes_cpu(ours)
            time.sleep(max(0.0, w_end - time.monotonic()))
            loop1, other1 = thread_cpu(server.pid)
            busy1, total1 = machine_cpu()
            procs1 = processes_cpu(ours)
            ncpu = os.cpu_count() or 1
            result.cpu_loop_pct = 100 * (loop1 - loop0) / opts.duration
            result.cpu_other_pct = 100 * (other1 - other0) / opts.duration
            result.cpu_machine_pct = 100 * ncpu * (busy1 - busy0) / max(1, total1 - total0)
            user, kernel, top, database = foreign_cpu(
                procs0, procs1, db=opts.database == "postgres"
            )
            result.cpu_foreign_pct = 100 * user / opts.duration
            result.cpu_kernel_pct = 100 * kernel / opts.duration
            result.cpu_db_pct = 100 * database / opts.duration
            result.foreign_top = top
            end_by = time.monotonic() + opts.request_timeout + 30
            for p, proc in enumerate(clients):
                try:
                    rc = proc.wait(max(0.1, end_by - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise BenchError(f"client {p} did not finish in time") from None
                if rc != 0:
                    raise BenchError(
                        f"client {p} failed ({rc}):\n{tail_of(work / f'client-{p}.log')}"
                    )
            latencies: list[float] = []
            client_cpu = 0.0
            for cfg in configs:
                figures = json.loads(Path(cfg["result_file"]).read_text())
                result.window_events += figures["window_events"]
                result.acked_events += figures["acked_events"]
                result.requests_per_s += figures["window_requests"] / opts.duration
                for k, v in figures["statuses"].items():
                    result.statuses[k] = result.statuses.get(k, 0) + v
                for k, v in figures["errors"].items():
                    result.errors[k] = result.errors.get(k, 0) + v
                if figures["bad_fanout"]:
                    result.errors["bad_fanout"] = (
                        result.errors.get("bad_fanout", 0) + figures["bad_fanout"]
                    )
                latencies.extend(figures["latencies_ms"])
                client_cpu += figures["cpu_s"]
            latencies.sort()
            result.p50_ms = percentile(latencies, 0.50)
            result.p99_ms = percentile(latencies, 0.99)
            result.cpu_clients_pct = 100 * client_cpu / opts.duration
            result.events_per_s = result.window_events / opts.duration
            server_s = (loop1 - loop0) + (other1 - other0)
            result.server_us_per_event = 1e6 * server_s / max(1, result.window_events)
        finally:
            analyzer.stop()
            result.analyze_runs = analyzer.runs
            result.server_stop = stop_process(server, opts.stop_timeout)
            for proc in clients:
                stop_process(proc, 5)
        if target in TIDINGS_TARGETS:
            self._verify(result, work, [Path(c["ids_file"]) for c in configs])
        return result

    def _stored_sqlite(self, work: Path) -> tuple[int, int, set[str], int]:
        """(events, deliveries, event ids, events without exactly DESTINATIONS deliveries)
        of the SQLite file, read with the stdlib, read-only."""
        conn = sqlite3.connect(f"file:{work / 'bench.db'}?mode=ro", uri=True, timeout=10)
        try:
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            deliveries = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
            stored_ids = {row[0] for row in conn.execute("SELECT id FROM events")}
            lopsided = conn.execute(
                "SELECT count(*) FROM events e WHERE (SELECT count(*) FROM deliveries d "
                "WHERE d.event_seq = e.seq) != ?",
                (DESTINATIONS,),
            ).fetchone()[0]
        finally:
            conn.close()
        return events, deliveries, stored_ids, lopsided

    def _stored_postgres(self, schema: str) -> tuple[int, int, set[str], int]:
        """The same figures from the run's PostgreSQL schema, with asyncpg."""

        async def read(conn: Any) -> tuple[int, int, set[str], int]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                events = await conn.fetchval("SELECT count(*) FROM events")
                deliveries = await conn.fetchval("SELECT count(*) FROM deliveries")
                stored_ids = {row[0] for row in await conn.fetch("SELECT id FROM events")}
                lopsided = await conn.fetchval(
                    "SELECT count(*) FROM events e LEFT JOIN (SELECT event_seq, count(*) AS n "
                    "FROM deliveries GROUP BY event_seq) d ON d.event_seq = e.seq "
                    "WHERE coalesce(d.n, 0) != $1",
                    DESTINATIONS,
                )
            return int(events), int(deliveries), stored_ids, int(lopsided)

        found: tuple[int, int, set[str], int] = pg_call(self.opts.postgres_url, schema, read)
        return found

    def _verify(self, result: Run, work: Path, id_files: list[Path]) -> None:
        """Every 202 durable: the store holds exactly the acknowledged events, each with
        its two deliveries. Read after the server stopped."""
        acked: list[str] = []
        for path in id_files:
            text = path.read_text()
            if text:
                acked.extend(text.split("\n"))
        if result.database == "postgres":
            events, deliveries, stored_ids, lopsided = self._stored_postgres(result.schema)
            where = f"PostgreSQL schema {result.schema} kept"
        else:
            events, deliveries, stored_ids, lopsided = self._stored_sqlite(work)
            where = f"database kept at {work / 'bench.db'}"
        result.stored_events, result.stored_deliveries = events, deliveries
        problems = []
        if len(acked) != result.acked_events:
            problems.append(f"{len(acked)} ids collected for {result.acked_events} 202 events")
        if len(set(acked)) != len(acked):
            problems.append(f"{len(acked) - len(set(acked))} ids acknowledged twice")
        missing = set(acked) - stored_ids
        if missing:
            problems.append(
                f"{len(missing)} acknowledged events are NOT in the store, e.g. {min(missing)}"
            )
        if events != result.acked_events:
            unknown = sum(result.errors.values()) + sum(
                v for k, v in result.statuses.items() if k != "202"
            )
            problems.append(
                f"store holds {events} events but {result.acked_events} were acknowledged "
                f"with 202 ({unknown} requests had another outcome)"
            )
        if deliveries != DESTINATIONS * events or lopsided:
            problems.append(
                f"store holds {deliveries} deliveries for {events} events "
                f"(expected {DESTINATIONS * events}; {lopsided} events without exactly "
                f"{DESTINATIONS})"
            )
        result.verified = not problems
        if problems:
            raise VerificationError(
                f"{result.scenario}/{result.target} run {result.repeat + 1}: "
                + "; ".join(problems)
                + f" ({where})"
            )


# =============================================================== reporting
def describe(run: Run, repeats: int) -> str:
    line = (
        f"{run.scenario:6} {run.target:7} run {run.repeat + 1}/{repeats}: "
        f"{run.events_per_s:>9,.0f} events/s ({run.requests_per_s:,.0f} req/s) "
        f"p50 {run.p50_ms:.1f} ms p99 {run.p99_ms:.1f} ms "
        f"| server {run.server_us_per_event:.0f} us/event | cpu loop {run.cpu_loop_pct:.0f}% "
        f"other {run.cpu_other_pct:.0f}% "
        + (f"db {run.cpu_db_pct:.0f}% " if run.database == "postgres" else "")
        + f"clients {run.cpu_clients_pct:.0f}% "
        f"kthreads {run.cpu_kernel_pct:.0f}% machine {run.cpu_machine_pct:.0f}%"
    )
    if run.cpu_foreign_pct >= 5:
        line += f" | NOISE: other processes {run.cpu_foreign_pct:.0f}% ({run.foreign_top})"
    if run.analyze_runs:
        line += f" | {run.analyze_runs} x ANALYZE"
    if run.verified:
        line += (
            f" | verified: {run.acked_events:,} x 202 = {run.stored_events:,} events, "
            f"{run.stored_deliveries:,} deliveries"
        )
    others = {k: v for k, v in run.statuses.items() if k != "202"}
    if others or run.errors:
        line += f" | NOT 202: {others} errors: {run.errors}"
    if run.server_stop != "sigterm":
        line += f" | server stop: {run.server_stop}"
    return line


def medians(runs: list[Run], scenarios: list[str], with_raw: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scenario in scenarios:
        for target in ("tidings", "raw", "base"):
            mine = [r for r in runs if r.scenario == scenario and r.target == target]
            if not mine:
                continue
            name = scenario if target == "tidings" else f"{scenario}_{target}"
            out[f"{name}_events_per_s"] = round(statistics.median(r.events_per_s for r in mine))
            out[f"{name}_p50_ms"] = round(statistics.median(r.p50_ms for r in mine), 2)
            out[f"{name}_p99_ms"] = round(statistics.median(r.p99_ms for r in mine), 2)
            out[f"{name}_server_us_per_event"] = round(
                statistics.median(r.server_us_per_event for r in mine), 1
            )
        if with_raw and out.get(f"{scenario}_raw_events_per_s"):
            out[f"{scenario}_ratio"] = round(
                out[f"{scenario}_events_per_s"] / out[f"{scenario}_raw_events_per_s"], 3
            )
        if out.get(f"{scenario}_base_events_per_s"):
            out[f"{scenario}_vs_base"] = round(
                out[f"{scenario}_events_per_s"] / out[f"{scenario}_base_events_per_s"], 2
            )
    return out


PACKAGES = ("aiohttp", "uvloop", "msgspec", "tidings", "asyncpg")


def versions(
    postgres_url: str | None = None, packages: tuple[str, ...] = PACKAGES
) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in packages:
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            found[name] = version(name)
    found["sqlite"] = sqlite3.sqlite_version
    if postgres_url:
        with contextlib.suppress(Exception):
            found["postgres"] = postgres_version(postgres_url)
    with contextlib.suppress(Exception):
        found["git"] = subprocess.run(
            ["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    return found


def write_results(
    name: str, document: dict[str, Any], summary: dict[str, Any], args: argparse.Namespace
) -> None:
    """Every figure to bench/results/<name>-<time>.json (--save) and/or --output; the
    medians as the last line of standard output."""
    outputs = []
    if args.save:
        RESULTS.mkdir(exist_ok=True)
        outputs.append(RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    if args.output:
        outputs.append(args.output)
    for path in outputs:
        path.write_text(json.dumps(document, indent=2) + "\n")
        print(f"# wrote {path}")
    print(json.dumps(summary), flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/ingest.py",
        description=(
            "Ingest benchmark for `tidings serve` (SQLite: WAL, synchronous=FULL; or "
            "PostgreSQL): events/s acknowledged with 202 for single-event and batch POSTs, "
            "against the raw ceiling of the same client on a trivial aiohttp+uvloop server. "
            "Every run checks that the store holds exactly the acknowledged events."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    database_options(
        p,
        "sqlite: a new file per run; postgres: a new schema per run, dropped after it",
        analyze=True,
    )
    p.add_argument(
        "--baseline",
        type=Path,
        metavar="SRC",
        help="also run target `base`: the same server from the src/ folder of another "
        "checkout (e.g. a `git worktree` of main), interleaved, to measure before/after",
    )
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p.add_argument("--repeats", type=int, default=3, help="runs per scenario and target")
    p.add_argument("--scenarios", default="single,batch", help="comma-separated: single, batch")
    p.add_argument("--no-raw", action="store_true", help="skip the raw-ceiling runs")
    p.add_argument("--single-clients", type=int, default=32, help="concurrent single clients")
    p.add_argument("--single-procs", type=int, default=2, help="processes they run in")
    p.add_argument("--batch-clients", type=int, default=4, help="concurrent batch clients")
    p.add_argument("--batch-procs", type=int, default=1, help="processes they run in")
    p.add_argument("--batch-size", type=int, default=100, help="events per batch request")
    p.add_argument("--payload-bytes", type=int, default=1024, help="size of each payload")
    p.add_argument("--request-timeout", type=float, default=30.0, help="client timeout (s)")
    p.add_argument("--stop-timeout", type=float, default=20.0, help="SIGTERM grace (s)")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=30.0,
        help="before each run, wait up to this many seconds for the machine to be idle",
    )
    p.add_argument(
        "--save", action="store_true", help="write bench/results/ingest-<timestamp>.json"
    )
    p.add_argument("--output", type=Path, help="write the results JSON to this path")
    p.add_argument(
        "--keep-tmp", action="store_true", help="keep databases (files, schemas) and logs"
    )
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in args.scenarios:
        if s not in TARGETS:
            p.error(f"unknown scenario {s!r}")
    if args.duration <= 0 or args.warmup < 0 or args.repeats < 1 or args.batch_size < 1:
        p.error("--duration > 0, --warmup >= 0, --repeats >= 1 and --batch-size >= 1")
    if not 1 <= args.batch_size <= 1000:
        p.error("--batch-size must be 1..1000 (the API's limit)")
    for kind in ("single", "batch"):
        procs, clients = getattr(args, f"{kind}_procs"), getattr(args, f"{kind}_clients")
        if not 1 <= procs <= clients:
            p.error(f"--{kind}-procs must be between 1 and --{kind}-clients")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        import tidings  # noqa: F401
    except ImportError:
        print(f"{sys.executable} cannot import tidings: run .venv/bin/python", file=sys.stderr)
        return 1
    if args.database == "postgres":
        try:
            version = postgres_version(args.postgres_url)
        except BenchError as exc:
            print(exc, file=sys.stderr)
            return 1
        where = f"PostgreSQL {version} at {args.postgres_url}, a new schema per run"
        if args.analyze_every > 0:
            where += f", ANALYZEd every {args.analyze_every:g} s"
    else:
        where = "SQLite, a new file per run"
    opts = Options(
        database=args.database,
        postgres_url=args.postgres_url,
        keep=args.keep_tmp,
        analyze_every=args.analyze_every,
        baseline=args.baseline,
        duration=args.duration,
        warmup=args.warmup,
        batch_size=args.batch_size,
        payload_bytes=args.payload_bytes,
        request_timeout=args.request_timeout,
        stop_timeout=args.stop_timeout,
        wait_idle=args.wait_idle,
        clients={
            "single": (args.single_procs, args.single_clients),
            "batch": (args.batch_procs, args.batch_clients),
        },
    )
    targets = ["tidings"] if args.no_raw else ["raw", "tidings"]
    if args.baseline is not None:
        targets.insert(targets.index("tidings"), "base")
    print(
        f"# tidings ingest bench: {os.cpu_count()} CPUs, {args.duration:g} s window after "
        f"{args.warmup:g} s warm-up, {args.repeats} repeats; single: {args.single_clients} "
        f"clients in {args.single_procs} procs; batch: {args.batch_clients} clients x "
        f"{args.batch_size} events in {args.batch_procs} procs; payload {args.payload_bytes} B; "
        f"{DESTINATIONS} destinations; tidings serve on {where}",
        flush=True,
    )
    runs: list[Run] = []
    root = Path(tempfile.mkdtemp(prefix="tidings-bench-"))
    runner = Runner(opts, root)

    def steps() -> int:
        for repeat in range(args.repeats):
            for scenario in args.scenarios:
                for target in targets:
                    run = runner.run(scenario, target, repeat)
                    runs.append(run)
                    print(describe(run, args.repeats), flush=True)
        return 0

    status = run_steps(steps, runner, root, args.keep_tmp, "DURABILITY CHECK FAILED")
    if status:
        return status
    summary = medians(runs, args.scenarios, not args.no_raw)
    summary["database"] = args.database
    if args.database == "postgres":
        summary["analyze_every_s"] = args.analyze_every
    print(f"\n# medians (tidings serve on {args.database})")
    for scenario in args.scenarios:
        figure = summary[f"{scenario}_events_per_s"]
        line = f"{scenario:6} tidings {figure:>9,} events/s"
        if summary.get(f"{scenario}_base_events_per_s"):
            base = summary[f"{scenario}_base_events_per_s"]
            line += f" | base {base:>9,} events/s (x{summary[f'{scenario}_vs_base']:.2f})"
        if not args.no_raw:
            raw = summary[f"{scenario}_raw_events_per_s"]
            line += f" | raw ceiling {raw:>9,} events/s | ratio {summary[f'{scenario}_ratio']:.2f}"
        verdict = "meets" if figure >= TARGETS[scenario] else "BELOW"
        line += f" | {verdict} target {TARGETS[scenario]:,.0f}"
        print(line)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(args.postgres_url if args.database == "postgres" else None),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "medians": summary,
        "runs": [asdict(r) for r in runs],
    }
    write_results("ingest", document, summary, args)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        sys.exit(client_main(sys.argv[2]))
    if len(sys.argv) > 1 and sys.argv[1] == "_raw-server":
        sys.exit(raw_server_main(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
