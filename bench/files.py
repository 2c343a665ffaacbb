"""File ingest benchmark: rows/s from a file dropped into the watched folder of a real
`tidings serve` into the store, and the server's peak memory while it reads the file.

    .venv/bin/python bench/files.py                            # 100k and 1M rows, 3 repeats
    .venv/bin/python bench/files.py --sizes 1000000 --repeats 1 --save
    .venv/bin/python bench/files.py --database postgres        # PostgreSQL on 127.0.0.1
    .venv/bin/python bench/files.py --variant bare             # bare ids + TIDINGS_WATCH_MESSAGE

What one run does
- writes the file once per size (outside the watched folder, before any server starts):
  variant `messages` (the default) is a WDS export, a `userId,alertMessage` header and
  one `user-<i>,Order <i> has been placed (...)` line per row, ~60 bytes; variant `bare`
  is one `user-<i>` per line, the message coming from TIDINGS_WATCH_MESSAGE; `--format
  jsonl` writes the same rows as `{"userId": ..., "alertMessage": ...}` objects. Every
  user id is distinct;
- starts a real `tidings serve` subprocess on a fresh database (as bench/ingest.py: a new
  SQLite file in a temporary directory, or with `--database postgres` a new schema
  `bench_<random>` of `--postgres-url`, dropped after the run unless it fails its checks
  or with --keep-tmp), with TIDINGS_WATCH_DIR (an empty folder of the run),
  TIDINGS_WATCH_INTERVAL_MS=100 and TIDINGS_LOG_LEVEL=warning; waits for /healthz and
  creates `--destinations` webhook destinations (default 1) subscribed to `file.*`, each
  paused at once, so every row also writes a delivery row, as in production, and nothing
  is sent: this measures ingest alone (bench/deliver.py measures delivery);
- waits for the machine to be idle, reads the server's resident memory (VmRSS of
  /proc/PID/status: the idle baseline) and resets its peak (`5` into /proc/PID/clear_refs,
  so that VmHWM, the kernel's high-water mark of resident memory, counts from now);
- drops the file: a hard link of it into the folder as `.NAME.part`, renamed to NAME. The
  file keeps the mtime of when it was written, as a file moved in from the same disk: the
  watcher's settle wait (a freshly written file is read once it has not changed for 2 s)
  is a fixed delay, not a speed, and is not counted;
- polls (every 20 ms) the folder for the claim (the file leaves it), the store for the
  first stored row (SQLite: the file, read-only; PostgreSQL: the schema) and `done/` for
  the file's report; samples VmRSS meanwhile; at the report, reads VmHWM: the peak;
- `rows/s` is rows / (report seen - drop); `rows/s after first` is rows / (report seen -
  first row seen), the reader's pace without the scan interval and claim;
- stops the server (SIGTERM; SIGKILL after a timeout) and checks, failing loudly (exit
  status 2) on any difference: the report says all N rows read, N events, no duplicate, no
  bad row, no error; the store holds exactly N events of topic `file.row` with N distinct
  idempotency keys and N distinct user keys, `--destinations` deliveries per event, and
  the first and last rows' payloads carry their user id and message (`userId`,
  `alertMessage`).

Memory: `peak` is VmHWM of the server process (the one that reads the file: the API,
the watcher, the SQLite writer; not its sender processes, which read no file), `growth`
is peak - the idle baseline. The reader holds one chunk of rows at a time (BATCH rows),
so both should be the same for 100,000 and 1,000,000 rows: `flat` is peak(largest) /
peak(smallest), aim <= 1.10.

CPU columns (percent of one core, from the drop to the report): `server` the server
process (every thread), `db` the PostgreSQL server's processes (0 on SQLite), `machine`
the whole machine (200% = both cores of a 2-core machine busy); a run where other
processes used >= 20% is marked NOISE.

The last line of standard output is a JSON object with the medians; `--save` also writes
every figure to bench/results/files-<timestamp>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ingest import (
    BenchError,
    VerificationError,
    database_options,
    drop_schema,
    foreign_cpu,
    free_port,
    is_healthy,
    machine_cpu,
    new_schema,
    paused_destinations,
    pg_call,
    postgres_version,
    processes_cpu,
    run_steps,
    stop_process,
    tail_of,
    thread_cpu,
    versions,
    wait_idle,
    with_schema,
    write_results,
)

TOPIC = "file.row"  # TIDINGS_WATCH_TOPIC's default
AIM_ROWS_PER_S = 30_000.0  # SQLite, 1,000,000 rows
AIM_FLAT = 1.10  # peak RSS of the largest file / of the smallest
POLL_S = 0.02
NOISE_PCT = 20
BARE_MESSAGE = "Your order has been placed"
VARIANTS = ("messages", "bare")
FORMATS = ("csv", "jsonl")


# =============================================================== the file
def message_of(i: int) -> str:
    return f"Order {i} has been placed (ref {i * 7919 % 1_000_003:07d})"


def write_file(path: Path, rows: int, variant: str, file_format: str) -> None:
    """The benchmark's file: `rows` rows, user ids user-0 ... user-<rows-1>."""
    with path.open("w", encoding="utf-8", newline="") as f:
        if file_format == "jsonl":
            for i in range(rows):
                obj: dict[str, str] = {"userId": f"user-{i}"}
                if variant == "messages":
                    obj["alertMessage"] = message_of(i)
                f.write(json.dumps(obj) + "\n")
        elif variant == "messages":
            f.write("userId,alertMessage\n")
            f.writelines(f"user-{i},{message_of(i)}\n" for i in range(rows))
        else:
            f.writelines(f"user-{i}\n" for i in range(rows))


