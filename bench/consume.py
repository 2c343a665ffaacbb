"""Consumer benchmark: events/s handled by `tidings.Consumer` processes, beside Celery
and Dramatiq workers doing the same job, in the same run.

    .venv/bin/python bench/consume.py                  # 3 repeats, 20,000 events
    .venv/bin/python bench/consume.py --events 50000 --repeats 5 --only tidings-2,dramatiq

The job: `--events` events over `--keys` keys (1,000), each handled once by a no-op
handler that only counts it (bench/consume_tally.py, the same code in every worker).
Targets, interleaved in each repeat:

- `tidings-1` / `tidings-2`: a fresh `tidings serve` on SQLite with a fifo pull group;
  the events are published (batches of 1000) before any consumer starts, then 1 or 2
  `tidings consume consume_app:consumer` processes (bench/consume_app.py, one async no-op
  handler, concurrency and batch `--batch`) drain the group; at the end the group's
  metrics must show nothing waiting and nothing leased.
- `celery`: bench/consume_celery.py, one task per event enqueued to Redis db 14 before a
  `celery worker --pool=prefork -c 2` starts (late acks, no results).
- `dramatiq`: bench/consume_dramatiq.py, one message per event, enqueued before
  `dramatiq --processes 2 --threads 8` starts.

Measured: events / (last event handled - first event handled) across the worker
processes, so start-up and enqueueing are not counted for anyone. Medians of
`--repeats`; the last line of stdout is their JSON. Exit 2 when a run handles fewer
events than it was given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tidings

BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
KEY = "tdk_bench_consume_key"
BROKER = "redis://127.0.0.1:6379/14"
TARGETS = ("tidings-1", "tidings-2", "celery", "dramatiq")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_of(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def tallies(folder: Path) -> list[dict[str, float]]:
    out = []
    for path in folder.glob("*.json"):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):  # being replaced right now
            continue
    return out


def wait_all(
    folder: Path, events: int, procs: list[subprocess.Popen[bytes]], limit_s: float
) -> float:
    """Events/s over the span from the first event handled to the last."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        seen = tallies(folder)
        if sum(t["count"] for t in seen) >= events:
            span = max(t["last"] for t in seen) - min(t["first"] for t in seen)
            return events / max(span, 1e-6)
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"a worker exited early ({p.args}), rc {p.returncode}")
        time.sleep(0.1)
    got = sum(t["count"] for t in tallies(folder))
    print(f"only {got} of {events} events handled in {limit_s:.0f} s", file=sys.stderr)
    raise SystemExit(2)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CPU: dict[str, list[float]] = {}  # target -> [server ms/1000 events, consumers ms/1000 events]


def stop(procs: list[subprocess.Popen[bytes]], sig: int = signal.SIGTERM) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def publish_all(url: str, events: int, keys: int) -> None:
    async with tidings.AsyncClient(url, api_key=KEY) as client:
        deadline = time.monotonic() + 30
        while True:
            try:
                await client.health()
                break
            except tidings.TidingsError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        await client.create_destination("group", ["bench.*"], name="bench", lease_ms=30_000)
        for start in range(0, events, 1000):
            await client.publish_batch(
                [
                    tidings.EventIn(topic="bench.created", key=f"k{i % keys}", payload={"i": i})
                    for i in range(start, min(events, start + 1000))
                ]
            )


def run_tidings(work: Path, consumers: int, events: int, keys: int, batch: int) -> float:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = env_of(
        TIDINGS_DATABASE_URL=f"sqlite:///{work / 'tidings.db'}",
        TIDINGS_API_KEY=KEY,
        TIDINGS_PORT=str(port),
        TIDINGS_LOG_LEVEL="warning",
    )
    log = (work / "server.log").open("wb")
    server = subprocess.Popen(
        [str(BIN / "tidings"), "serve"], env=server_env, stdout=log, stderr=log
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        asyncio.run(publish_all(url, events, keys))
        tally_dir = work / "tally"
        tally_dir.mkdir()
        server_cpu = cpu_s(server.pid)
        env = env_of(
            TIDINGS_URL=url,
            TIDINGS_API_KEY=KEY,
            CONSUME_TALLY_DIR=str(tally_dir),
            CONSUME_CONCURRENCY=str(batch),
            CONSUME_BATCH=str(batch),
        )
        for n in range(consumers):
            out = (work / f"consumer{n}.log").open("wb")
            cmd = [
                str(BIN / "tidings"),
                "consume",
                "consume_app:consumer",
                "--log-level",
                "warning",
            ]
            procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=out, cwd=BENCH))
        rate = wait_all(tally_dir, events, procs, 120)
        per_k = 1e6 / events  # CPU seconds -> ms per 1000 events
        CPU[f"tidings-{consumers}"] = [
            round((cpu_s(server.pid) - server_cpu) * per_k),
            round(sum(cpu_s(p.pid) for p in procs) * per_k),
        ]
        stop(procs)
        with tidings.Client(url, api_key=KEY) as client:
            text = client._http.get("/metrics").text  # the Prometheus page: not an SDK call
        for gauge in ("tidings_group_backlog", "tidings_group_leased"):
            if f'{gauge}{{group="bench"}} 0.0' not in text:
                print(f"{gauge} is not 0 after the run", file=sys.stderr)
                raise SystemExit(2)
        return rate
    finally:
        stop(procs)
        stop([server])


