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
same for both kinds, is left out, so the ratio is the strictest one).

`--http` measures what a client sees instead: a real `tidings serve` subprocess on a fresh
SQLite file (or a fresh PostgreSQL schema with `--database postgres`), the same two
(paused) destinations, and `POST /v1/events/batch` requests of the same batches, bodies
encoded before the clock starts, sent one at a time over one keep-alive connection: the
median milliseconds per request of each kind and their ratio. This is the time the issue's
"today's batch ingest" names (bench/ingest.py's batch scenario).

    .venv/bin/python bench/inbox_ingest.py --http --database sqlite

With `--listening`, one WebSocket stays open on the server during the run, for
`user-0`, a user the batches name (about 1.6 messages a batch), and a thread reads its
frames: a server works out offsets, and frames messages, only for the users a push can
reach (a socket of the user on it; with a Redis relay, offsets for every user, frames for
those some node listens for), so this measures a node with sockets open. `--redis-url`
runs the server with the Redis relay: it asks Redis who listens and publishes after the
answer, so that work lands in the next batch's time (compare the sum of both kinds'
times with a run without).

`--filed-src DIR` compares with the day the issue was filed instead: the issue's aim is
"within 2x of today's batch ingest time", and that today was the code before the inbox
work (commit ed3350d^, which stored `recipients` and did nothing with them). DIR holds
that code's `src`; each of `--rounds` rounds runs a server of it (batches without
recipients only) and one of this checkout (both kinds), one after the other, and the
result is this checkout's batch with recipients against the filed code's batch:

    mkdir -p /tmp/filed && git archive ed3350d^ src | tar -x -C /tmp/filed
    .venv/bin/python bench/inbox_ingest.py --http --database postgres --filed-src /tmp/filed/src

The last line of standard output is a JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from tidings.model import EventIn, WebhookSpec
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
            spec = WebhookSpec(url="https://example.com/h", topics=["bench.*"], name=name)
            await store.create_destination(spec, "whsec_bench")
        rng = random.Random(7)
        tail = b"x" * args.pad  # ~1 KB events by default, as bench/ingest.py sends
        times: dict[int, list[float]] = {0: [], args.recipients: []}
        cpu: dict[int, list[float]] = {0: [], args.recipients: []}
        for _ in range(args.warmup):
            await store.append_events(batch(args.size, args.recipients, args.users, rng, tail))
        for _ in range(args.batches):
            for recipients in (0, args.recipients):
                events = batch(args.size, recipients, args.users, rng, tail)
                t0, c0 = time.perf_counter(), time.process_time()
                await store.append_events(events)
                times[recipients].append((time.perf_counter() - t0) * 1000)
                cpu[recipients].append((time.process_time() - c0) * 1000)
        out = {**summary(times, args), **cpu_summary(cpu, args)}

        samples = []
        for user, after, kind in read_plan(args, rng):
            t0 = time.perf_counter()
            await store.read_inbox(user, after, 100)
            samples.append((kind, (time.perf_counter() - t0) * 1e6))
        return {**out, **read_summary(samples)}
    finally:
        await store.close()


def summary(times: dict[int, list[float]], args: argparse.Namespace) -> dict[str, float]:
    """Medians of every batch of each kind, and of the last 5 with recipients (the inbox
    at its largest: a cost that grows with the table shows there)."""
    without = statistics.median(times[0])
    with_ = statistics.median(times[args.recipients])
    return {"without_ms": round(without, 2), "with_ms": round(with_, 2),
            "ratio": round(with_ / without, 2),
            "with_last5_ms": round(statistics.median(times[args.recipients][-5:]), 2),
            "messages": (args.warmup + args.batches) * args.size * args.recipients}  # fmt: skip


def cpu_summary(cpu: dict[int, list[float]], args: argparse.Namespace) -> dict[str, float]:
    """Mean CPU milliseconds of a batch of each kind (every thread of the process that
    runs the store, or of the server; a mean, as /proc counts in 10 ms ticks), and their
    ratio: on a machine shared with other work the CPU a batch takes moves much less
    than its wall time."""
    without = statistics.mean(cpu[0])
    with_ = statistics.mean(cpu[args.recipients])
    return {"without_cpu_ms": round(without, 2), "with_cpu_ms": round(with_, 2),
            "cpu_ratio": round(with_ / without, 2)}  # fmt: skip


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_plan(args: argparse.Namespace, rng: random.Random) -> list[tuple[str, int, int]]:
    """`--reads` inbox reads of random users at the end (the inbox at its largest): each
    user once from the start (after=0, a page of 100) and once caught up (after = about the
    user's top, the common case of a reconnect): (user, after, 0 or 1)."""
    if not args.recipients:
        return []
    per_user = (args.warmup + args.batches) * args.size * args.recipients // args.users
    plan = []
    for _ in range(args.reads):
        user = f"user-{rng.randrange(args.users)}"
        plan += [(user, 0, 0), (user, max(per_user - 3, 0), 1)]
    return plan