def expected_message(i: int, variant: str) -> str:
    return message_of(i) if variant == "messages" else BARE_MESSAGE


# =============================================================== /proc
def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB (empty once it is gone)."""
    out = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0])
    return out


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current VmRSS (Linux >= 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """The largest VmRSS seen, sampled from a thread of the driver (VmHWM is the exact
    peak; this one is a cross-check, and the peak where clear_refs is refused)."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.pid, self.every = pid, every
        self.max_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            rss = proc_status(self.pid).get("VmRSS", 0)
            self.max_kib = max(self.max_kib, rss)
            self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# =============================================================== one run
@dataclass
class Run:
    rows: int
    repeat: int
    database: str = "sqlite"
    variant: str = "messages"
    format: str = "csv"
    destinations: int = 1
    schema: str = ""
    file_bytes: int = 0
    rows_per_s: float = 0.0  # drop -> report
    rows_per_s_after_first: float = 0.0  # first row stored -> report
    claim_s: float = 0.0  # drop -> the file left the folder
    first_row_s: float = 0.0  # drop -> the first row seen in the store
    report_s: float = 0.0  # drop -> the report seen in done/
    rss_idle_kib: int = 0
    rss_peak_kib: int = 0  # VmHWM after the reset (or the sampled max)
    rss_sampled_max_kib: int = 0
    rss_growth_kib: int = 0
    peak_reset: bool = False
    cpu_server_pct: float = 0.0
    cpu_db_pct: float = 0.0
    cpu_machine_pct: float = 0.0
    cpu_foreign_pct: float = 0.0
    foreign_top: str = ""
    idle_wait_s: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)
    stored_events: int | None = None
    stored_deliveries: int | None = None
    server_stop: str = ""
    verified: bool | None = None


@dataclass
class Options:
    database: str
    postgres_url: str
    variant: str
    file_format: str
    destinations: int
    timeout: float
    stop_timeout: float
    wait_idle: float
    keep: bool


