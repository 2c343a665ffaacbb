"""Guarantee 1: an event answered 202 is durable, with its deliveries, through SIGKILL.

32 concurrent clients publish to a real `tidings serve` on SQLite; the process is killed
with SIGKILL while requests are in flight, restarted, and every acknowledged event must
be in the store with one delivery per matching destination. Two kill cycles.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.procs import API_KEY, TidingsProcess

pytestmark = pytest.mark.e2e
CLIENTS = 32
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


async def _create_destinations(session: aiohttp.ClientSession, url: str) -> None:
    for name, topics in (("all-crash", ["crash.*"]), ("everything", ["*"])):
        body = {"kind": "webhook", "name": name, "url": "http://127.0.0.1:9/h", "topics": topics}
        async with session.post(f"{url}/v1/destinations", json=body) as r:
            assert r.status == 201, await r.text()
            created = await r.json()
        # Paused: deliveries are written at ingest but never sent, so they stay `pending`
        # and this test is about ingest durability alone.
        patch = {"state": "paused"}
        async with session.patch(f"{url}/v1/destinations/{created['id']}", json=patch) as r:
            assert r.status == 200, await r.text()
    # A third destination whose topic never matches: it must get no deliveries.
    body = {"kind": "webhook", "url": "http://127.0.0.1:9/h", "topics": ["other.topic"]}
    async with session.post(f"{url}/v1/destinations", json=body) as r:
        assert r.status == 201


async def _publisher(
    session: aiohttp.ClientSession,
    url: str,
    client: int,
    acked: dict[str, str],
    stop: asyncio.Event,
    enough: tuple[asyncio.Event, int],
) -> None:
    n = 0
    while not stop.is_set() and n < 100_000:
        n += 1
        body = {"topic": "crash.test", "key": f"c{client}", "payload": {"client": client, "n": n}}
        try:
            async with session.post(f"{url}/v1/events", json=body) as r:
                if r.status == 202:
                    acked[(await r.json())["id"]] = f"{client}:{n}"
                    if len(acked) >= enough[1]:
                        enough[0].set()
        except (TimeoutError, aiohttp.ClientError):
            return  # the server died under us: this request is unacknowledged


async def _publish_then_kill(proc: TidingsProcess, min_acks: int) -> dict[str, str]:
    acked: dict[str, str] = {}
    stop = asyncio.Event()
    enough = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(headers=HEADERS, timeout=timeout) as session:
        tasks = [
            asyncio.create_task(_publisher(session, proc.url, c, acked, stop, (enough, min_acks)))
            for c in range(CLIENTS)
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), timeout=30)
        assert len(acked) >= min_acks, f"only {len(acked)} acks before the deadline"
        proc.kill()  # SIGKILL with requests in flight
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
    return acked


async def _check_via_api(proc: TidingsProcess, acked: dict[str, str]) -> None:
    sem = asyncio.Semaphore(32)
    missing: list[str] = []

    async def check(event_id: str) -> None:
        async with sem, session.get(f"{proc.url}/v1/events/{event_id}") as r:
            if r.status != 200:
                missing.append(event_id)
                return
            body = await r.json()
            assert len(body["deliveries"]) == 2, body
            assert all(d["state"] == "pending" for d in body["deliveries"])

    async with aiohttp.ClientSession(headers=HEADERS) as session:
        await asyncio.gather(*(check(e) for e in acked))
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:5]}"


def _check_store(db: Path, acked: dict[str, str]) -> None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        stored = {row[0] for row in conn.execute("SELECT id FROM events")}
        assert set(acked) <= stored
        # Every stored event (acknowledged or not) has exactly its two deliveries: the
        # fan-out commits with the event or not at all.
        bad = conn.execute(
            "SELECT e.id, count(d.seq) FROM events e LEFT JOIN deliveries d ON d.event_seq = e.seq"
            " GROUP BY e.seq HAVING count(d.seq) != 2"
        ).fetchall()
        assert bad == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


async def test_sigkill_during_ingest_loses_no_acknowledged_event(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    proc = TidingsProcess(tmp_path, f"sqlite:///{db}")
    proc.extra_env["TIDINGS_ALLOW_PRIVATE_TARGETS"] = "1"  # the targets are 127.0.0.1:9
    all_acked: dict[str, str] = {}
    try:
        proc.start()
        async with aiohttp.ClientSession(headers=HEADERS) as session:
            await _create_destinations(session, proc.url)
        for cycle in range(2):
            acked = await _publish_then_kill(proc, min_acks=400 * (cycle + 1))
            all_acked.update(acked)
            proc.start()  # restart on the same database
            await _check_via_api(proc, all_acked)
        proc.stop()
        _check_store(db, all_acked)
    finally:
        proc.kill()