def read_summary(samples: list[tuple[int, float]]) -> dict[str, float]:
    """Median microseconds of each kind of read."""
    if not samples:
        return {}
    return {
        name: round(statistics.median(us for k, us in samples if k == kind))
        for kind, name in ((0, "read_from_start_us"), (1, "read_caught_up_us"))
    }


def batch_body(events: list[EventIn]) -> bytes:
    return msgspec.json.encode(
        {
            "events": [
                {"topic": e.topic, "key": e.key, "payload": e.payload, "recipients": e.recipients}
                for e in events
            ]
        }
    )


def run_http(
    database_url: str, args: argparse.Namespace, work: Path, src: str | None = None
) -> dict[str, float]:
    """The same alternation against a real `tidings serve`, through POST /v1/events/batch;
    with `src`, a server of the code in that directory, sent batches without recipients
    only (that code may have no inbox to read)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from ingest import free_port, http_json, stop_process  # bench/ingest.py's helpers

    port, key = free_port(), "tdk_bench_" + secrets.token_urlsafe(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(
        TIDINGS_DATABASE_URL=database_url,
        TIDINGS_API_KEY=key,
        TIDINGS_PORT=str(port),
        TIDINGS_LOG_LEVEL="warning",
    )
    if args.redis_url:
        env["TIDINGS_REDIS_URL"] = args.redis_url
    if src is not None:
        env["PYTHONPATH"] = src
    kinds = (0,) if src is not None else (0, args.recipients)
    with open(work / "server.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "tidings.cli", "serve"], cwd=work, env=env,
            stdout=log, stderr=log,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http_json("GET", base + "/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit((work / "server.log").read_text()[-2000:])
            time.sleep(0.05)
        for name in ("a", "b"):  # paused: deliveries are written, nothing is sent
            body = {"name": name, "kind": "webhook", "url": "https://example.com/h",
                    "topics": ["bench.*"]}  # fmt: skip
            status, answer = http_json("POST", base + "/v1/destinations", body, key)
            assert status == 201, answer
            url = f"{base}/v1/destinations/{answer['id']}"
            status, answer = http_json("PATCH", url, {"state": "paused"}, key)
            assert status == 200, answer
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        if args.listening:
            status, answer = http_json("POST", base + "/v1/users/user-0/token", {}, key)
            assert status == 200, answer
            listener = Listener(port, "user-0", answer["token"])

        def post(body: bytes) -> tuple[float, float]:
            t0, c0 = time.perf_counter(), process_cpu_s(server.pid)
            conn.request("POST", "/v1/events/batch", body, headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 202:
                raise SystemExit(f"{response.status}: {answer[:300]!r}")
            return (time.perf_counter() - t0) * 1000, (process_cpu_s(server.pid) - c0) * 1000

        rng = random.Random(7)
        tail = b"x" * args.pad
        times: dict[int, list[float]] = {0: [], args.recipients: []}
        cpu: dict[int, list[float]] = {0: [], args.recipients: []}
        for _ in range(args.warmup):
            post(batch_body(batch(args.size, kinds[-1], args.users, rng, tail)))
        for _ in range(args.batches):
            for recipients in kinds:
                body = batch_body(batch(args.size, recipients, args.users, rng, tail))
                wall, used = post(body)
                times[recipients].append(wall)
                cpu[recipients].append(used)
        if src is not None:
            conn.close()
            return {"without_ms": round(statistics.median(times[0]), 2)}

        samples = []
        for user, after, kind in read_plan(args, rng):
            t0 = time.perf_counter()
            conn.request("GET", f"/v1/users/{user}/inbox?after={after}&limit=100", None, headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                raise SystemExit(f"{response.status}: {answer[:300]!r}")
            samples.append((kind, (time.perf_counter() - t0) * 1e6))
        conn.close()
        if args.listening:
            listener.close()
            if not listener.frames:
                raise SystemExit("--listening: the socket got no message")
    finally:
        stop_process(server, 20)
    return {**summary(times, args), **cpu_summary(cpu, args), **read_summary(samples)}


class Listener:
    """One WebSocket open on the server (`--listening`), its frames read by a thread."""

    def __init__(self, port: int, user: str, token: str) -> None:
        from websockets.sync.client import connect

        self.socket = connect(f"ws://127.0.0.1:{port}/v1/ws?user_id={user}&token={token}")
        self.socket.recv(timeout=10)  # the welcome frame: the socket is in the hub
        self.frames = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for _ in self.socket:
                self.frames += 1
        except ConnectionClosed:
            pass

    def close(self) -> None:
        self.socket.close()
        self._reader.join(timeout=10)


def filed_src(parser: argparse.ArgumentParser, given: str) -> str:
    """--filed-src made absolute (the server runs in a temporary directory, where a
    relative PYTHONPATH would miss and quietly import this checkout instead), and
    checked to hold a tidings package."""
    src = Path(given).resolve()
    if not (src / "tidings" / "__init__.py").is_file():
        parser.error(f"--filed-src: no tidings package in {src}")
    return str(src)


async def against_filed(args: argparse.Namespace) -> dict[str, Any]:
    """`--filed-src`: rounds of the filed code's batches and this checkout's, medians."""
    databases = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}
    out: dict[str, Any] = {}
    for database in databases[args.database]:
        rounds: dict[str, list[float]] = {"filed_without_ms": [], "without_ms": [], "with_ms": []}
        for n in range(args.rounds):
            # each code first in every other round (what the round before left in the
            # database, a checkpoint or autovacuum, lands on both alike)
            for src in (args.filed_src, None) if n % 2 == 0 else (None, args.filed_src):
                schema = f"bench_{secrets.token_hex(4)}"
                try:
                    with tempfile.TemporaryDirectory() as tmp:
                        url = (
                            f"sqlite:///{Path(tmp) / 'b.db'}"
                            if database == "sqlite"
                            else f"{args.postgres_url}?schema={schema}"
                        )
                        got = run_http(url, args, Path(tmp), src)
                finally:
                    if database == "postgres":
                        await drop_schema(args.postgres_url, schema)
                if src is not None:
                    rounds["filed_without_ms"].append(got["without_ms"])
                else:
                    rounds["without_ms"].append(got["without_ms"])
                    rounds["with_ms"].append(got["with_ms"])
            print(database, "round", n + 1, {k: v[-1] for k, v in rounds.items()}, flush=True)
        medians = {k: round(statistics.median(v), 2) for k, v in rounds.items()}
        out[database] = {
            **medians,
            "ratio_vs_filed": round(medians["with_ms"] / medians["filed_without_ms"], 2),
            "ratio_vs_today": round(medians["with_ms"] / medians["without_ms"], 2),
            "rounds": rounds,
        }
    return {"batch_size": args.size, "recipients": args.recipients, "against_filed": out}


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
    parser.add_argument("--reads", type=int, default=200, help="inbox reads at the end")
    parser.add_argument("--http", action="store_true", help="through a real `tidings serve`")
    parser.add_argument(
        "--listening", action="store_true", help="with --http: one WebSocket open meanwhile"
    )
    parser.add_argument(
        "--redis-url", help="with --http: the server relays live pushes through this Redis"
    )
    parser.add_argument(
        "--filed-src", help="with --http: against the code of the issue's day, in this src dir"
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --filed-src")
    args = parser.parse_args()
    if args.filed_src:
        if not args.http or args.listening or args.redis_url:
            parser.error("--filed-src goes with --http alone")
        args.filed_src = filed_src(parser, args.filed_src)
        print(json.dumps(await against_filed(args)))
        return
    out: dict[str, dict[str, float]] = {}
    if args.http:
        if args.database in ("sqlite", "both"):
            with tempfile.TemporaryDirectory() as tmp:
                db = f"sqlite:///{Path(tmp) / 'b.db'}"
                out["sqlite_http"] = run_http(db, args, Path(tmp))
            print("sqlite over HTTP", out["sqlite_http"], flush=True)
        if args.database in ("postgres", "both"):
            schema = f"bench_{secrets.token_hex(4)}"
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    db = f"{args.postgres_url}?schema={schema}"
                    out["postgres_http"] = run_http(db, args, Path(tmp))
            finally:
                await drop_schema(args.postgres_url, schema)
            print("postgres over HTTP", out["postgres_http"], flush=True)
        print(json.dumps({"batch_size": args.size, "recipients": args.recipients, **out}))
        return
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
