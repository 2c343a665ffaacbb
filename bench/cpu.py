"""CPU per event: what each process of a Tidings deployment spends on one event and on one
delivery, at a steady offered load, for the scaling model in docs/scale.md.

    .venv/bin/python bench/cpu.py                              # 500 and 1,000 events/s
    .venv/bin/python bench/cpu.py --rates 500 --seconds 20 --repeats 3
    .venv/bin/python bench/cpu.py --rates 500,500x10           # single events, then batches

Each run, on 127.0.0.1 (--database postgres, the default and the only database: the
bench reads PostgreSQL's own processes):
- a fresh database `tidings_cpu_<random>` on --postgres-url's server (dropped after the
  run, kept with --keep-tmp or when the run fails), so that the server's backends of the
  run are exactly those whose pg_stat_activity.datname is that database;
- a redis-server of the run's own on a free port (TIDINGS_REDIS_URL: cross-process
  wake-ups and rate limits), so its CPU is the run's alone;
- the receiver of bench/deliver.py (a separate process answering 204 at once and keeping
  each webhook-id's first arrival time), `--pin-receiver CPU` pins it to one core;
- `tidings api` and `--workers` `tidings worker` processes (each in its own session: a
  worker's sender processes count in its column), 4 webhook destinations (`fifo`,
  `--max-in-flight`, default 16, topics `bench.*`) to the receiver's /d0 ... /d3;
- a thread of the driver running ANALYZE on the run's tables every `--analyze-every` s
  (default 5), as autovacuum would on a production server (it is off on some, this
  machine's included, and a fresh table has no statistics: the planner then guesses);
- a publisher process posting each run's rate (`--rates R` or `RxB`: R events/s in
  requests of B events, else `--batch-size`) on an open-loop schedule for `--warmup` +
  `--seconds` + 1 s: single events to POST /v1/events or batches to
  POST /v1/events/batch, at most `--publish-concurrency` requests in flight.

The measured window is [go + warmup, go + warmup + seconds]. At both ends the driver reads
utime + stime (/proc/PID/stat) of every process of the run's sessions, and of every
PostgreSQL backend: a sampler thread reads pg_stat_activity every 0.25 s (from a
connection to the server's `postgres` database, so it is not one of the run's backends)
and the CPU of each backend of the run's database as it goes, so that a backend that
starts in the window counts from zero and one that ends counts up to its last sighting.
PostgreSQL's shared processes (WAL writer, checkpointer, background writer, autovacuum
launcher; those of pg_stat_activity with no database) are the `pg_shared` column: they
serve every database of the server, so on a shared machine other people's load is in it
too (an upper bound for the run's share).

Figures per component: CPU seconds in the window, percent of one core, microseconds per
event (events whose 202 arrived in the window) and per delivery (first arrivals at the
receiver in the window). `tidings` = api + workers + pg (backends) + redis: what the
service costs; `publisher` and `receiver` are the load and the far end, not Tidings.
Also each run's achieved rates (kept up: deliveries in the window >= 0.95 x 4 x events),
202 -> delivery latency (receiver's first arrival - the publisher's 202, both
time.monotonic(), one CLOCK_MONOTONIC for every process of the machine) p50 / p99, and
the machine's CPU (`others`: what the rest of the machine did meanwhile; on a 2-core
machine shared with other work, a run with others >= 20% of a core is marked NOISE).
And where it goes: the workers' engine share (the worker processes themselves, against
their sender processes); PostgreSQL transactions per event (pg_stat_database of the
run's database); WAL bytes per event, the run's own (pg_waldump over the window's LSNs,
records of the run's database OID, per relation; when the server's pg_wal is not
readable here, only the server-wide figure, an upper bound); 202 -> delivery split at
the attempt's start (attempts.at, recorded by the sender just before the POST).

A progress line on standard error every 2 s; the last line of standard output is a JSON
object with the medians per rate; --save also writes bench/results/cpu-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from deliver import (
    NOISE_PCT,
    Runner,
    Tidings,
    lane_key,
    post_open_loop,
    proc_stats,
)

from ingest import (
    CLK_TCK,
    DEFAULT_POSTGRES_URL,
    Analyzer,
    BenchError,
    event_body,
    machine_cpu,
    payload_tail,
    percentile,
    pg_call,
    postgres_version,
    read_line,
    tail_of,
    wait_idle,
    write_results,
)
from ingest import versions as ingest_versions

HERE = Path(__file__).resolve().parent
SAMPLE_EVERY_S = 0.25
KEPT_UP = 0.95
ROLES = ("api", "workers", "pg", "redis", "pg_shared", "receiver", "publisher")
TIDINGS_ROLES = ("api", "workers", "pg", "redis")


# =============================================================== publisher process
def publisher_main(config_json: str) -> int:
    """`cpu.py _publisher CONFIG`: from `go T`, post `rate` events/s for `seconds` in
    requests of `batch` events (1: POST /v1/events) on an open-loop schedule, at most
    `concurrency` requests in flight; write, per request, [first seq, events, due, sent,
    acked, status, ids] (time.monotonic() instants)."""
    cfg = json.loads(config_json)
    tail = payload_tail(cfg["payload_bytes"])
    batch, rate = cfg["batch"], cfg["rate"]
    n = int(rate * cfg["seconds"])
    bodies: list[bytes] = []
    for first in range(0, n, batch):
        seqs = range(first, min(n, first + batch))
        parts = [event_body(lane_key(s, cfg["keys"]).encode(), s, tail) for s in seqs]
        bodies.append(parts[0] if batch == 1 else b'{"events":[' + b",".join(parts) + b"]}")
    path = "/v1/events" if batch == 1 else "/v1/events/batch"
    records: list[list[Any]] = [
        [i * batch, min(batch, n - i * batch), 0.0, 0.0, 0.0, 0, []] for i in range(len(bodies))
    ]

    def answered(i: int, answer: Any) -> None:
        records[i][6] = [answer["id"]] if batch == 1 else answer["ids"]

    errors = post_open_loop(cfg, cfg["url"] + path, bodies, batch / rate, records, answered)
    Path(cfg["result_file"]).write_text(json.dumps({"records": records, "errors": errors}))
    return 0


# =============================================================== PostgreSQL's processes
def database_url(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def create_database(server_url: str) -> str:
    name = f"tidings_cpu_{secrets.token_hex(5)}"

    async def create(conn: Any) -> None:
        await conn.execute(f'CREATE DATABASE "{name}"')

    pg_call(server_url, None, create)
    return name


def drop_database(server_url: str, name: str) -> None:
    async def drop(conn: Any) -> None:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    pg_call(server_url, None, drop)


def counters(server_url: str, name: str) -> tuple[int, int, str]:
    """(commits + rollbacks of database `name`, the server's WAL position in bytes and as
    an LSN) now. pg_stat_database is flushed within about a second, so read it over a
    long window; the WAL position is the whole server's (other databases' writes too)."""

    async def ask(conn: Any) -> tuple[int, int, str]:
        row = await conn.fetchrow(
            "SELECT (SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = $1) AS xacts, pg_current_wal_lsn() - '0/0'::pg_lsn AS wal, "
            "pg_current_wal_lsn()::text AS lsn",
            name,
        )
        return int(row["xacts"] or 0), int(row["wal"]), str(row["lsn"])

    found: tuple[int, int, str] = pg_call(server_url, None, ask)
    return found


def wal_of_database(
    server_url: str, database: str, start: str, end: str
) -> tuple[int, dict[str, int]] | None:
    """The WAL bytes the run's database wrote between two LSNs, in all and per relation
    (indexes by name; `commit` for the commit records of its transactions), read with
    pg_waldump from the server's pg_wal: None unless this machine runs the server and
    may read its files. Records of other databases are left out by their database OID."""
    import re

    async def ask(conn: Any) -> tuple[str, int, dict[int, str]]:
        data = await conn.fetchval("SHOW data_directory")
        oid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = $1", database)
        return str(data), int(oid), {}

    async def names(conn: Any) -> dict[int, str]:
        rows = await conn.fetch(
            "SELECT pg_relation_filenode(oid) AS node, relname FROM pg_class "
            "WHERE pg_relation_filenode(oid) IS NOT NULL"
        )
        return {int(r["node"]): str(r["relname"]) for r in rows}

    try:
        data_dir, db_oid, _ = pg_call(server_url, None, ask)
        bindir = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        waldump = shutil.which("pg_waldump") or str(Path(bindir) / "pg_waldump")
        wal_dir = Path(data_dir) / "pg_wal"
        if not os.access(wal_dir, os.R_OK) or not Path(waldump).exists():
            return None
        node_names: dict[int, str] = pg_call(database_url(server_url, database), None, names)
    except (OSError, subprocess.SubprocessError, BenchError):
        return None
    mark = f"/{db_oid}/"
    sizes = re.compile(r"len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+)")
    rel = re.compile(r"rel \d+/" + str(db_oid) + r"/(\d+)")
    per: dict[str, int] = {}
    xids: set[str] = set()
    proc = subprocess.Popen(
        [waldump, "-p", str(wal_dir), "-s", start, "-e", end],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if mark in line:
            m, r = sizes.search(line), rel.search(line)
            if m is None or r is None:
                continue
            name = node_names.get(int(r.group(1)), "other")
            per[name] = per.get(name, 0) + int(m.group(1))
            xids.add(m.group(2))
        elif line.startswith("rmgr: Transaction"):
            m = sizes.search(line)
            if m is not None and m.group(2) in xids:
                per["commit"] = per.get("commit", 0) + int(m.group(1))
    proc.wait(60)
    return sum(per.values()), dict(sorted(per.items(), key=lambda kv: -kv[1]))


def pid_cpu(pid: int) -> float | None:
    """utime + stime of one process, in seconds; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class PgSampler:
    """The CPU of the run's backends and of the server's shared processes, sampled from
    a thread: pg_stat_activity every SAMPLE_EVERY_S, /proc/PID/stat of each pid seen."""

    def __init__(self, server_url: str, database: str) -> None:
        self.server_url, self.database = server_url, database
        self.lock = threading.Lock()
        self.base: dict[int, float] = {}  # pid -> CPU at the window's start (or 0)
        self.last: dict[int, float] = {}  # pid -> CPU at its latest sighting
        self.kind: dict[int, str] = {}  # pid -> "pg" (the run's) | "pg_shared"
        self.backend_type: dict[int, str] = {}  # pid -> pg_stat_activity.backend_type
        self.began_wall = 0.0
        self.measuring = False
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._first.wait(15):
            raise BenchError(f"cannot sample pg_stat_activity: {self.errors[-1:]}")

    def begin(self) -> None:
        """The window starts: every process seen so far counts from its CPU now."""
        with self.lock:
            self.began_wall = time.time()
            self.measuring = True
            for pid in list(self.last):
                cpu = pid_cpu(pid)
                if cpu is None:
                    del self.last[pid]
                    continue
                self.base[pid] = self.last[pid] = cpu

    def end(self) -> dict[str, float]:
        """The window ends: CPU seconds of `pg` and `pg_shared` since begin()."""
        with self.lock:
            for pid in self.last:
                cpu = pid_cpu(pid)
                if cpu is not None:
                    self.last[pid] = cpu
            self.measuring = False
            used = {"pg": 0.0, "pg_shared": 0.0}
            self.by_type: dict[str, float] = {}
            for pid, cpu in self.last.items():
                if pid in self.base:
                    used[self.kind[pid]] += cpu - self.base[pid]
                    name = f"{self.kind[pid]}:{self.backend_type[pid]}"
                    self.by_type[name] = self.by_type.get(name, 0.0) + cpu - self.base[pid]
            return used

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        import asyncpg

        async def loop() -> None:
            conn = await asyncpg.connect(self.server_url, timeout=10)
            try:
                while not self._stop.is_set():
                    rows = await conn.fetch(
                        "SELECT pid, datname, backend_type, "
                        "extract(epoch FROM backend_start)::float8 AS started "
                        "FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                    )
                    self._saw(rows)
                    self._first.set()
                    await asyncio.sleep(SAMPLE_EVERY_S)
            finally:
                await conn.close()

        try:
            asyncio.run(loop())
        except Exception as exc:
            self.errors.append(repr(exc))

    def _saw(self, rows: list[Any]) -> None:
        with self.lock:
            for row in rows:
                if row["datname"] == self.database:
                    kind = "pg"
                elif row["datname"] is None and row["backend_type"] != "client backend":
                    kind = "pg_shared"
                else:
                    continue
                pid = row["pid"]
                cpu = pid_cpu(pid)
                if cpu is None:
                    continue
                if pid not in self.last and self.measuring:
                    # New in the window: all of its CPU is the window's if it started in
                    # it; otherwise (seen late) from now on.
                    started_in = (row["started"] or 0.0) >= self.began_wall
                    self.base[pid] = 0.0 if started_in else cpu
                self.kind[pid] = kind
                self.backend_type[pid] = row["backend_type"]
                self.last[pid] = cpu


# =============================================================== one run
@dataclass
class CpuRun:
    rate: float
    repeat: int
    batch_size: int
    workers: int
    window_s: float = 0.0
    events: int = 0  # 202s in the window
    deliveries: int = 0  # first arrivals at the receiver in the window
    events_per_s: float = 0.0
    deliveries_per_s: float = 0.0
    kept_up: bool = False
    total_events: int = 0
    late_sends: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    publisher_errors: dict[str, int] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    cpu_pct: dict[str, float] = field(default_factory=dict)  # of one core
    us_per_event: dict[str, float] = field(default_factory=dict)
    us_per_delivery: dict[str, float] = field(default_factory=dict)
    workers_pct: list[float] = field(default_factory=list)
    # of the workers' CPU, the share of the worker processes themselves (claims, outcomes:
    # the engine's event loop); the rest is their sender processes (HTTP)
    workers_engine_share: float = 0.0
    ack_p50_ms: float = 0.0
    ack_p99_ms: float = 0.0
    ack_to_delivery_p50_ms: float = 0.0
    ack_to_delivery_p99_ms: float = 0.0
    early_deliveries: int = 0
    # where the time goes, p50 / p99 ms over the window's deliveries: 202 -> the attempt's
    # start (attempts.at: the worker sends; claim wake-up + claim + queue), and the
    # attempt's start -> first arrival at the receiver (the send itself)
    stages_ms: dict[str, list[float]] = field(default_factory=dict)
    fifo_violations: int = 0
    duplicates: int = 0
    idle_wait_s: float = 0.0
    noise: bool = False
    problems: list[str] = field(default_factory=list)
    database: str = ""
    pg_cpu_s_by_type: dict[str, float] = field(default_factory=dict)
    transactions_per_event: float = 0.0  # of the run's database, in the window
    wal_bytes_per_event: float = 0.0  # the server's WAL in the window: an upper bound
    # the run's database's own WAL (pg_waldump, records by database OID), when readable
    run_wal_bytes_per_event: float | None = None
    run_wal_bytes_per_event_by_relation: dict[str, int] = field(default_factory=dict)


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        # bench/deliver.py's Runner starts and stops the processes; it reads these
        args.database, args.preload, args.settle = "postgres", False, 0.5
        self.runner = Runner(args, root)

    def progress(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def run(self, rate: float, batch: int, repeat: int) -> CpuRun:
        args = self.args
        work = self.root / f"cpu-{rate:g}x{batch}-{repeat}"
        work.mkdir()
        run = CpuRun(rate, repeat, batch, args.workers)
        run.idle_wait_s = round(wait_idle(args.wait_idle), 1)
        runner = self.runner
        run.database = create_database(args.postgres_url)
        sampler = PgSampler(args.postgres_url, run.database)
        t = Tidings(work, database_url=database_url(args.postgres_url, run.database))
        redis = receiver = publisher = None
        analyzer: Analyzer | None = None
        finished = False
        try:
            redis, redis_url = runner.start_redis(work)
            receiver, receiver_url = runner.start_receiver(work)
            runner.start_tidings(t, {"TIDINGS_REDIS_URL": redis_url})
            analyzer = Analyzer(t.database_url, "public", args.analyze_every).start()
            watch = [("receiver", receiver, work / "receiver.log"), *t.watch]
            dests = runner.create_destinations(t.url, t.api_key, receiver_url)
            secret_of = {f"/d{i}": secret for i, (_, secret) in enumerate(dests)}
            sampler.start()
            cfg = {
                "url": t.url,
                "api_key": t.api_key,
                "rate": rate,
                "batch": batch,
                "seconds": args.warmup + args.seconds + 1.0,
                "keys": args.keys,
                "payload_bytes": args.payload_bytes,
                "concurrency": args.publish_concurrency,
                "result_file": str(work / "publisher.json"),
            }
            publisher = runner.spawn(
                [sys.executable, __file__, "_publisher", json.dumps(cfg)],
                work / "publisher.log",
                work,
                talks=True,
            )
            if read_line(publisher, time.monotonic() + 60, "publisher") != "ready":
                raise BenchError(f"publisher did not start:\n{tail_of(work / 'publisher.log')}")
            sessions = {
                "api": [t.api.pid] if t.api else [],
                "workers": [w.pid for w in t.workers],
                "redis": [redis.pid],
                "receiver": [receiver.pid],
                "publisher": [publisher.pid],
            }
            role_of = {sid: role for role, sids in sessions.items() for sid in sids}
            go = time.monotonic() + 0.2
            assert publisher.stdin is not None
            publisher.stdin.write(f"go {go}\n".encode())
            publisher.stdin.close()
            a, b = go + args.warmup, go + args.warmup + args.seconds
            self._sleep_until(a, rate, receiver_url, go)
            xact_a, wal_a, lsn_a = counters(args.postgres_url, run.database)
            sampler.begin()
            before, machine0, t_a = proc_stats(), machine_cpu(), time.monotonic()
            self._sleep_until(b, rate, receiver_url, go)
            after, machine1, t_b = proc_stats(), machine_cpu(), time.monotonic()
            used = sampler.end()
            xact_b, wal_b, lsn_b = counters(args.postgres_url, run.database)
            run.pg_cpu_s_by_type = {k: round(v, 3) for k, v in sampler.by_type.items()}
            run.window_s = round(t_b - t_a, 3)
            per_worker = dict.fromkeys(sessions["workers"], 0.0)
            engine = 0.0  # the worker processes themselves; the rest: their senders
            for role in sessions:
                used[role] = 0.0
            for pid, (_, sid, _, cpu) in after.items():
                role = role_of.get(sid)
                if role is None:
                    continue
                delta = cpu - (before[pid][3] if pid in before else 0.0)
                used[role] += delta
                if sid in per_worker:
                    per_worker[sid] += delta
                    engine += delta if pid == sid else 0.0
            busy = (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1])
            used_machine = busy * (os.cpu_count() or 1) * (t_b - t_a)
            used["others"] = max(0.0, used_machine - sum(used.values()))
            run.workers_pct = [round(100 * v / run.window_s, 1) for v in per_worker.values()]
            run.workers_engine_share = round(engine / max(1e-9, used["workers"]), 3)
            try:
                rc = publisher.wait(60)
            except subprocess.TimeoutExpired:
                raise BenchError("the publisher did not finish in time") from None
            if rc:
                raise BenchError(f"publisher failed ({rc}):\n{tail_of(work / 'publisher.log')}")
            result = json.loads((work / "publisher.json").read_text())
            self._account(run, used, result, t_a, t_b)
            run.transactions_per_event = round((xact_b - xact_a) / max(1, run.events), 2)
            run.wal_bytes_per_event = round((wal_b - wal_a) / max(1, run.events))
            mine = wal_of_database(args.postgres_url, run.database, lsn_a, lsn_b)
            if mine is not None:
                run.run_wal_bytes_per_event = round(mine[0] / max(1, run.events))
                run.run_wal_bytes_per_event_by_relation = {
                    k: round(v / max(1, run.events)) for k, v in mine[1].items()
                }
            runner.wait_delivered(receiver_url, run.total_events, go, f"rate {rate:g}", watch)
            seq_of, ack_of = self._acked(result)
            from deliver import Run as DeliverRun

            check = DeliverRun("throughput", "cpu", repeat)
            arrivals = runner.collect(check, receiver_url, seq_of, secret_of, run.total_events)
            run.problems.extend(check.problems)
            run.fifo_violations, run.duplicates = check.fifo_violations, check.duplicates
            self._latency(run, arrivals, ack_of, t_a, t_b)
            self._stages(run, t.database_url, dests, arrivals, ack_of, t_a, t_b)
            finished = True
        finally:
            sampler.stop()
            if analyzer is not None:
                analyzer.stop()
            runner.stop(publisher, 5)
            runner.stop_tidings(t, keep=True)
            runner.stop(receiver, 5)
            runner.stop(redis, 10)
            if args.keep_tmp or not finished or run.problems:
                print(f"# kept database {run.database}", file=sys.stderr)
            else:
                try:
                    drop_database(args.postgres_url, run.database)
                except Exception as exc:  # a leftover database is not worth a failed run
                    print(f"# could not drop database {run.database}: {exc}", file=sys.stderr)
        return run

    def _sleep_until(self, when: float, rate: float, receiver_url: str, go: float) -> None:
        """Sleep until `when`, with a progress line on stderr every 2 s."""
        from ingest import http_json

        while True:
            left = when - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(2.0, left))
            with contextlib.suppress(OSError, ValueError):
                _, stats = http_json("GET", receiver_url + "/stats", timeout=2)
                busy0, total0 = machine_cpu()
                time.sleep(0.05)
                busy1, total1 = machine_cpu()
                machine = 100 * (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)
                self.progress(
                    f"  rate {rate:g}/s t={time.monotonic() - go:5.1f}s: "
                    f"{stats['requests']:,} deliveries received, machine {machine:.0f}%"
                )

    def _account(
        self, run: CpuRun, used: dict[str, float], result: dict[str, Any], a: float, b: float
    ) -> None:
        records = result["records"]
        run.publisher_errors = result["errors"]
        for r in records:
            if r[5] != 202:
                run.statuses[str(r[5])] = run.statuses.get(str(r[5]), 0) + r[1]
        if run.statuses:
            run.problems.append(f"events not accepted: {run.statuses}")
        run.total_events = sum(len(r[6]) for r in records if r[5] == 202)
        run.late_sends = sum(1 for r in records if r[3] - r[2] > 0.005)
        run.events = sum(len(r[6]) for r in records if r[5] == 202 and a <= r[4] <= b)
        run.events_per_s = round(run.events / run.window_s, 1)
        used["tidings"] = sum(used[k] for k in TIDINGS_ROLES)
        run.cpu_s = {k: round(v, 3) for k, v in used.items()}
        run.cpu_pct = {k: round(100 * v / run.window_s, 1) for k, v in used.items()}
        run.us_per_event = {
            k: round(1e6 * v / max(1, run.events), 1) for k, v in used.items() if k != "others"
        }
        run.noise = run.cpu_pct["others"] >= NOISE_PCT

    @staticmethod
    def _acked(result: dict[str, Any]) -> tuple[dict[str, int], dict[str, float]]:
        seq_of: dict[str, int] = {}
        ack_of: dict[str, float] = {}
        for r in result["records"]:
            if r[5] != 202:
                continue
            for i, event_id in enumerate(r[6]):
                seq_of[event_id] = r[0] + i
                ack_of[event_id] = r[4]
        return seq_of, ack_of

    def _latency(
        self,
        run: CpuRun,
        arrivals: dict[str, list[list[Any]]],
        ack_of: dict[str, float],
        a: float,
        b: float,
    ) -> None:
        """Deliveries in the window, and 202 -> delivery of the events acked in it."""
        lags: list[float] = []
        for pairs in arrivals.values():
            for event_id, arrived in pairs:
                if a <= arrived <= b:
                    run.deliveries += 1
                acked = ack_of.get(event_id)
                if acked is None or not a <= acked <= b:
                    continue
                if arrived < acked:
                    run.early_deliveries += 1
                lags.append(max(0.0, arrived - acked) * 1000)
        lags.sort()
        run.deliveries_per_s = round(run.deliveries / run.window_s, 1)
        run.kept_up = run.deliveries >= KEPT_UP * self.args.destinations * run.events
        run.us_per_delivery = {
            k: round(1e6 * v / max(1, run.deliveries), 1)
            for k, v in run.cpu_s.items()
            if k != "others"
        }
        run.ack_to_delivery_p50_ms = round(percentile(lags, 0.5), 2)
        run.ack_to_delivery_p99_ms = round(percentile(lags, 0.99), 2)

    @staticmethod
    def _stages(
        run: CpuRun,
        url: str,
        dests: list[tuple[str, str]],
        arrivals: dict[str, list[list[Any]]],
        ack_of: dict[str, float],
        a: float,
        b: float,
    ) -> None:
        """Split 202 -> delivery at the worker's send: attempts.at is wall-clock
        microseconds, the publisher and receiver times are time.monotonic(); the offset
        between the two clocks is read here (both are the machine's, one reading apart)."""
        offset = time.time() - time.monotonic()

        async def first_attempts(conn: Any) -> list[Any]:
            return list(
                await conn.fetch(
                    "SELECT e.id, d.destination_id, min(a.at) AS at FROM attempts a "
                    "JOIN deliveries d ON d.seq = a.delivery_seq "
                    "JOIN events e ON e.seq = d.event_seq GROUP BY 1, 2"
                )
            )

        path_of = {dest_id: f"/d{i}" for i, (dest_id, _) in enumerate(dests)}
        sent_at = {
            (path_of.get(row["destination_id"], ""), row["id"]): row["at"] / 1e6 - offset
            for row in pg_call(url, None, first_attempts)
        }
        to_send: list[float] = []
        sending: list[float] = []
        for path, pairs in arrivals.items():
            for event_id, arrived in pairs:
                acked, sent = ack_of.get(event_id), sent_at.get((path, event_id))
                if acked is None or sent is None or not a <= acked <= b:
                    continue
                to_send.append(max(0.0, sent - acked) * 1000)
                sending.append(max(0.0, arrived - sent) * 1000)
        for name, values in (("ack_to_send", to_send), ("send_to_arrival", sending)):
            values.sort()
            run.stages_ms[name] = [
                round(percentile(values, 0.5), 2),
                round(percentile(values, 0.99), 2),
            ]


