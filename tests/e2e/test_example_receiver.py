"""The quick start, end to end: a real `tidings serve` delivers to examples/receiver.py,
which prints each event whose signature verifies and answers 401 to any other."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import TidingsProcess, free_port, sdk
from tidings import Delivery

pytestmark = pytest.mark.e2e

RECEIVER = Path(__file__).resolve().parents[2] / "examples" / "receiver.py"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def tidings(tmp_path: Path) -> Iterator[TidingsProcess]:
    proc = TidingsProcess(
        tmp_path,
        f"sqlite:///{tmp_path / 'quick.db'}",
        extra_env={"TIDINGS_ALLOW_PRIVATE_TARGETS": "1"},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_the_receiver_prints_verified_events_and_refuses_others(
    tidings: TidingsProcess, tmp_path: Path
) -> None:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/hook"
    client = sdk(tidings.url)
    demo = client.create_destination("webhook", ["order.*"], name="demo", url=hook)
    assert demo.secret.startswith("whsec_")
    out_path, err_path = tmp_path / "receiver.out", tmp_path / "receiver.err"
    receiver = subprocess.Popen(
        [sys.executable, str(RECEIVER), "--port", str(port)],
        env={**os.environ, "WEBHOOK_SECRET": demo.secret},
        stdout=out_path.open("wb"),
        stderr=err_path.open("wb"),
    )
    try:
        wait_for("the receiver to listen", lambda: "listening" in out_path.read_text())
        first = client.publish("order.created", {"total": 12}, key="user-1")
        second = client.publish("order.paid", {"total": 12, "paid": True}, key="user-1")

        def verified() -> list[str]:
            return [x for x in out_path.read_text().splitlines() if x.startswith("verified")]

        wait_for("two verified events", lambda: len(verified()) == 2)
        assert verified() == [
            f'verified order.created {first.id} attempt 1: {{"total": 12}}',
            f'verified order.paid {second.id} attempt 1: {{"total": 12, "paid": true}}',
        ]

        # A destination whose secret the receiver does not hold: refused, so retried.
        client.create_destination(
            "webhook", ["audit.*"], name="stranger", url=hook, retry={"max_attempts": 1}
        )
        forged = client.publish("audit.login", {})

        def dead() -> list[Delivery]:
            return client.list_deliveries(destination_id="stranger", state="dead").items

        wait_for("the refused delivery to go dead", lambda: len(dead()) == 1)
        delivery = client.get_delivery(dead()[0].id)
        assert delivery.event_id == forged.id and delivery.attempts is not None
        assert [a.status_code for a in delivery.attempts] == [401]
        assert "rejected /hook: no signature matches" in err_path.read_text()
        assert len(verified()) == 2  # nothing unverified was printed as an event
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