def flush_broker() -> None:
    import redis

    redis.Redis.from_url(BROKER).flushdb()


def run_celery(work: Path, events: int, keys: int) -> float:
    sys.path.insert(0, str(BENCH))
    os.environ["CONSUME_BROKER"] = BROKER
    import consume_celery

    flush_broker()
    with consume_celery.app.producer_or_acquire() as producer:
        for i in range(events):
            consume_celery.handle.apply_async(({"i": i, "key": f"k{i % keys}"},), producer=producer)
    tally_dir = work / "tally"
    tally_dir.mkdir()
    env = env_of(CONSUME_BROKER=BROKER, CONSUME_TALLY_DIR=str(tally_dir))
    cmd = [
        str(BIN / "celery"),
        "-A",
        "consume_celery",
        "worker",
        "--pool=prefork",
        "-c",
        "2",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel=WARNING",
    ]
    out = (work / "celery.log").open("wb")
    procs = [subprocess.Popen(cmd, env=env, stdout=out, stderr=out, cwd=BENCH)]
    try:
        return wait_all(tally_dir, events, procs, 300)
    finally:
        stop(procs)
        flush_broker()


def run_dramatiq(work: Path, events: int, keys: int) -> float:
    sys.path.insert(0, str(BENCH))
    os.environ["CONSUME_BROKER"] = BROKER
    import consume_dramatiq

    flush_broker()
    for i in range(events):
        consume_dramatiq.handle.send({"i": i, "key": f"k{i % keys}"})
    tally_dir = work / "tally"
    tally_dir.mkdir()
    env = env_of(CONSUME_BROKER=BROKER, CONSUME_TALLY_DIR=str(tally_dir))
    cmd = [str(BIN / "dramatiq"), "consume_dramatiq", "--processes", "2", "--threads", "8"]
    out = (work / "dramatiq.log").open("wb")
    procs = [subprocess.Popen(cmd, env=env, stdout=out, stderr=out, cwd=BENCH)]
    try:
        return wait_all(tally_dir, events, procs, 300)
    finally:
        stop(procs)
        flush_broker()


def one(target: str, events: int, keys: int, batch: int) -> float:
    with tempfile.TemporaryDirectory(prefix=f"tidings-bench-consume-{target}-") as tmp:
        work = Path(tmp)
        if target.startswith("tidings-"):
            return run_tidings(work, int(target.split("-")[1]), events, keys, batch)
        if target == "celery":
            return run_celery(work, events, keys)
        return run_dramatiq(work, events, keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=200, help="Consumer concurrency and batch")
    parser.add_argument("--only", default=",".join(TARGETS))
    args = parser.parse_args()
    # A SIGTERM runs the `finally`s too: no worker is left consuming the next run's queue.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    targets = [t for t in args.only.split(",") if t]
    for t in targets:
        if t not in TARGETS:
            parser.error(f"unknown target {t!r} (of {', '.join(TARGETS)})")
    runs: dict[str, list[float]] = {t: [] for t in targets}
    for i in range(args.repeats):
        for target in targets:
            rate = one(target, args.events, args.keys, args.batch)
            runs[target].append(rate)
            cpu = CPU.get(target)
            where = f" (CPU ms per 1000 events: server {cpu[0]}, consumers {cpu[1]})" if cpu else ""
            print(f"run {i + 1} {target}: {rate:,.0f} events/s{where}", flush=True)
    medians: dict[str, Any] = {t: round(statistics.median(r)) for t, r in runs.items()}
    for base in ("dramatiq", "celery"):
        if base in medians and "tidings-2" in medians:
            medians[f"tidings-2_vs_{base}"] = round(medians["tidings-2"] / medians[base], 2)
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