class Runner:
    def __init__(self, opts: Options, root: Path) -> None:
        self.opts = opts
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.files: dict[int, Path] = {}

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        self.procs.clear()

    @property
    def file_name(self) -> str:
        return f"users.{self.opts.file_format}"

    def source(self, rows: int) -> Path:
        """The file of `rows` rows, written on first use (outside every run's folder)."""
        if rows not in self.files:
            path = self.root / f"source-{rows}" / self.file_name
            path.parent.mkdir()
            write_file(path, rows, self.opts.variant, self.opts.file_format)
            self.files[rows] = path
        return self.files[rows]

    def run(self, rows: int, repeat: int) -> Run:
        """One run; on PostgreSQL, in a schema of its own, dropped afterwards (kept when
        the check fails, or with --keep-tmp)."""
        opts = self.opts
        result = Run(
            rows,
            repeat,
            database=opts.database,
            variant=opts.variant,
            format=opts.file_format,
            destinations=opts.destinations,
        )
        if opts.database != "postgres":
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
                    print(f"# could not drop schema {result.schema}: {exc}", file=sys.stderr)

    def _database_url(self, work: Path, schema: str) -> str:
        if self.opts.database == "postgres":
            return with_schema(self.opts.postgres_url, schema)
        return f"sqlite:///{work / 'bench.db'}"

    def _start_server(
        self, work: Path, folder: Path, port: int, api_key: str, schema: str
    ) -> tuple[subprocess.Popen[bytes], Path]:
        log = work / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env.update(
            TIDINGS_DATABASE_URL=self._database_url(work, schema),
            TIDINGS_API_KEY=api_key,
            TIDINGS_PORT=str(port),
            TIDINGS_HOST="127.0.0.1",
            TIDINGS_LOG_LEVEL="warning",
            TIDINGS_ALLOW_PRIVATE_TARGETS="1",
            TIDINGS_WATCH_DIR=str(folder),
            TIDINGS_WATCH_INTERVAL_MS="100",
        )
        if self.opts.variant == "bare":
            env["TIDINGS_WATCH_MESSAGE"] = BARE_MESSAGE
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tidings.cli", "serve"],
                stdout=out,
                stderr=out,
                cwd=work,
                env=env,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc, log

    def _wait_healthy(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"server exited with {proc.returncode}:\n{tail_of(log)}")
            if is_healthy(url):
                return
            time.sleep(0.05)
        raise BenchError(f"server not healthy after 30 s:\n{tail_of(log)}")

    def _create_destinations(self, url: str, api_key: str) -> None:
        paused_destinations(url, api_key, self.opts.destinations, ["file.*"])

    def _any_row(self, work: Path, schema: str) -> bool:
        """Whether the store holds a row yet (cheap: polled every POLL_S)."""
        if self.opts.database == "postgres":

            async def ask(conn: Any) -> bool:
                return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events)"))

            return bool(pg_call(self.opts.postgres_url, schema, ask))
        conn = sqlite3.connect(f"file:{work / 'bench.db'}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None
        finally:
            conn.close()

    def _run(self, result: Run) -> Run:
        opts = self.opts
        source = self.source(result.rows)
        result.file_bytes = source.stat().st_size
        work = self.root / f"run-{result.rows}-{result.repeat}"
        folder = work / "in"
        folder.mkdir(parents=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        api_key = "tdk_bench_" + secrets.token_urlsafe(16)
        server, log = self._start_server(work, folder, port, api_key, result.schema)
        report_path = folder / "done" / f"{self.file_name}.report.json"
        failed = folder / "failed"
        sampler: RssSampler | None = None
        try:
            self._wait_healthy(server, url, log)
            self._create_destinations(url, api_key)
            result.idle_wait_s = round(wait_idle(opts.wait_idle), 1)
            result.rss_idle_kib = proc_status(server.pid).get("VmRSS", 0)
            result.peak_reset = reset_peak(server.pid)
            sampler = RssSampler(server.pid).start()
            ours = {os.getpid(), server.pid}
            procs0 = processes_cpu(ours)
            busy0, total0 = machine_cpu()
            cpu0 = sum(thread_cpu(server.pid))
            part = folder / f".{self.file_name}.part"
            os.link(source, part)
            os.rename(part, folder / self.file_name)
            dropped = time.monotonic()
            deadline = dropped + opts.timeout
            claimed = first = 0.0
            while True:
                now = time.monotonic()
                if report_path.exists():
                    break
                if server.poll() is not None:
                    raise BenchError(f"server exited with {server.returncode}:\n{tail_of(log)}")
                if failed.exists() and any(failed.iterdir()):
                    raise VerificationError(
                        f"the file went to failed/: {sorted(p.name for p in failed.iterdir())}"
                    )
                if now > deadline:
                    raise BenchError(f"no report after {opts.timeout:g} s:\n{tail_of(log)}")
                if not claimed and not (folder / self.file_name).exists():
                    claimed = now
                if claimed and not first and self._any_row(work, result.schema):
                    first = time.monotonic()
                time.sleep(POLL_S)
            reported = time.monotonic()
            status = proc_status(server.pid)
            cpu1 = sum(thread_cpu(server.pid))
            busy1, total1 = machine_cpu()
            procs1 = processes_cpu(ours)
            sampler.stop()
            elapsed = reported - dropped
            result.report_s = round(elapsed, 3)
            result.claim_s = round((claimed or reported) - dropped, 3)
            result.first_row_s = round((first or reported) - dropped, 3)
            result.rows_per_s = result.rows / elapsed
            result.rows_per_s_after_first = result.rows / max(1e-6, reported - (first or dropped))
            result.rss_sampled_max_kib = sampler.max_kib
            result.rss_peak_kib = (
                status.get("VmHWM", 0) if result.peak_reset else max(sampler.max_kib, 0)
            )
            result.rss_growth_kib = result.rss_peak_kib - result.rss_idle_kib
            ncpu = os.cpu_count() or 1
            result.cpu_server_pct = 100 * (cpu1 - cpu0) / elapsed
            result.cpu_machine_pct = 100 * ncpu * (busy1 - busy0) / max(1, total1 - total0)
            user, _kernel, top, database = foreign_cpu(
                procs0, procs1, db=opts.database == "postgres"
            )
            result.cpu_foreign_pct = 100 * user / elapsed
            result.cpu_db_pct = 100 * database / elapsed
            result.foreign_top = top
            result.report = json.loads(report_path.read_text())
        finally:
            if sampler is not None:
                sampler.stop()
            result.server_stop = stop_process(server, opts.stop_timeout)
        self._verify(result, work)
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
        return result

    # ----------------------------------------------------------- checks
    COUNTS = (
        "SELECT count(*), count(DISTINCT idempotency_key), count(DISTINCT key) FROM events "
        "WHERE topic = '" + TOPIC + "'"
    )
    OTHERS = "SELECT count(*) FROM events WHERE topic != '" + TOPIC + "'"
    DELIVERIES = "SELECT count(*) FROM deliveries"
    LOPSIDED = (
        "SELECT count(*) FROM events e WHERE (SELECT count(*) FROM deliveries d "
        "WHERE d.event_seq = e.seq) != {n}"
    )
    PAYLOAD = "SELECT payload FROM events WHERE key = {p}"

    def _stored(self, work: Path, schema: str, keys: list[str]) -> tuple[Any, ...]:
        """(events, distinct idempotency keys, distinct keys, other events, deliveries,
        events without exactly --destinations deliveries, {key: payload})."""
        n = self.opts.destinations
        if self.opts.database == "postgres":

            async def read(conn: Any) -> tuple[Any, ...]:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    counts = await conn.fetchrow(self.COUNTS)
                    others = await conn.fetchval(self.OTHERS)
                    deliveries = await conn.fetchval(self.DELIVERIES)
                    lopsided = await conn.fetchval(
                        "SELECT count(*) FROM events e LEFT JOIN (SELECT event_seq, count(*) "
                        "AS n FROM deliveries GROUP BY event_seq) d ON d.event_seq = e.seq "
                        "WHERE coalesce(d.n, 0) != $1",
                        n,
                    )
                    payloads = {}
                    for key in keys:
                        raw = await conn.fetchval(self.PAYLOAD.format(p="$1"), key)
                        payloads[key] = None if raw is None else bytes(raw)
                return (*counts, others, deliveries, lopsided, payloads)

            found: tuple[Any, ...] = pg_call(self.opts.postgres_url, schema, read)
            return found
        conn = sqlite3.connect(f"file:{work / 'bench.db'}?mode=ro", uri=True, timeout=10)
        try:
            counts = conn.execute(self.COUNTS).fetchone()
            others = conn.execute(self.OTHERS).fetchone()[0]
            deliveries = conn.execute(self.DELIVERIES).fetchone()[0]
            lopsided = conn.execute(self.LOPSIDED.format(n=int(n))).fetchone()[0]
            payloads = {}
            for key in keys:
                row = conn.execute(self.PAYLOAD.format(p="?"), (key,)).fetchone()
                payloads[key] = None if row is None else bytes(row[0])
        finally:
            conn.close()
        return (*counts, others, deliveries, lopsided, payloads)

    def _verify(self, result: Run, work: Path) -> None:
        n, rows = self.opts.destinations, result.rows
        samples = [0, rows - 1]
        keys = [f"user-{i}" for i in samples]
        events, idem, users, others, deliveries, lopsided, payloads = self._stored(
            work, result.schema, keys
        )
        result.stored_events, result.stored_deliveries = events, deliveries
        problems = []
        r = result.report
        seen = (r.get("rows"), r.get("events"), r.get("duplicates"), r.get("bad_rows"))
        if seen != (rows, rows, 0, 0) or r.get("error"):
            problems.append(
                f"the report says rows/events/duplicates/bad_rows {seen}, error "
                f"{r.get('error')!r} (expected ({rows}, {rows}, 0, 0), no error)"
            )
        if (events, idem, users) != (rows, rows, rows):
            problems.append(
                f"store holds {events} events of {TOPIC} ({idem} idempotency keys, "
                f"{users} user keys) for {rows} rows"
            )
        if others:
            problems.append(f"store holds {others} events of other topics")
        if deliveries != n * events or lopsided:
            problems.append(
                f"store holds {deliveries} deliveries for {events} events (expected "
                f"{n * events}; {lopsided} events without exactly {n})"
            )
        for i, key in zip(samples, keys, strict=True):
            raw = payloads.get(key)
            body = json.loads(raw) if raw else None
            want = {"userId": key, "alertMessage": expected_message(i, self.opts.variant)}
            if not body or {k: body.get(k) for k in want} != want:
                problems.append(f"the payload of {key} is {body!r}, expected {want}")
        result.verified = not problems
        if problems:
            where = (
                f"PostgreSQL schema {result.schema} kept"
                if result.database == "postgres"
                else f"database kept at {work / 'bench.db'}"
            )
            raise VerificationError(
                f"{rows:,} rows, run {result.repeat + 1}: " + "; ".join(problems) + f" ({where})"
            )


# =============================================================== reporting
def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def describe(run: Run, repeats: int) -> str:
    line = (
        f"{run.rows:>9,} rows run {run.repeat + 1}/{repeats}: {run.rows_per_s:>7,.0f} rows/s "
        f"({run.rows_per_s_after_first:,.0f} after the first row; claimed "
        f"{run.claim_s:.2f} s, first row {run.first_row_s:.2f} s, report {run.report_s:.1f} s) "
        f"| RSS idle {mib(run.rss_idle_kib)} peak {mib(run.rss_peak_kib)} "
        f"(+{mib(run.rss_growth_kib)}) | cpu server {run.cpu_server_pct:.0f}% "
        + (f"db {run.cpu_db_pct:.0f}% " if run.database == "postgres" else "")
        + f"machine {run.cpu_machine_pct:.0f}%"
    )
    if run.cpu_foreign_pct >= NOISE_PCT:
        line += f" | NOISE: other processes {run.cpu_foreign_pct:.0f}% ({run.foreign_top})"
    if not run.peak_reset:
        line += " | peak: sampled (clear_refs refused)"
    if run.verified:
        line += f" | verified: {run.stored_events:,} events, {run.stored_deliveries:,} deliveries"
    if run.server_stop != "sigterm":
        line += f" | server stop: {run.server_stop}"
    return line


def medians(runs: list[Run], sizes: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rows in sizes:
        mine = [r for r in runs if r.rows == rows]
        if not mine:
            continue
        out[f"rows_per_s_{rows}"] = round(statistics.median(r.rows_per_s for r in mine))
        out[f"rows_per_s_after_first_{rows}"] = round(
            statistics.median(r.rows_per_s_after_first for r in mine)
        )
        out[f"rss_peak_mib_{rows}"] = round(
            statistics.median(r.rss_peak_kib for r in mine) / 1024, 1
        )
        out[f"rss_growth_mib_{rows}"] = round(
            statistics.median(r.rss_growth_kib for r in mine) / 1024, 1
        )
    small, large = min(sizes), max(sizes)
    if small != large and f"rss_peak_mib_{small}" in out and f"rss_peak_mib_{large}" in out:
        ratio = out[f"rss_peak_mib_{large}"] / out[f"rss_peak_mib_{small}"]
        out["rss_flat_ratio"] = round(ratio, 3)
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/files.py",
        description=(
            "File ingest benchmark for `tidings serve` (SQLite or PostgreSQL): rows/s from a "
            "file dropped into TIDINGS_WATCH_DIR to its report in done/, and the server's "
            "peak RSS while it reads. Every run checks that the store holds exactly the "
            "file's rows."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    database_options(
        p,
        "sqlite: a new file per run; postgres: a new schema per run, dropped after it",
        analyze=False,
    )
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated row counts")
    p.add_argument("--repeats", type=int, default=3, help="runs per size")
    p.add_argument(
        "--variant",
        choices=VARIANTS,
        default="messages",
        help="messages: user id and message per row; bare: user ids, TIDINGS_WATCH_MESSAGE",
    )
    p.add_argument("--format", dest="file_format", choices=FORMATS, default="csv")
    p.add_argument(
        "--destinations",
        type=int,
        default=1,
        help="paused webhook destinations on file.* (each row also writes one delivery each)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for a report")
    p.add_argument("--stop-timeout", type=float, default=20.0, help="SIGTERM grace (s)")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=30.0,
        help="before each drop, wait up to this many seconds for the machine to be idle",
    )
    p.add_argument("--save", action="store_true", help="write bench/results/files-<ts>.json")
    p.add_argument("--output", type=Path, help="write the results JSON to this path")
    p.add_argument(
        "--keep-tmp", action="store_true", help="keep databases (files, schemas) and folders"
    )
    args = p.parse_args(argv)
    try:
        args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error("--sizes: comma-separated integers")
    if not args.sizes or min(args.sizes) < 2:
        p.error("--sizes: at least one size, each >= 2 rows")
    if args.repeats < 1 or args.destinations < 0:
        p.error("--repeats >= 1 and --destinations >= 0")
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
    else:
        where = "SQLite, a new file per run"
    opts = Options(
        database=args.database,
        postgres_url=args.postgres_url,
        variant=args.variant,
        file_format=args.file_format,
        destinations=args.destinations,
        timeout=args.timeout,
        stop_timeout=args.stop_timeout,
        wait_idle=args.wait_idle,
        keep=args.keep_tmp,
    )
    print(
        f"# tidings file ingest bench: {os.cpu_count()} CPUs, sizes "
        f"{', '.join(f'{s:,}' for s in args.sizes)} rows, {args.repeats} repeats, variant "
        f"{args.variant}, {args.file_format}, {args.destinations} paused destination(s); "
        f"tidings serve on {where}",
        flush=True,
    )
    runs: list[Run] = []
    root = Path(tempfile.mkdtemp(prefix="tidings-bench-files-"))
    runner = Runner(opts, root)

    def steps() -> int:
        for repeat in range(args.repeats):
            for rows in args.sizes:
                run = runner.run(rows, repeat)
                runs.append(run)
                print(describe(run, args.repeats), flush=True)
        return 0

    status = run_steps(steps, runner, root, args.keep_tmp, "CHECK FAILED")
    if status:
        return status
    summary = medians(runs, args.sizes)
    summary.update(database=args.database, variant=args.variant, format=args.file_format)
    print(f"\n# medians (tidings serve on {args.database})")
    for rows in args.sizes:
        figure = summary[f"rows_per_s_{rows}"]
        line = (
            f"{rows:>9,} rows: {figure:>7,} rows/s ({summary[f'rows_per_s_after_first_{rows}']:,} "
            f"after the first row) | RSS peak {summary[f'rss_peak_mib_{rows}']} MiB "
            f"(+{summary[f'rss_growth_mib_{rows}']} MiB over idle)"
        )
        if args.database == "sqlite" and rows == max(args.sizes) and rows >= 1_000_000:
            verdict = "meets" if figure >= AIM_ROWS_PER_S else "BELOW"
            line += f" | {verdict} aim {AIM_ROWS_PER_S:,.0f}"
        print(line)
    if "rss_flat_ratio" in summary:
        ratio = summary["rss_flat_ratio"]
        verdict = "flat" if ratio <= AIM_FLAT else "NOT FLAT"
        print(f"peak RSS {max(args.sizes):,} / {min(args.sizes):,} rows: {ratio:.3f} ({verdict})")
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(args.postgres_url if args.database == "postgres" else None),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "medians": summary,
        "runs": [asdict(r) for r in runs],
    }
    write_results("files", document, summary, args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
