"""TIDINGS_ALLOW_LOOPBACK_TARGETS end to end: a real `tidings serve` (webhooks sent from
the worker process itself, or from a sender process) and a real receiver (the `receiver`
fixture of conftest.py): it takes and delivers destinations on
127.0.0.1 and localhost, refuses private ones at creation, refuses at send time a
non-loopback target that got into the store some other way, and says first thing in its
log that the switch is on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import TidingsProcess
from tests.e2e.receiver import Receiver, TidingsApi, eventually, ok

pytestmark = pytest.mark.e2e

FAST_ENV = {"TIDINGS_LEASE_MARGIN_MS": "500", "TIDINGS_POLL_INTERVAL_MS": "100"}
LOOPBACK_LINE = (
    "loopback targets allowed (TIDINGS_ALLOW_LOOPBACK_TARGETS=1): webhooks may reach "
    "127.0.0.0/8 and ::1 on this host; for development only"
)


class Serve:
    """`tidings serve` processes on one database, one after the other."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[TidingsProcess] = []
        self.apis: list[TidingsApi] = []

    async def start(self, **env: str) -> tuple[TidingsProcess, TidingsApi]:
        proc = TidingsProcess(
            self.workdir,
            f"sqlite:///{self.workdir / 'tidings.db'}",
            extra_env={**FAST_ENV, **env},
            separate_stderr=True,
        )
        self.procs.append(proc)
        await asyncio.to_thread(proc.start)
        api = TidingsApi(proc.url)
        self.apis.append(api)
        return proc, api

    async def close(self) -> None:
        for api in self.apis:
            await api.close()
        for proc in self.procs:
            proc.kill()
            if proc.starts:  # shown by pytest only when the test failed
                lines = proc.output().splitlines()
                print(f"--- {proc.stderr_path.name} (last 30 lines)", *lines[-30:], sep="\n")


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    s = Serve(tmp_path)
    try:
        yield s
    finally:
        await s.close()


def log_entries(proc: TidingsProcess) -> list[dict[str, Any]]:
    out = []
    for line in proc.stderr_path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


@pytest.mark.parametrize("senders", ["0", "1"])
async def test_loopback_targets_are_taken_and_delivered(
    serve: Serve, receiver: Receiver, senders: str
) -> None:
    proc, api = await serve.start(
        TIDINGS_ALLOW_LOOPBACK_TARGETS="1", TIDINGS_SENDER_PROCESSES=senders
    )
    first = log_entries(proc)[0]
    assert (first["level"], first["msg"]) == ("warning", LOOPBACK_LINE), first

    literal = await api.create_destination(
        name="literal", url=receiver.url("/literal"), topics=["t.*"]
    )
    named = await api.create_destination(
        name="named", url=f"http://localhost:{receiver.port}/named", topics=["t.*"]
    )
    receiver.set("/literal", ok(), secret=literal["secret"])
    receiver.set("/named", ok(), secret=named["secret"])

    for url in ("http://10.0.0.1/hook", "http://192.168.1.1:8080/hook"):
        status, body = await api.call(
            "POST", "/v1/destinations", {"kind": "webhook", "url": url, "topics": ["t.*"]}
        )
        assert status == 400, body
        assert (body["error"]["code"], body["error"]["field"]) == ("forbidden_target", "url")
        assert "TIDINGS_ALLOW_PRIVATE_TARGETS=1" in body["error"]["message"], body
        status, body = await api.call("PATCH", f"/v1/destinations/{literal['id']}", {"url": url})
        assert status == 400, body
        assert body["error"]["code"] == "forbidden_target", body

    event = (await api.publish("t.created", "k1", {"n": 1}))["id"]

    def delivered() -> bool:
        paths = {hit.path for hit in receiver.hits if hit.webhook_id == event and hit.ok}
        return paths == {"/literal", "/named"}

    await eventually(delivered, 15, lambda: f"hits: {receiver.hits}")
    assert all(hit.verified for hit in receiver.hits), receiver.hits
    for destination in (literal, named):
        (delivery,) = await api.deliveries(destination["id"])
        assert delivery["state"] == "delivered", delivery


@pytest.mark.parametrize("senders", ["0", "1"])
async def test_the_send_time_guard_keeps_to_loopback(
    serve: Serve, receiver: Receiver, senders: str
) -> None:
    """A destination stored while TIDINGS_ALLOW_PRIVATE_TARGETS was on is refused at send
    time once only loopback is allowed. 0.0.0.0 is the target: it would reach this host
    (Linux connects it to the local host) if the guard let it through."""
    proc, api = await serve.start(TIDINGS_ALLOW_PRIVATE_TARGETS="1")
    unspecified = await api.create_destination(
        name="unspecified",
        url=f"http://0.0.0.0:{receiver.port}/unspecified",
        topics=["t.*"],
        retry={"max_attempts": 1},
    )
    fine = await api.create_destination(name="fine", url=receiver.url("/fine"), topics=["t.*"])
    receiver.set("/fine", ok(), secret=fine["secret"])
    first = log_entries(proc)[0]
    assert first["msg"].startswith("private targets allowed (TIDINGS_ALLOW_PRIVATE_TARGETS=1)")
    assert not any(e["msg"] == LOOPBACK_LINE for e in log_entries(proc))
    await asyncio.to_thread(proc.stop)

    proc, api = await serve.start(
        TIDINGS_ALLOW_LOOPBACK_TARGETS="1", TIDINGS_SENDER_PROCESSES=senders
    )
    event = (await api.publish("t.created", "k1", {"n": 1}))["id"]

    async def settled() -> bool:
        return [d["state"] for d in await api.deliveries(unspecified["id"])] == ["dead"]

    await eventually(settled, 15, "the delivery to 0.0.0.0 did not die")
    await eventually(
        lambda: any(hit.path == "/fine" and hit.webhook_id == event for hit in receiver.hits),
        15,
        lambda: f"hits: {receiver.hits}",
    )
    (dead,) = await api.deliveries(unspecified["id"])
    shown = await api.delivery(dead["id"])
    assert shown["last_error"] == (
        "refusing to connect to 0.0.0.0 (unspecified); set TIDINGS_ALLOW_PRIVATE_TARGETS=1 to allow"
    ), shown
    assert [hit.path for hit in receiver.hits] == ["/fine"]
