"""The delivery engine end to end: real `tidings` processes, real aiohttp receivers.

Each test starts its own `tidings` process(es) on a fresh SQLite file, with short timings
(lease margin 0.5 s, poll interval 0.2 s), and a `Receiver` on 127.0.0.1 in the test's
event loop. Nothing is mocked. Every wait is bounded (`eventually`), and every receiver
request's signature is checked against the destination's secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.e2e.procs import TidingsProcess, WorkerProcess
from tests.e2e.receiver import (
    Receiver,
    TidingsApi,
    always,
    eventually,
    fail_first,
    flaky,
    gone,
    ok,
    order_violations,
    overtakes,
    poison,
    publish_lanes,
    slow,
)

pytestmark = pytest.mark.e2e

FAST_ENV = {
    "TIDINGS_ALLOW_PRIVATE_TARGETS": "1",
    "TIDINGS_LEASE_MARGIN_MS": "500",
    "TIDINGS_POLL_INTERVAL_MS": "200",
}


# ---------------------------------------------------------------------------- processes
@dataclass
class Cluster:
    """The processes and API clients of one test; all killed at the end."""

    workdir: Path
    procs: list[TidingsProcess] = field(default_factory=list)
    apis: list[TidingsApi] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.workdir / 'tidings.db'}"

    async def start(self, role: str = "serve", **env: str) -> tuple[TidingsProcess, TidingsApi]:
        proc = TidingsProcess(
            self.workdir, self.database_url, role=role, extra_env={**FAST_ENV, **env}
        )
        self.procs.append(proc)
        await asyncio.to_thread(proc.start)
        api = TidingsApi(proc.url)
        self.apis.append(api)
        return proc, api

    async def worker(self, **env: str) -> WorkerProcess:
        proc = WorkerProcess(self.workdir, self.database_url, extra_env={**FAST_ENV, **env})
        self.procs.append(proc)
        await asyncio.to_thread(proc.start)
        return proc

    async def close(self) -> None:
        for api in self.apis:
            await api.close()
        for proc in self.procs:
            proc.kill()
            # Shown by pytest only when the test failed.
            if proc.starts:
                lines = proc.log_path.read_text(errors="replace").splitlines()
                print(f"--- {proc.log_path.name} (last 20 lines)", *lines[-20:], sep="\n")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.close()


def _cpu_s(proc: TidingsProcess) -> float:
    """CPU seconds (user + system) the process has used so far (Linux /proc)."""
    assert proc.proc is not None
    fields = Path(f"/proc/{proc.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _no_bad_signatures(receiver: Receiver) -> None:
    failures = receiver.verification_failures()
    assert not failures, f"{len(failures)} requests failed signature checks: {failures[:5]}"


# ---------------------------------------------------------------------------- 1. FIFO
async def test_fifo_per_key_under_failures(cluster: Cluster, receiver: Receiver) -> None:
    _, api = await cluster.start()
    dest = await api.create_destination(
        url=receiver.url("/fifo"),
        topics=["fifo.*"],
        ordering="fifo",
        retry={"max_attempts": 10, "initial_ms": 50, "max_ms": 400},
    )
    # About a third of attempts fail (deterministic per webhook-id and attempt); from
    # attempt 6 on, all succeed, so no event can die by bad luck.
    receiver.set("/fifo", flaky(3, below_attempt=6), secret=dest["secret"])
    keys = [f"k{i}" for i in range(10)]
    published = await publish_lanes(api, "fifo.test", keys, per_key=20)
    assert len(published) == 200

    await eventually(
        lambda: receiver.delivered_ids("/fifo") >= set(published),
        within=30,
        message=lambda: f"{len(receiver.delivered_ids('/fifo'))}/200 events got a 2xx",
    )
    hits = receiver.on("/fifo")
    failed = [h for h in hits if not h.ok]
    assert len(failed) >= 20, f"the receiver failed only {len(failed)} attempts: no test"
    first = receiver.successes("/fifo")
    assert not order_violations(first), order_violations(first)
    for key in keys:
        assert [h.data["n"] for h in first if h.lane == key] == list(range(20)), key
    # The head blocks its lane while it retries: no later event is even attempted.
    assert not overtakes(hits), overtakes(hits)[:5]
    assert max(receiver.max_lane_concurrency("/fifo").values()) == 1
    _no_bad_signatures(receiver)

    async def all_delivered() -> bool:
        return len(await api.deliveries(dest["id"], "delivered")) == 200

    await eventually(
        all_delivered,
        within=10,
        message=lambda: "deliveries did not all end delivered",
        interval=0.2,
    )


# ---------------------------------------------------------------------------- 2. isolation
async def test_slow_and_failing_destinations_do_not_delay_a_healthy_one(
    cluster: Cluster, receiver: Receiver
) -> None:
    # Never pause the failing one: it must keep failing for the whole test.
    _, api = await cluster.start(TIDINGS_PAUSE_AFTER_FAILURES="0")
    retry = {"max_attempts": 100, "initial_ms": 50, "max_ms": 200}
    healthy = await api.create_destination(url=receiver.url("/healthy"), topics=["iso.*"])
    failing = await api.create_destination(
        url=receiver.url("/failing"), topics=["iso.*"], ordering="none", retry=retry
    )
    slowpoke = await api.create_destination(
        url=receiver.url("/slow"), topics=["iso.*"], ordering="none", retry=retry, timeout_ms=500
    )
    receiver.set("/healthy", ok(), secret=healthy["secret"])
    receiver.set("/failing", always(500), secret=failing["secret"])
    receiver.set("/slow", slow(3.0), secret=slowpoke["secret"])

    sent: dict[str, float] = {}
    for i in range(100):
        started = time.monotonic()
        ack = await api.publish("iso.test", f"k{i % 10}", {"key": f"k{i % 10}", "n": i // 10})
        sent[ack["id"]] = started
    last_publish = time.monotonic()

    await eventually(
        lambda: receiver.delivered_ids("/healthy") >= set(sent),
        within=5,
        message=lambda: (
            f"healthy got {len(receiver.delivered_ids('/healthy'))}/100 "
            "within 5 s of the last publish"
        ),
    )
    done_after = time.monotonic() - last_publish
    latencies = [h.at - sent[h.webhook_id] for h in receiver.successes("/healthy")]
    p95 = _pct(latencies, 0.95)
    assert p95 < 1.0, f"healthy p95 latency {p95:.3f} s (max {max(latencies):.3f} s)"
    # The adversity was real: the others were being hammered meanwhile.
    assert len(receiver.on("/failing")) >= 100, len(receiver.on("/failing"))
    assert len(receiver.on("/slow")) >= 16, len(receiver.on("/slow"))
    assert receiver.delivered_ids("/failing") == set()
    _no_bad_signatures(receiver)
    print(f"healthy: all 100 {done_after:.2f} s after the last publish, p95 {p95 * 1000:.0f} ms")


# ---------------------------------------------------------------------------- 3. dead, replay
async def test_max_attempts_dead_then_retry_and_replay(
    cluster: Cluster, receiver: Receiver
) -> None:
    _, api = await cluster.start()
    dest = await api.create_destination(
        url=receiver.url("/dead"),
        topics=["dead.*"],
        ordering="none",
        retry={"max_attempts": 3, "initial_ms": 50, "multiplier": 1.0},
    )
    receiver.set("/dead", always(500, "upstream exploded"), secret=dest["secret"])
    events = [
        (await api.publish("dead.test", f"k{i}", {"key": f"k{i}", "n": 0}))["id"] for i in range(6)
    ]

    async def all_dead() -> bool:
        return len(await api.deliveries(dest["id"], "dead")) == 6

    await eventually(all_dead, 10, lambda: f"{len(receiver.on('/dead'))} attempts seen")
    await asyncio.sleep(0.5)  # a fourth attempt would show up by now
    attempts: dict[str, list[int]] = {}
    for h in receiver.on("/dead"):
        attempts.setdefault(h.webhook_id, []).append(h.attempt)
    assert attempts == {e: [1, 2, 3] for e in events}, attempts

    dead = await api.deliveries(dest["id"], "dead")
    shown = await api.delivery(dead[0]["id"])
    assert shown["state"] == "dead" and shown["attempt_count"] == 3, shown
    assert len(shown["attempts"]) == 3, shown
    for attempt in shown["attempts"]:
        assert attempt["status_code"] == 500, attempt
        assert attempt["outcome"] == "http_error", attempt
        assert attempt["response_body"] == "upstream exploded", attempt

    # The receiver is fixed. One delivery by hand...
    receiver.set("/dead", ok())
    mark = len(receiver.hits)
    single = dead[0]
    status, body = await api.call("POST", f"/v1/deliveries/{single['id']}/retry")
    assert status == 202, body
    assert body["state"] == "pending", body
    await eventually(
        lambda: single["event_id"] in receiver.delivered_ids("/dead"),
        5,
        "the retried delivery did not arrive",
    )
    # ...the rest by replay.
    status, body = await api.call(
        "POST", f"/v1/destinations/{dest['id']}/replay", {"state": "dead"}
    )
    assert (status, body) == (202, {"replayed": 5}), (status, body)
    await eventually(
        lambda: receiver.delivered_ids("/dead") >= set(events),
        5,
        lambda: f"{len(receiver.delivered_ids('/dead'))}/6 delivered after replay",
    )
    new_hits = receiver.hits[mark:]
    assert [h.attempt for h in new_hits] == [1] * 6, [h.attempt for h in new_hits]

    async def all_delivered() -> bool:
        return (await api.states(dest["id"])) == {"delivered": 6}

    await eventually(all_delivered, 5, "deliveries did not end delivered")

    # A delivered one may be sent again (202); the receiver sees it once more, attempt 1.
    mark = len(receiver.hits)
    status, body = await api.call("POST", f"/v1/deliveries/{single['id']}/retry")
    assert status == 202, body
    await eventually(lambda: len(receiver.hits) > mark, 5, "the re-sent delivery did not arrive")
    assert receiver.hits[mark].webhook_id == single["event_id"]
    assert receiver.hits[mark].attempt == 1

    # A pending one may not (409): a paused destination keeps its delivery pending.
    parked = await api.create_destination(url=receiver.url("/parked"), topics=["parked.*"])
    status, body = await api.call("PATCH", f"/v1/destinations/{parked['id']}", {"state": "paused"})
    assert status == 200 and body["state"] == "paused", body
    await api.publish("parked.test", "p", {"key": "p", "n": 0})
    (pending,) = await api.deliveries(parked["id"])
    assert pending["state"] == "pending", pending
    status, body = await api.call("POST", f"/v1/deliveries/{pending['id']}/retry")
    assert status == 409, body
    assert body["error"]["code"] == "conflict", body
    status, body = await api.call("POST", "/v1/deliveries/dlv_doesnotexist/retry")
    assert status == 404, body
    assert receiver.on("/parked") == []
    _no_bad_signatures(receiver)


# ---------------------------------------------------------------------------- 4. on_dead
async def test_on_dead_block_holds_the_lane_and_skip_moves_on(
    cluster: Cluster, receiver: Receiver
) -> None:
    proc, api = await cluster.start()
    retry = {"max_attempts": 2, "initial_ms": 50}
    block = await api.create_destination(
        url=receiver.url("/block"), topics=["lane.*"], on_dead="block", retry=retry
    )
    skip = await api.create_destination(
        url=receiver.url("/skip"), topics=["lane.*"], on_dead="skip", retry=retry
    )

    def is_poison(data: Any) -> bool:
        return isinstance(data, dict) and bool(data.get("poison"))

    receiver.set("/block", poison(is_poison), secret=block["secret"])
    receiver.set("/skip", poison(is_poison), secret=skip["secret"])

    ids: dict[tuple[str, int], str] = {}
    for key, n, bad in [
        ("A", 0, True), ("A", 1, False), ("A", 2, False),
        ("B", 0, False), ("B", 1, False),
        ("C", 0, True), ("C", 1, False), ("C", 2, False),
    ]:  # fmt: skip
        payload = {"key": key, "n": n, "poison": bad}
        ids[(key, n)] = (await api.publish("lane.test", key, payload))["id"]
    good = {v for (k, n), v in ids.items() if n > 0 or k == "B"}

    # skip: everything but the two poison heads flows, in order.
    await eventually(
        lambda: receiver.delivered_ids("/skip") >= good,
        10,
        lambda: f"skip delivered {len(receiver.delivered_ids('/skip'))}/{len(good)}",
    )
    assert not order_violations(receiver.successes("/skip"))

    # block: lane B flows; A and C stop behind their dead heads.
    async def heads_dead() -> bool:
        dead = await api.deliveries(block["id"], "dead")
        return {d["event_id"] for d in dead} == {ids[("A", 0)], ids[("C", 0)]}

    await eventually(heads_dead, 10, "the poison heads of the block destination did not die")
    await eventually(
        lambda: receiver.delivered_ids("/block") >= {ids[("B", 0)], ids[("B", 1)]},
        5,
        "lane B did not flow past the blocked lanes",
    )
    cpu_before = _cpu_s(proc)
    await asyncio.sleep(1.0)
    busy = _cpu_s(proc) - cpu_before
    assert busy < 0.25, f"{busy:.2f} CPU seconds in 1 s with only blocked lanes: spinning?"
    blocked = {ids[(k, n)] for k in "AC" for n in (1, 2)}
    sent_while_blocked = {h.webhook_id for h in receiver.on("/block")} & blocked
    assert not sent_while_blocked, (
        f"sent past a dead head under on_dead=block: {sent_while_blocked}"
    )
    states = {d["event_id"]: d["state"] for d in await api.deliveries(block["id"])}
    assert all(states[e] == "pending" for e in blocked), states

    # Purging A's dead head releases lane A (in order); C stays blocked.
    dead = {d["event_id"]: d["id"] for d in await api.deliveries(block["id"], "dead")}
    status, _ = await api.call("DELETE", f"/v1/deliveries/{dead[ids[('A', 0)]]}")
    assert status == 204
    status, _ = await api.call("GET", f"/v1/deliveries/{dead[ids[('A', 0)]]}")
    assert status == 404
    await eventually(
        lambda: receiver.delivered_ids("/block") >= {ids[("A", 1)], ids[("A", 2)]},
        5,
        "lane A did not resume after its dead head was purged",
    )
    assert not {h.webhook_id for h in receiver.on("/block")} & {ids[("C", 1)], ids[("C", 2)]}

    # Retrying C's dead head with the receiver fixed releases lane C, head first.
    receiver.set("/block", ok())
    status, body = await api.call("POST", f"/v1/deliveries/{dead[ids[('C', 0)]]}/retry")
    assert status == 202, body
    lane_c = {ids[("C", n)] for n in range(3)}
    await eventually(
        lambda: receiver.delivered_ids("/block") >= lane_c,
        5,
        "lane C did not resume after its dead head was retried",
    )
    first = receiver.successes("/block")
    assert [h.data["n"] for h in first if h.lane == "C"] == [0, 1, 2]
    assert [h.data["n"] for h in first if h.lane == "A"] == [1, 2]
    assert not order_violations(first)
    _no_bad_signatures(receiver)


@pytest.mark.parametrize("how", ["ids_reversed", "ids_shuffled", "replay"])
async def test_dead_letters_come_back_oldest_first(
    cluster: Cluster, receiver: Receiver, how: str
) -> None:
    """Five dead deliveries of one key, retried in bulk: the receiver sees them 1..5."""
    _, api = await cluster.start()
    dest = await api.create_destination(
        url=receiver.url("/again"),
        topics=["again.*"],
        on_dead="skip",
        retry={"max_attempts": 1, "initial_ms": 50},
    )
    receiver.set("/again", always(503), secret=dest["secret"])
    events = [(await api.publish("again.test", "u1", {"n": n}))["id"] for n in range(1, 6)]

    async def all_dead() -> bool:
        return len(await api.deliveries(dest["id"], "dead")) == 5

    await eventually(all_dead, 10, "the five deliveries did not die")
    dead = await api.deliveries(dest["id"], "dead")
    receiver.set("/again", ok())
    mark = len(receiver.hits)
    by_event = {d["event_id"]: d["id"] for d in dead}
    if how == "replay":
        status, body = await api.call(
            "POST", f"/v1/destinations/{dest['id']}/replay", {"state": "dead"}
        )
        assert (status, body) == (202, {"replayed": 5}), body
    else:
        ordered = [by_event[e] for e in events]
        ids = ordered[::-1] if how == "ids_reversed" else [ordered[i] for i in (3, 0, 4, 2, 1)]
        status, body = await api.call("POST", "/v1/deliveries/retry", {"ids": ids})
        assert status == 202 and body["retried"] == 5, body
    await eventually(
        lambda: len(receiver.hits) - mark >= 5, 10, "the retried deliveries did not arrive"
    )
    await asyncio.sleep(0.3)  # a duplicate would show up by now
    assert [h.data["n"] for h in receiver.hits[mark:]] == [1, 2, 3, 4, 5]
    _no_bad_signatures(receiver)


# ---------------------------------------------------------------------------- 5. Retry-After
async def test_retry_after_sets_the_next_delay_capped_by_max_ms(
    cluster: Cluster, receiver: Receiver
) -> None:
    _, api = await cluster.start()
    cases = {
        # path: (status, Retry-After, retry policy, (lowest, highest) gap in seconds)
        "/ra1": (429, "1", {"initial_ms": 50}, (0.95, 2.0)),
        "/ra503": (503, "1", {"initial_ms": 50}, (0.95, 2.0)),
        "/ra30": (429, "30", {"initial_ms": 50, "max_ms": 300, "jitter": 0.0}, (0.25, 1.5)),
    }
    for path, (status, after, retry, _) in cases.items():
        dest = await api.create_destination(
            url=receiver.url(path), topics=[f"ra.{path[1:]}"], retry=retry
        )
        receiver.set(path, fail_first(1, status, {"Retry-After": after}), secret=dest["secret"])
    for path in cases:
        await api.publish(f"ra.{path[1:]}", "k", {"key": "k", "n": 0})

    await eventually(
        lambda: all(len(receiver.successes(p)) == 1 for p in cases),
        6,
        lambda: {p: [(h.attempt, h.status) for h in receiver.on(p)] for p in cases},
    )
    for path, (status, _, _, (low, high)) in cases.items():
        first, second = receiver.on(path)
        assert (first.attempt, first.status) == (1, status)
        assert (second.attempt, second.status) == (2, 200)
        gap = second.at - first.at
        assert low <= gap < high, f"{path}: attempt 2 came {gap:.3f} s after attempt 1"
    _no_bad_signatures(receiver)


# ---------------------------------------------------------------------------- 6. rate limit
async def test_rate_limit_spreads_deliveries(cluster: Cluster, receiver: Receiver) -> None:
    _, api = await cluster.start()
    dest = await api.create_destination(
        url=receiver.url("/rl"), topics=["rl.*"], ordering="none", rate_limit_per_s=10
    )
    receiver.set("/rl", ok(), secret=dest["secret"])
    events = [
        {"topic": "rl.test", "key": f"k{i}", "payload": {"key": f"k{i}", "n": 0}} for i in range(40)
    ]
    ids = await api.publish_batch(events)

    await eventually(
        lambda: receiver.delivered_ids("/rl") >= set(ids),
        15,
        lambda: f"{len(receiver.delivered_ids('/rl'))}/40 arrived",
    )
    times = sorted(h.at for h in receiver.on("/rl"))
    assert len(times) == 40, f"{len(times)} requests for 40 events"
    span = times[-1] - times[0]
    assert span >= 39 / 10 * 0.85, f"40 deliveries at 10/s took only {span:.2f} s"
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 12, f"{busiest} deliveries in one second at a limit of 10/s"

    async def all_delivered_once() -> bool:
        got = await api.deliveries(dest["id"])
        return len(got) == 40 and all(
            d["state"] == "delivered" and d["attempt_count"] == 1 for d in got
        )

    await eventually(all_delivered_once, 5, "not every delivery ended delivered at attempt 1")
    _no_bad_signatures(receiver)
    print(f"rate limit: 40 deliveries over {span:.2f} s, busiest second {busiest}")


# ---------------------------------------------------------------------------- 7. pausing
async def test_410_gone_pauses_the_destination_until_resumed(
    cluster: Cluster, receiver: Receiver
) -> None:
    proc, api = await cluster.start()
    dest = await api.create_destination(
        url=receiver.url("/gone"),
        topics=["gone.*"],
        ordering="none",
        retry={"max_attempts": 10, "initial_ms": 50},
    )
    receiver.set("/gone", gone(), secret=dest["secret"])
    first = (await api.publish("gone.test", "k0", {"key": "k0", "n": 0}))["id"]

    async def paused() -> bool:
        return (await api.destination(dest["id"]))["state"] == "paused"

    await eventually(paused, 5, "a 410 did not pause the destination")
    shown = await api.destination(dest["id"])
    assert shown["paused_reason"], shown
    assert "410" in shown["paused_reason"], shown

    later = [
        (await api.publish("gone.test", f"k{i}", {"key": f"k{i}", "n": 0}))["id"]
        for i in range(1, 4)
    ]
    cpu_before = _cpu_s(proc)
    await asyncio.sleep(1.0)
    busy = _cpu_s(proc) - cpu_before
    assert busy < 0.25, f"{busy:.2f} CPU seconds in 1 s with only a paused destination"
    sent = {h.webhook_id for h in receiver.on("/gone")}
    assert sent == {first}, f"sent while paused: {sent - {first}}"
    states = {d["event_id"]: d["state"] for d in await api.deliveries(dest["id"])}
    assert all(states[e] == "pending" for e in later), states
    assert states[first] == "scheduled", states

    receiver.set("/gone", ok())
    status, body = await api.call("PATCH", f"/v1/destinations/{dest['id']}", {"enabled": True})
    assert status == 200, body
    assert body["state"] == "active" and body["paused_reason"] is None, body
    await eventually(
        lambda: receiver.delivered_ids("/gone") >= {first, *later},
        5,
        lambda: f"{len(receiver.delivered_ids('/gone'))}/4 arrived after resuming",
    )

    async def all_delivered() -> bool:
        return (await api.states(dest["id"])) == {"delivered": 4}

    await eventually(all_delivered, 5, "deliveries did not end delivered")
    _no_bad_signatures(receiver)


async def test_run_of_failures_pauses_and_alerts(cluster: Cluster, receiver: Receiver) -> None:
    _, api = await cluster.start(TIDINGS_PAUSE_AFTER_FAILURES="5")
    down = await api.create_destination(
        url=receiver.url("/down"),
        alert_url=receiver.url("/alerts-down"),
        topics=["down.*"],
        retry={"max_attempts": 50, "initial_ms": 50, "multiplier": 1.0},
    )
    doomed = await api.create_destination(
        url=receiver.url("/doomed"),
        alert_url=receiver.url("/alerts-doomed"),
        topics=["doomed.*"],
        ordering="none",
        retry={"max_attempts": 1},
    )
    receiver.set("/down", always(500), secret=down["secret"])
    receiver.set("/alerts-down", ok(), secret=down["secret"])
    receiver.set("/doomed", always(503), secret=doomed["secret"])
    receiver.set("/alerts-doomed", ok(), secret=doomed["secret"])

    await api.publish("down.test", "k", {"key": "k", "n": 0})

    async def paused() -> bool:
        return (await api.destination(down["id"]))["state"] == "paused"

    await eventually(paused, 5, lambda: f"not paused after {len(receiver.on('/down'))} failures")
    await asyncio.sleep(0.5)
    attempts = len(receiver.on("/down"))
    assert 5 <= attempts <= 6, f"paused after {attempts} failed attempts (threshold 5)"
    shown = await api.destination(down["id"])
    assert shown["paused_reason"], shown
    await eventually(
        lambda: any(h.ok for h in receiver.on("/alerts-down")),
        5,
        "no alert for the paused destination",
    )
    (alert,) = [h for h in receiver.on("/alerts-down") if h.ok]
    assert alert.body["type"] == "tidings.destination.paused", alert.body
    assert alert.data["destination_id"] == down["id"], alert.body
    assert alert.verified is True
    assert alert.data["reason"], alert.body

    events = [
        (await api.publish("doomed.test", f"k{i}", {"key": f"k{i}", "n": 0}))["id"]
        for i in range(2)
    ]

    async def both_dead() -> bool:
        return len(await api.deliveries(doomed["id"], "dead")) == 2

    await eventually(both_dead, 5, "max_attempts 1 deliveries did not die")
    dead_ids = {d["id"] for d in await api.deliveries(doomed["id"], "dead")}

    def alerted_ids() -> set[str]:
        return {
            d["id"]
            for h in receiver.on("/alerts-doomed")
            if h.ok and h.body["type"] == "tidings.deliveries.dead"
            for d in h.data["deliveries"]
        }

    await eventually(
        lambda: alerted_ids() == dead_ids,
        5,
        lambda: f"dead alerts listed {alerted_ids()}, dead are {dead_ids}",
    )
    for h in receiver.on("/alerts-doomed"):
        assert h.body["type"] == "tidings.deliveries.dead", h.body
        assert h.data["destination_id"] == doomed["id"], h.body
        assert all(d["status_code"] == 503 for d in h.data["deliveries"]), h.body
    assert {h.webhook_id for h in receiver.on("/doomed")} == set(events)

    # {"state": "active"} resumes the auto-paused destination; its event gets through.
    receiver.set("/down", ok())
    status, body = await api.call("PATCH", f"/v1/destinations/{down['id']}", {"state": "active"})
    assert status == 200 and body["state"] == "active", body
    await eventually(
        lambda: len(receiver.delivered_ids("/down")) == 1,
        5,
        "the resumed destination did not deliver",
    )
    _no_bad_signatures(receiver)
    print(
        f"auto-pause: API reason {shown['paused_reason']!r}, alert reason {alert.data['reason']!r}"
    )


# ---------------------------------------------------------------------------- 8. two workers
def _with_children(pid: int) -> list[int]:
    """`pid` and its child processes (its sender processes), from /proc."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return [pid, *children]