# =============================================================== reporting
def describe(run: CpuRun, repeats: int) -> str:
    cols = " ".join(f"{k} {run.us_per_event.get(k, 0):,.0f}" for k in (*ROLES, "tidings"))
    per_d = " ".join(f"{k} {run.us_per_delivery.get(k, 0):,.0f}" for k in ("workers", "pg"))
    wal = (
        f"{run.run_wal_bytes_per_event:,.0f} B/event"
        if run.run_wal_bytes_per_event is not None
        else f"<= {run.wal_bytes_per_event:,.0f} B/event (server-wide)"
    )
    return (
        f"rate {label(run.rate, run.batch_size):>8}/s run {run.repeat + 1}/{repeats}: "
        f"{run.events_per_s:,.0f} events/s "
        f"{run.deliveries_per_s:,.0f} deliveries/s in {run.window_s:.1f} s, "
        f"{run.transactions_per_event:.2f} transactions/event, WAL {wal}"
        f"{'' if run.kept_up else ' (BEHIND)'} | us/event {cols} | us/delivery {per_d} | "
        f"cpu% "
        + " ".join(f"{k} {v:.0f}" for k, v in run.cpu_pct.items())
        + f" (each worker {run.workers_pct}, engine share {run.workers_engine_share:.2f})"
        f" | 202->delivery p50 "
        f"{run.ack_to_delivery_p50_ms:.1f} p99 {run.ack_to_delivery_p99_ms:.1f} ms ("
        + ", ".join(f"{k} {v[0]:.1f}/{v[1]:.1f}" for k, v in run.stages_ms.items())
        + ")"
        + (" | NOISE" if run.noise else "")
        + (f" | PROBLEMS: {'; '.join(run.problems)}" if run.problems else "")
    )


