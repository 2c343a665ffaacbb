"""Guarantees 1-4 through a crash of the delivering process.

A real `tidings serve` on SQLite delivers a fifo destination to a slowish receiver
(50 ms a request) while 300 events over 6 keys are being published. Once the receiver has
seen 50 requests, the process is SIGKILLed with requests in flight, then restarted on the
same database. Every acknowledged event must reach the receiver, each lane's first
successes must come in publish order (no event even attempted before its predecessor
succeeded), and every stored delivery must end `delivered`. Duplicates are allowed (at
least once) but counted: a few per lane at most (the requests in flight at the kill).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.procs import TidingsProcess
from tests.e2e.receiver import (
    Receiver,
    TidingsApi,
    eventually,
    ok,
    order_violations,
    overtakes,
    publish_lanes,
)

pytestmark = pytest.mark.e2e
FAST_ENV = {
    "TIDINGS_ALLOW_PRIVATE_TARGETS": "1",
    "TIDINGS_LEASE_MARGIN_MS": "500",
    "TIDINGS_POLL_INTERVAL_MS": "200",
}
KEYS = [f"lane{i}" for i in range(6)]
PER_KEY = 50


async def test_sigkill_mid_delivery_loses_nothing_and_keeps_lane_order(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    proc = TidingsProcess(tmp_path, f"sqlite:///{tmp_path / 'crash.db'}", extra_env=FAST_ENV)
    api: TidingsApi | None = None
    try:
        await asyncio.to_thread(proc.start)
        api = TidingsApi(proc.url)
        dest = await api.create_destination(
            url=receiver.url("/crash"),
            topics=["crash.*"],
            ordering="fifo",
            timeout_ms=1000,  # lease = 1 s + 0.5 s margin: recovery is quick
            retry={"initial_ms": 50, "max_attempts": 20, "max_ms": 500},
        )
        receiver.set("/crash", ok(delay_s=0.05), secret=dest["secret"])
        publishing = asyncio.create_task(
            publish_lanes(api, "crash.test", KEYS, PER_KEY, tolerate_errors=True)
        )

        # Kill with requests in flight (checked and killed with no await in between).
        await eventually(
            lambda: len(receiver.hits) >= 50 and sum(receiver.in_flight.values()) > 0,
            20,
            lambda: f"the receiver saw only {len(receiver.hits)} requests",
            interval=0.01,
        )
        in_flight_at_kill = sum(receiver.in_flight.values())
        publishing_at_kill = not publishing.done()
        proc.kill()
        hits_at_kill = len(receiver.hits)
        acked = await asyncio.wait_for(publishing, 20)
        assert in_flight_at_kill > 0

        await asyncio.to_thread(proc.start)  # same database, same port
        await eventually(
            lambda: receiver.delivered_ids("/crash") >= set(acked),
            30,
            lambda: (
                f"{len(set(acked) - receiver.delivered_ids('/crash'))} of {len(acked)} "
                "acknowledged events never reached the receiver"
            ),
        )

        async def all_delivered() -> bool:
            states = await api.states(dest["id"])
            return set(states) == {"delivered"}

        await eventually(
            all_delivered,
            15,
            lambda: "deliveries did not all end delivered",
            interval=0.2,
        )
        stored = {d["event_id"] for d in await api.deliveries(dest["id"])}
        assert set(acked) <= stored, "acknowledged events missing from the store"
        # Events committed but not acknowledged (killed before the 202) are delivered too.
        assert stored <= receiver.delivered_ids("/crash")

        hits = receiver.on("/crash")
        first = receiver.successes("/crash")
        assert not order_violations(first), order_violations(first)
        for key in KEYS:
            ns = [h.data["n"] for h in first if h.lane == key]
            assert ns == list(range(len(ns))), f"{key}: first successes {ns}"
        assert not overtakes(hits), overtakes(hits)[:5]
        assert max(receiver.max_lane_concurrency("/crash").values()) == 1
        failures = receiver.verification_failures()
        assert not failures, failures[:5]

        successes_per_id: dict[str, int] = {}
        for h in hits:
            if h.ok:
                successes_per_id[h.webhook_id] = successes_per_id.get(h.webhook_id, 0) + 1
        duplicates = sum(n - 1 for n in successes_per_id.values())
        assert duplicates <= len(KEYS) * 2, (
            f"{duplicates} duplicate deliveries (2xx more than once) for {len(stored)} events; "
            f"{in_flight_at_kill} requests were in flight at the kill"
        )
        print(
            f"crash: killed after {hits_at_kill} requests ({in_flight_at_kill} in flight, "
            f"publishing {'still running' if publishing_at_kill else 'done'}); "
            f"{len(acked)} acknowledged, {len(stored)} stored, {duplicates} duplicates"
        )
        proc.stop()
    finally:
        if api is not None:
            await api.close()
        proc.kill()
        await receiver.close()
