"""What an operator tailing the log sees: dead letters, pauses, 410s and resumes.

A real `tidings serve` (its stderr in a file of its own) and a real receiver answering
500, 503 or 410. The tests read the lines the process wrote: one per dead letter, pause
and resume, with the destination, event, delivery, attempt and error as JSON fields
(`TIDINGS_LOG_FORMAT=json`) or in one readable sentence (`text`); a flood of dead letters
from one destination writes at most TIDINGS_LOG_NOTICE_LIMIT lines a window and a summary;
and no line ever holds a signing secret, the API key, an Authorization header or a
destination URL's query token, though all of them are in play.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import API_KEY, TidingsProcess
from tests.e2e.receiver import Receiver, TidingsApi, always, eventually, gone, ok

pytestmark = pytest.mark.e2e

FAST_ENV = {
    "TIDINGS_ALLOW_PRIVATE_TARGETS": "1",
    "TIDINGS_LEASE_MARGIN_MS": "500",
    "TIDINGS_POLL_INTERVAL_MS": "200",
}
TOKEN = "qtok" + secrets.token_hex(12)  # in destination URLs' query strings


class Serve:
    """One `tidings serve` and its API client; stopped (SIGTERM) or killed at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: TidingsProcess | None = None
        self.api: TidingsApi | None = None

    async def start(self, **env: str) -> tuple[TidingsProcess, TidingsApi]:
        self.proc = TidingsProcess(
            self.workdir,
            f"sqlite:///{self.workdir / 'tidings.db'}",
            extra_env={**FAST_ENV, **env},
            separate_stderr=True,
        )
        await asyncio.to_thread(self.proc.start)
        self.api = TidingsApi(self.proc.url)
        return self.proc, self.api

    async def close(self) -> None:
        if self.api is not None:
            await self.api.close()
        if self.proc is not None:
            self.proc.kill()
            if self.proc.starts:  # shown by pytest only when the test failed
                lines = self.proc.output().splitlines()
                print(f"--- {self.proc.stderr_path.name} (last 30 lines)", *lines[-30:], sep="\n")


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    s = Serve(tmp_path)
    try:
        yield s
    finally:
        await s.close()


def stderr(proc: TidingsProcess) -> str:
    return proc.stderr_path.read_text(errors="replace")