def label(rate: float, batch: int) -> str:
    """`500` (single events) or `2000x50` (2,000 events/s in requests of 50)."""
    return f"{rate:g}" if batch == 1 else f"{rate:g}x{batch}"


def parse_rate(text: str, batch: int) -> tuple[float, int]:
    """`R` (requests of --batch-size events) or `RxB`: R events/s in requests of B."""
    rate, _, size = text.strip().partition("x")
    return float(rate), int(size) if size else batch


def medians(runs: list[CpuRun]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rate, batch in dict.fromkeys((r.rate, r.batch_size) for r in runs):
        mine = [r for r in runs if (r.rate, r.batch_size) == (rate, batch)]
        doc: dict[str, Any] = {
            "runs": len(mine),
            "kept_up": all(r.kept_up for r in mine),
            "events_per_s": statistics.median(r.events_per_s for r in mine),
            "deliveries_per_s": statistics.median(r.deliveries_per_s for r in mine),
            "ack_to_delivery_p99_ms": statistics.median(r.ack_to_delivery_p99_ms for r in mine),
            "transactions_per_event": statistics.median(r.transactions_per_event for r in mine),
            "wal_bytes_per_event_min": min(r.wal_bytes_per_event for r in mine),
            "run_wal_bytes_per_event": statistics.median(
                r.run_wal_bytes_per_event or 0.0 for r in mine
            ),
            "noisy_runs": sum(r.noise for r in mine),
            "workers_engine_share": statistics.median(r.workers_engine_share for r in mine),
        }
        for what in ("us_per_event", "us_per_delivery", "cpu_pct"):
            keys = dict.fromkeys(k for r in mine for k in getattr(r, what))
            doc[what] = {
                k: round(statistics.median(getattr(r, what).get(k, 0.0) for r in mine), 1)
                for k in keys
            }
        out[label(rate, batch)] = doc
    return out


def print_summary(summary: dict[str, Any]) -> None:
    print("\n# medians: CPU microseconds per event (per delivery) of each component")
    head = f"{'rate/s':>7} {'events/s':>9} " + " ".join(f"{k:>14}" for k in (*ROLES, "tidings"))
    print(head)
    for rate, doc in summary.items():
        cells = " ".join(
            f"{doc['us_per_event'].get(k, 0):>6,.0f} ({doc['us_per_delivery'].get(k, 0):>5,.0f})"
            for k in (*ROLES, "tidings")
        )
        print(f"{rate:>7} {doc['events_per_s']:>9,.0f} {cells}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/cpu.py",
        description="CPU per event and per delivery of tidings api, workers, PostgreSQL and "
        "Redis at a steady offered load (4 webhook destinations).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--database", choices=["postgres"], default="postgres")
    p.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="the server")
    p.add_argument(
        "--rates",
        default="500,1000",
        help="offered events/s, one run each; RxB: R events/s in requests of B events",
    )
    p.add_argument("--batch-size", type=int, default=1, help="events per request (1: single)")
    p.add_argument("--seconds", type=float, default=15.0, help="measured window")
    p.add_argument("--warmup", type=float, default=3.0, help="before the window")
    p.add_argument("--repeats", type=int, default=1, help="runs per rate (interleaved)")
    p.add_argument("--workers", type=int, default=2, help="`tidings worker` processes")
    p.add_argument("--sender-processes", type=int, default=None, help="per worker")
    p.add_argument("--destinations", type=int, default=4)
    p.add_argument("--max-in-flight", type=int, default=16, help="per destination")
    p.add_argument("--keys", type=int, default=1000, help="distinct event keys (fifo lanes)")
    p.add_argument("--payload-bytes", type=int, default=1024)
    p.add_argument("--publish-concurrency", type=int, default=64, help="requests in flight")
    p.add_argument(
        "--analyze-every",
        type=float,
        default=5.0,
        metavar="S",
        help="ANALYZE the run's tables every S s, as autovacuum would (0: never); its "
        "backend is one of the run's",
    )
    p.add_argument("--pin-receiver", type=int, default=None, metavar="CPU")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to deliver the rest")
    p.add_argument("--stall", type=float, default=30.0)
    p.add_argument("--stop-timeout", type=float, default=20.0)
    p.add_argument("--wait-idle", type=float, default=20.0)
    p.add_argument("--save", action="store_true")
    p.add_argument("--output", type=Path)
    p.add_argument("--keep-tmp", action="store_true")
    args = p.parse_args(argv)
    try:
        args.rates = [parse_rate(r, args.batch_size) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        p.error("--rates: comma-separated R or RxB")
    if not args.rates or min(r for r, _ in args.rates) <= 0:
        p.error("--rates must be > 0")
    if not all(1 <= b <= 1000 for _, b in args.rates):
        p.error("--rates: batches of 1..1000 events")
    if not 1 <= args.batch_size <= 1000 or args.workers < 1 or args.seconds <= 0:
        p.error("--batch-size 1..1000, --workers >= 1, --seconds > 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        server = postgres_version(args.postgres_url)
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(
        f"# tidings cpu bench: {os.cpu_count()} CPUs, PostgreSQL {server}; `tidings api` + "
        f"{args.workers} `tidings worker`, {args.destinations} webhook destinations, "
        f"runs (events/s x events/request): {', '.join(label(r, b) for r, b in args.rates)}, "
        f"window {args.seconds:g} s after {args.warmup:g} s",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix="tidings-cpu-"))
    bench = Bench(args, root)
    runs: list[CpuRun] = []
    status = 0
    try:
        for repeat in range(args.repeats):
            for rate, batch in args.rates:
                run = bench.run(rate, batch, repeat)
                runs.append(run)
                print(describe(run, args.repeats), flush=True)
                status = status or (2 if run.problems else 0)
    except BenchError as exc:
        print(f"\n!!! benchmark failed: {exc}\n", file=sys.stderr, flush=True)
        status = 1
    except KeyboardInterrupt:
        status = 130
    finally:
        bench.runner.kill_all()
        if args.keep_tmp or status:
            print(f"# kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if not runs:
        return status or 1
    summary = medians(runs)
    print_summary(summary)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": ingest_versions(args.postgres_url, ("aiohttp", "uvloop", "asyncpg")),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "medians": summary,
        "runs": [asdict(r) for r in runs],
    }
    write_results("cpu", document, summary, args)
    return status


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_publisher":
        sys.exit(publisher_main(sys.argv[2]))
    sys.exit(main(sys.argv[1:]))
