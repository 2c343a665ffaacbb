"""Consumers in three real processes (`tidings consume`) on PostgreSQL, through a
`tidings api` process with a schema of its own.

A fifo group with short leases (2 s); 240 events over 8 keys, each handled by an async
handler that writes a `start` line, sleeps 50 ms, then writes a `done` line (one file
per process). Mid-run one consumer is SIGKILLed while it holds leases mid-handler. Then:
every event is done at least once; per key, the handlers started in publish order (a
repeat only of the head the killed consumer held, never an overtake); every event the
killed one had started but not finished was done by another consumer; the others stop
on SIGTERM with exit code 0 and every delivery ends delivered.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import drop_schema, postgres_schema, postgres_url
from tests.e2e.procs import API_KEY, TidingsProcess, sdk
from tests.e2e.receiver import eventually

pytestmark = pytest.mark.e2e

EVENTS, KEYS = 240, 8
CONSUMER_MODULE = """
    import asyncio, json, os, time
    import tidings

    consumer = tidings.Consumer(group="e2e", concurrency=4, wait_ms=1000)
    log = open(os.path.join(os.environ["E2E_LOG_DIR"], f"{os.getpid()}.log"), "a", buffering=1)

    @consumer.handler("job.*")
    async def handle(event: tidings.LeasedEvent) -> None:
        line = {"pid": os.getpid(), "id": event.id, "key": event.key, "n": event.payload["n"]}
        log.write(json.dumps({**line, "at": time.time(), "what": "start"}) + "\\n")
        await asyncio.sleep(0.05)
        log.write(json.dumps({**line, "at": time.time(), "what": "done"}) + "\\n")
"""


def records(folder: Path) -> list[dict[str, object]]:
    out = []
    for path in folder.glob("*.log"):
        for line in path.read_text().splitlines():
            if line.endswith("}"):  # a line cut by the SIGKILL is no record
                out.append(json.loads(line))
    return sorted(out, key=lambda r: float(r["at"]))  # type: ignore[arg-type]


def start_consumers(
    workdir: Path, app_dir: Path, env: dict[str, str], n: int
) -> list[subprocess.Popen[bytes]]:
    tidings_bin = str(Path(sys.executable).with_name("tidings"))
    procs = []
    for i in range(n):
        out = (workdir / f"consumer{i}.out").open("wb")
        cmd = [tidings_bin, "consume", "e2e_consumer:consumer"]
        procs.append(subprocess.Popen(cmd, cwd=app_dir, env=env, stdout=out, stderr=out))
    return procs


async def test_three_consumer_processes_fifo_and_a_sigkill(
    tmp_path: Path, require_service: Callable[[str, int], None]
) -> None:
    require_service("PostgreSQL", 5432)
    schema = postgres_schema(tmp_path)
    await drop_schema(schema)
    api = TidingsProcess(
        tmp_path, postgres_url(schema), role="api", extra_env={"TIDINGS_POLL_INTERVAL_MS": "200"}
    )
    app_dir, log_dir = tmp_path / "app", tmp_path / "handled"
    app_dir.mkdir()
    log_dir.mkdir()
    (app_dir / "e2e_consumer.py").write_text(textwrap.dedent(CONSUMER_MODULE))
    consumers: list[subprocess.Popen[bytes]] = []
    try:
        await asyncio.to_thread(api.start)
        client = sdk(api.url)
        client.create_destination(
            "group",
            ["job.*"],
            name="e2e",
            lease_ms=2000,
            retry={"max_attempts": 10, "initial_ms": 100, "jitter": 0},
        )
        env = {
            **os.environ,
            "TIDINGS_URL": api.url,
            "TIDINGS_API_KEY": API_KEY,
            "E2E_LOG_DIR": str(log_dir),
        }
        consumers.extend(await asyncio.to_thread(start_consumers, tmp_path, app_dir, env, 3))
        for start in range(0, EVENTS, 80):
            client.publish_batch(
                [
                    {"topic": "job.run", "key": f"k{i % KEYS}", "payload": {"n": i // KEYS}}
                    for i in range(start, start + 80)
                ]
            )
        ids = {e.id for e in client.iter_events(topic="job.*")}
        assert len(ids) == EVENTS

        # Kill one that is mid-handler (a start without its done), once work is flowing.
        victim = consumers[0]
        await eventually(lambda: len(records(log_dir)) >= 60, 20, "the consumers handle nothing")

        def mid_handler() -> bool:
            mine = [r for r in records(log_dir) if r["pid"] == victim.pid]
            started = {r["id"] for r in mine if r["what"] == "start"}
            return bool(started - {r["id"] for r in mine if r["what"] == "done"})

        await eventually(mid_handler, 5, "the victim is never mid-handler", interval=0.002)
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)

        def done_ids() -> set[object]:
            return {r["id"] for r in records(log_dir) if r["what"] == "done"}

        await eventually(
            lambda: done_ids() >= ids,
            25,
            lambda: f"{len(ids - done_ids())} events never handled",
        )
        for c in consumers[1:]:
            c.send_signal(signal.SIGTERM)
        assert [c.wait(15) for c in consumers[1:]] == [0, 0]
        # Their last acks went out before they exited: every delivery is delivered.
        states = [d.state for d in client.iter_deliveries(destination_id="e2e")]
        assert states == ["delivered"] * EVENTS
    finally:
        for c in consumers:
            if c.poll() is None:
                c.kill()
                c.wait()
        api.kill()
        await drop_schema(schema)

    handled = records(log_dir)
    # FIFO per key: handlers of a key start in publish order; a repeat is only the head
    # the killed consumer held (its lease came back), never a later event first.
    by_key: dict[object, list[int]] = defaultdict(list)
    for r in handled:
        if r["what"] == "start":
            by_key[r["key"]].append(int(r["n"]))  # type: ignore[call-overload]
    for key, ns in by_key.items():
        assert ns == sorted(ns), f"{key} out of order: {ns}"
        assert sorted(set(ns)) == list(range(EVENTS // KEYS)), key
    # The killed consumer's unfinished events came back to the others.
    mine = [r for r in handled if r["pid"] == victim.pid]
    unfinished = {r["id"] for r in mine if r["what"] == "start"} - {
        r["id"] for r in mine if r["what"] == "done"
    }
    assert unfinished
    for event_id in unfinished:
        others = {r["pid"] for r in handled if r["id"] == event_id and r["what"] == "done"}
        assert others and victim.pid not in others