def entries(proc: TidingsProcess, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
    """The JSON lines of its stderr (`event` and `match`: only those with these fields)."""
    out = []
    for line in stderr(proc).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if event is not None and entry.get("event") != event:
            continue
        if all(entry.get(k) == v for k, v in match.items()):
            out.append(entry)
    return out


def assert_no_secret(text: str, destinations: list[dict[str, Any]]) -> None:
    forbidden = [API_KEY, TOKEN, "Bearer"] + [d["secret"] for d in destinations]
    for secret in forbidden:
        assert secret not in text, f"{secret!r} is in the log"
    assert "whsec_" not in text.replace("whsec_***", "")
    assert "tdk_" not in text.replace("tdk_***", "")


async def paused(api: TidingsApi, destination_id: str) -> bool:
    return (await api.destination(destination_id))["state"] == "paused"


# ---------------------------------------------------------------------------- JSON
async def test_json_lines_for_a_dead_letter_pauses_a_410_and_resumes(
    serve: Serve, receiver: Receiver
) -> None:
    proc, api = await serve.start(TIDINGS_LOG_FORMAT="json", TIDINGS_PAUSE_AFTER_FAILURES="3")
    billing = await api.create_destination(
        name="billing",
        url=receiver.url("/billing") + f"?token={TOKEN}",
        alert_url=receiver.url("/alerts") + f"?token={TOKEN}",
        topics=["billing.*"],
        retry={"max_attempts": 2, "initial_ms": 50},
    )
    down = await api.create_destination(
        name="down",
        url=receiver.url("/down") + f"?token={TOKEN}",
        topics=["down.*"],
        retry={"max_attempts": 50, "initial_ms": 50, "multiplier": 1.0},
    )
    gone_dest = await api.create_destination(
        name="gone", url=receiver.url("/gone"), topics=["gone.*"], retry={"initial_ms": 50}
    )
    receiver.set("/billing", always(500), secret=billing["secret"])
    receiver.set("/alerts", always(500), secret=billing["secret"])
    receiver.set("/down", always(503), secret=down["secret"])
    receiver.set("/gone", gone(), secret=gone_dest["secret"])
    e_billing = (await api.publish("billing.test", "k", {"n": 1}))["id"]
    e_down = (await api.publish("down.test", "k", {"n": 2}))["id"]
    e_gone = (await api.publish("gone.test", "k", {"n": 3}))["id"]

    # A dead letter: its line names the delivery the API shows dead, at attempt 2/2.
    await eventually(
        lambda: bool(entries(proc, "delivery.dead", destination_id=billing["id"])),
        10,
        lambda: f"no delivery.dead line:\n{stderr(proc)[-3000:]}",
    )
    (dead,) = await api.deliveries(billing["id"], "dead")
    (line,) = entries(proc, "delivery.dead")
    assert line["level"] == "warning" and line["logger"] == "tidings.notices", line
    assert {
        k: line[k]
        for k in (
            "destination_id",
            "destination_name",
            "event_id",
            "delivery_id",
            "attempt",
            "max_attempts",
            "status_code",
            "error",
        )
    } == {
        "destination_id": billing["id"],
        "destination_name": "billing",
        "event_id": e_billing,
        "delivery_id": dead["id"],
        "attempt": 2,
        "max_attempts": 2,
        "status_code": 500,
        "error": "HTTP 500",
    }, line
    assert line["msg"] == (
        f"delivery dead: destination billing ({billing['id']}) event {e_billing} "
        f"delivery {dead['id']} attempt 2/2: HTTP 500"
    )

    # A run of 3 failures pauses "down"; a 410 pauses "gone": one line each, with the
    # attempt that did it.
    await eventually(lambda: paused(api, down["id"]), 10, "down was not paused")
    await eventually(lambda: paused(api, gone_dest["id"]), 10, "gone was not paused")
    await eventually(
        lambda: len(entries(proc, "destination.paused")) == 2,
        5,
        lambda: f"pause lines: {entries(proc, 'destination.paused')}",
    )
    (auto,) = entries(proc, "destination.paused", destination_id=down["id"])
    shown = await api.destination(down["id"])
    assert (auto["level"], auto["cause"], auto["reason"]) == (
        "warning",
        "failures",
        shown["paused_reason"],
    ), auto
    assert auto["reason"] == "3 consecutive failed attempts", auto
    assert (auto["destination_name"], auto["event_id"], auto["status_code"]) == (
        "down",
        e_down,
        503,
    ), auto
    assert auto["attempt"] == 3 and auto["delivery_id"].startswith("dlv_"), auto
    (g,) = entries(proc, "destination.paused", destination_id=gone_dest["id"])
    (gone_delivery,) = await api.deliveries(gone_dest["id"])
    assert {k: g[k] for k in ("level", "cause", "status_code", "attempt", "event_id")} == {
        "level": "warning",
        "cause": "gone",
        "status_code": 410,
        "attempt": 1,
        "event_id": e_gone,
    }, g
    assert g["delivery_id"] == gone_delivery["id"] and "410" in g["reason"], g

    # By hand: a PATCH pause (INFO, no attempt), then resumes by state and by enabled.
    status, _ = await api.call("PATCH", f"/v1/destinations/{billing['id']}", {"state": "paused"})
    assert status == 200
    receiver.set("/down", ok())
    receiver.set("/gone", ok())
    status, _ = await api.call("PATCH", f"/v1/destinations/{down['id']}", {"state": "active"})
    assert status == 200
    status, _ = await api.call("PATCH", f"/v1/destinations/{gone_dest['id']}", {"enabled": True})
    assert status == 200
    (manual,) = entries(proc, "destination.paused", destination_id=billing["id"])
    assert (manual["level"], manual["cause"], manual["reason"]) == (
        "info",
        "api",
        "paused by PATCH",
    ), manual
    assert manual["event_id"] is None and manual["attempt"] is None, manual
    resumed = {e["destination_id"]: e for e in entries(proc, "destination.resumed")}
    assert set(resumed) == {down["id"], gone_dest["id"]}, resumed
    assert resumed[down["id"]]["level"] == "info"
    assert resumed[down["id"]]["reason"] == "3 consecutive failed attempts"
    assert resumed[gone_dest["id"]]["reason"] == "the receiver answered 410 Gone"
    assert resumed[down["id"]]["msg"] == (
        f"destination resumed: destination down ({down['id']}) by PATCH "
        "(it was paused: 3 consecutive failed attempts)"
    )
    await eventually(lambda: receiver.delivered_ids("/down") == {e_down}, 5, "down resumed?")

    # The alert for the dead letter fails (its URL carries the token): its line shows the
    # URL without the query.
    await eventually(
        lambda: any("alert tidings.deliveries.dead" in e["msg"] for e in entries(proc)),
        10,
        "no line for the failed alert",
    )
    (alert,) = [e for e in entries(proc) if "alert tidings.deliveries.dead" in e["msg"]]
    assert f"{receiver.url('/alerts')}?*** failed" in alert["msg"], alert

    # One line per happening, and no secret anywhere.
    assert proc.stop() == 0
    assert len(entries(proc, "delivery.dead")) == 1
    assert len(entries(proc, "destination.paused")) == 3
    assert_no_secret(stderr(proc), [billing, down, gone_dest])
    assert proc.log_path.read_text() == ""  # stdout: nothing (the API key was given)


# ---------------------------------------------------------------------------- text
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


async def test_text_lines_read_as_sentences(serve: Serve, receiver: Receiver) -> None:
    proc, api = await serve.start(TIDINGS_LOG_FORMAT="text")
    billing = await api.create_destination(
        name="billing",
        url=receiver.url("/billing") + f"?token={TOKEN}",
        topics=["billing.*"],
        retry={"max_attempts": 2, "initial_ms": 50},
    )
    gone_dest = await api.create_destination(url=receiver.url("/gone"), topics=["gone.*"])
    receiver.set("/billing", always(500), secret=billing["secret"])
    receiver.set("/gone", gone(), secret=gone_dest["secret"])
    e_billing = (await api.publish("billing.test", "k", {"n": 1}))["id"]
    e_gone = (await api.publish("gone.test", "k", {"n": 1}))["id"]

    dead_line = re.compile(
        rf"^{STAMP} WARNING tidings\.notices: delivery dead: destination billing "
        rf"\({billing['id']}\) event {e_billing} delivery (dlv_\w+) attempt 2/2: HTTP 500$",
        re.MULTILINE,
    )
    await eventually(
        lambda: dead_line.search(stderr(proc)) is not None,
        10,
        lambda: f"no dead-letter line in:\n{stderr(proc)[-3000:]}",
    )
    (dead,) = await api.deliveries(billing["id"], "dead")
    match = dead_line.search(stderr(proc))
    assert match is not None and match[1] == dead["id"]

    # An unnamed destination is named by its id.
    gone_line = re.compile(
        rf"^{STAMP} WARNING tidings\.notices: destination paused: destination "
        rf"{gone_dest['id']}: the receiver answered 410 Gone; event {e_gone} "
        rf"delivery dlv_\w+ attempt 1/8: HTTP 410$",
        re.MULTILINE,
    )
    await eventually(
        lambda: gone_line.search(stderr(proc)) is not None,
        10,
        lambda: f"no 410 line in:\n{stderr(proc)[-3000:]}",
    )
    status, _ = await api.call("PATCH", f"/v1/destinations/{gone_dest['id']}", {"enabled": True})
    assert status == 200
    assert re.search(
        rf"^{STAMP} INFO tidings\.notices: destination resumed: destination {gone_dest['id']} "
        r"by PATCH \(it was paused: the receiver answered 410 Gone\)$",
        stderr(proc),
        re.MULTILINE,
    ), stderr(proc)[-2000:]
    assert proc.stop() == 0
    text = stderr(proc)
    assert not any(line.startswith("{") for line in text.splitlines()), "JSON in text mode"
    assert_no_secret(text, [billing, gone_dest])


# ---------------------------------------------------------------------------- the limit
def _ts(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()


async def test_a_flood_of_dead_letters_is_limited_then_summed_up(
    serve: Serve, receiver: Receiver
) -> None:
    window, limit, n = 3, 10, 60
    proc, api = await serve.start(
        TIDINGS_LOG_FORMAT="json", TIDINGS_LOG_NOTICE_WINDOW_S=str(window)
    )  # TIDINGS_LOG_NOTICE_LIMIT: the default, 10
    flood = await api.create_destination(
        name="flood",
        url=receiver.url("/flood"),
        topics=["flood.*"],
        ordering="none",
        retry={"max_attempts": 1},
    )
    quiet = await api.create_destination(
        name="quiet", url=receiver.url("/quiet"), topics=["quiet.*"], retry={"max_attempts": 1}
    )
    receiver.set("/flood", always(500), secret=flood["secret"])
    receiver.set("/quiet", always(500), secret=quiet["secret"])
    await api.publish_batch(
        [{"topic": "flood.test", "key": f"k{i}", "payload": {"n": i}} for i in range(n)]
    )

    async def all_dead() -> bool:
        return len(await api.deliveries(flood["id"], "dead")) == n

    await eventually(all_dead, 15, "the flood did not die")
    dead_ids = {d["id"] for d in await api.deliveries(flood["id"], "dead")}
    # Another destination is not held back by the flood's limit.
    await api.publish("quiet.test", "k", {"n": 0})
    await eventually(
        lambda: len(entries(proc, "delivery.dead", destination_id=quiet["id"])) == 1,
        5,
        "the quiet destination's dead letter was not logged",
    )
    await eventually(
        lambda: bool(entries(proc, "log.summary", destination_id=flood["id"])),
        window + 5,
        lambda: f"no summary line:\n{stderr(proc)[-3000:]}",
    )
    assert proc.stop() == 0  # what is still held back is summed up at shutdown

    lines = entries(proc, "delivery.dead", destination_id=flood["id"])
    summaries = entries(proc, "log.summary", destination_id=flood["id"])
    assert len(lines) >= limit, "fewer lines than the limit were written"
    assert {e["delivery_id"] for e in lines} <= dead_ids
    assert len({e["delivery_id"] for e in lines}) == len(lines), "a dead letter logged twice"
    assert len(lines) + sum(s["count"] for s in summaries) == n, (len(lines), summaries)
    # Never more than `limit` lines of this destination in any window.
    times = sorted(_ts(e) for e in lines)
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u - t < window - 0.05) <= limit, times
    first = summaries[0]
    assert first["level"] == "warning" and first["of"] == "delivery.dead", first
    assert first["destination_name"] == "flood", first
    assert re.fullmatch(
        rf"destination flood \({flood['id']}\): {first['count']:,} more dead letters in the "
        r"last \d+ s, not logged one by one",
        first["msg"],
    ), first
    print(f"flood of {n}: {len(lines)} lines, summaries {[s['count'] for s in summaries]}")