def _socket_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets process `pid` holds open (Linux /proc)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(match.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[9] in inodes:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


async def test_two_workers_share_one_store_without_overlap(
    cluster: Cluster, receiver: Receiver
) -> None:
    _, api = await cluster.start("api")
    workers = [await cluster.worker(), await cluster.worker()]
    # max_in_flight 2: one worker can hold at most two of the five lanes at once, so the
    # other always finds due heads and lanes hop between workers. (With the default 16,
    # the worker that finishes a head claims its successor at once, and one worker tends
    # to keep every lane.)
    dest = await api.create_destination(
        url=receiver.url("/lanes"), topics=["lanes.*"], max_in_flight=2
    )
    receiver.set("/lanes", ok(delay_s=0.02), secret=dest["secret"])
    keys = [f"k{i}" for i in range(5)]
    # One batch, key after key: the oldest due deliveries all belong to one key, so any
    # claim that ignored the lane rule would put several of that lane in flight at once.
    batch = [
        {"topic": "lanes.test", "key": k, "payload": {"key": k, "n": n}}
        for k in keys
        for n in range(60)
    ]
    published = await api.publish_batch(batch)

    await eventually(
        lambda: receiver.delivered_ids("/lanes") >= set(published),
        40,
        lambda: f"{len(receiver.delivered_ids('/lanes'))}/300 delivered",
    )
    concurrency = receiver.max_lane_concurrency("/lanes")
    assert concurrency == dict.fromkeys(keys, 1), f"a lane had overlapping requests: {concurrency}"
    hits = receiver.on("/lanes")
    assert len(hits) == 300, f"{len(hits) - 300} duplicate sends without any crash"
    first = receiver.successes("/lanes")
    assert not order_violations(first), order_violations(first)
    assert not overtakes(hits)

    async def all_delivered() -> bool:
        return len(await api.deliveries(dest["id"], "delivered")) == 300

    await eventually(all_delivered, 10, "not every delivery ended delivered", interval=0.2)
    _no_bad_signatures(receiver)

    # Who sent what: match the receiver's client ports to the open sockets of each worker
    # and its sender processes (the pooled connections are still open). Skipped where
    # /proc cannot tell.
    try:
        ports = {
            w.proc.pid: set().union(*(_socket_ports(p) for p in _with_children(w.proc.pid)))
            for w in workers
            if w.proc
        }
    except OSError:
        ports = {}
    by_worker = {pid: sum(1 for h in hits if h.peer_port in p) for pid, p in ports.items()}
    if sum(by_worker.values()) >= len(hits) // 2:
        assert all(n > 0 for n in by_worker.values()), f"one worker sent everything: {by_worker}"
    print(f"two workers: requests by worker pid {by_worker}")


async def test_max_in_flight_caps_concurrent_requests(cluster: Cluster, receiver: Receiver) -> None:
    """Deliveries claimed ahead wait for a free slot: the receiver never sees more than
    max_in_flight requests of one destination at once, and it does see that many."""
    _, api = await cluster.start("serve")
    dest = await api.create_destination(
        url=receiver.url("/capped"), topics=["capped.*"], max_in_flight=3
    )
    receiver.set("/capped", ok(delay_s=0.05), secret=dest["secret"])
    batch = [{"topic": "capped.e", "key": f"k{i}", "payload": {"n": i}} for i in range(40)]
    published = await api.publish_batch(batch)
    await eventually(
        lambda: receiver.delivered_ids("/capped") >= set(published),
        30,
        lambda: f"{len(receiver.delivered_ids('/capped'))}/40 delivered",
    )
    assert receiver.max_path_concurrency("/capped") == 3
    assert len(receiver.on("/capped")) == 40, "duplicate sends without any failure"


# ---------------------------------------------------------------------------- 10. the webhook
async def test_webhook_contract_and_secret_rotation(cluster: Cluster, receiver: Receiver) -> None:
    _, api = await cluster.start()
    dest = await api.create_destination(url=receiver.url("/contract"), topics=["contract.*"])
    old_secret = dest["secret"]
    receiver.set("/contract", ok(), secret=old_secret)
    payload = b'{"b" : 1,   "a":[1, 2 ,3],\n "s":"\\u00e9 x", "f": 1.50, "z": null}'
    raw = b'{"topic": "contract.made", "key": "k",  "payload": ' + payload + b"  }"
    status, ack = await api.call("POST", "/v1/events", data=raw)
    assert status == 202, ack

    await eventually(lambda: len(receiver.on("/contract")) >= 1, 5, "no webhook arrived")
    (hit,) = receiver.on("/contract")
    assert hit.ok
    assert hit.webhook_id == ack["id"]
    assert hit.attempt == 1
    assert hit.headers["content-type"].startswith("application/json")
    timestamp = int(hit.headers["webhook-timestamp"])
    assert abs(timestamp - time.time()) < 30, timestamp
    assert set(hit.body) == {"type", "timestamp", "data"}, hit.body
    assert hit.body["type"] == "contract.made"
    assert hit.body["timestamp"] == ack["received_at"]
    assert hit.data == json.loads(payload)
    assert payload in hit.raw, f"data was re-encoded: {hit.raw!r}"
    assert hit.raw.endswith(b'"data":' + payload + b"}"), hit.raw
    Webhook(old_secret).verify(hit.raw, hit.headers)
    assert len(hit.headers["webhook-signature"].split(" ")) == 1
    assert hit.verified is True

    status, rotated = await api.call("POST", f"/v1/destinations/{dest['id']}/rotate-secret")
    assert status == 200, rotated
    new_secret = rotated["secret"]
    assert new_secret != old_secret and new_secret.startswith("whsec_")
    receiver.set_secrets("/contract", old_secret, new_secret)
    second = await api.publish("contract.made", "k", {"key": "k", "n": 1})

    await eventually(lambda: len(receiver.on("/contract")) >= 2, 5, "no webhook after rotation")
    hit = receiver.on("/contract")[1]
    assert hit.webhook_id == second["id"]
    signatures = hit.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures), signatures
    Webhook(old_secret).verify(hit.raw, hit.headers)
    Webhook(new_secret).verify(hit.raw, hit.headers)
    _no_bad_signatures(receiver)


# ---------------------------------------------------------------------------- respec
async def test_switching_to_fifo_orders_the_backlog(cluster: Cluster, receiver: Receiver) -> None:
    _, api = await cluster.start()
    dest = await api.create_destination(
        url=receiver.url("/switch"), topics=["sw.*"], ordering="none"
    )
    receiver.set("/switch", ok(delay_s=0.05), secret=dest["secret"])
    status, body = await api.call("PATCH", f"/v1/destinations/{dest['id']}", {"state": "paused"})
    assert status == 200, body
    for n in range(10):  # a backlog, queued while the destination is paused
        await api.publish("sw.test", "K", {"key": "K", "n": n})
    status, body = await api.call(
        "PATCH", f"/v1/destinations/{dest['id']}", {"ordering": "fifo", "state": "active"}
    )
    assert status == 200 and body["ordering"] == "fifo" and body["state"] == "active", body
    await eventually(
        lambda: len(receiver.delivered_ids("/switch")) == 10,
        5,
        lambda: f"{len(receiver.delivered_ids('/switch'))}/10 delivered after the switch",
    )
    concurrency = receiver.max_lane_concurrency("/switch")
    assert concurrency == {"K": 1}, f"fifo lane K had {concurrency['K']} requests in flight at once"
