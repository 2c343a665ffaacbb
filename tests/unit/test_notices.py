"""Operator notices: the lines for dead letters, pauses and resumes, and their limit."""

from __future__ import annotations

import logging

import msgspec
import pytest

from tidings.model import Answer, AttemptResult, Completion, Destination, RetryPolicy, WebhookSpec
from tidings.notices import Notices

FIELDS = (
    "event",
    "destination_id",
    "destination_name",
    "event_id",
    "delivery_id",
    "attempt",
    "max_attempts",
    "status_code",
    "error",
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def of(self, event: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "event", None) == event]


@pytest.fixture
def lines() -> Lines:
    return Lines()


def make(
    lines: Lines, level: int = logging.INFO, limit: int = 10, window_s: float = 60
) -> tuple[Notices, Clock]:
    logger = logging.Logger("tidings.notices.test", level)
    logger.addHandler(lines)
    clock = Clock()
    return Notices(limit, window_s, clock=clock, logger=logger), clock


def dest(name: str | None = "billing", id: str = "dst_1", max_attempts: int = 5) -> Destination:
    return Destination(
        id=id,
        spec=WebhookSpec(
            topics=["a.*"],
            name=name,
            url="https://u:pw@example.com/hook?token=tdk_leak",
            retry=RetryPolicy(max_attempts=max_attempts),
        ),
        secrets=[],
        state="active",
        created_at=0,
        updated_at=0,
    )


def done(
    n: int = 5, status: int | None = 500, error: str | None = "HTTP 500", delivery: str = "dlv_1"
) -> Completion:
    return Completion(
        delivery_id=delivery,
        destination_id="dst_1",
        lane_key="k",
        owner="w",
        attempt=AttemptResult(
            at=0,
            outcome="http_error" if status else "timeout",
            error=error,
            answer=Answer(status, "secret answer"),
        ),
        state="dead",
        next_attempt_at=None,
        release_lane=True,
        failed=True,
        event_id="evt_1",
        attempt_number=n,
    )


def fields(r: logging.LogRecord) -> dict[str, object]:
    return {k: getattr(r, k) for k in FIELDS}


def test_dead_letter_line(lines: Lines) -> None:
    notices, _ = make(lines)
    notices.dead(dest(), done())
    (r,) = lines.records
    assert r.levelno == logging.WARNING
    assert r.getMessage() == (
        "delivery dead: destination billing (dst_1) event evt_1 delivery dlv_1 "
        "attempt 5/5: HTTP 500"
    )
    assert fields(r) == {
        "event": "delivery.dead",
        "destination_id": "dst_1",
        "destination_name": "billing",
        "event_id": "evt_1",
        "delivery_id": "dlv_1",
        "attempt": 5,
        "max_attempts": 5,
        "status_code": 500,
        "error": "HTTP 500",
    }
    text = r.getMessage() + repr(vars(r))
    for absent in ("example.com", "token", "pw", "secret answer"):
        assert absent not in text


def test_an_exception_is_the_error_and_an_unnamed_destination_shows_its_id(
    lines: Lines,
) -> None:
    notices, _ = make(lines)
    notices.dead(dest(name=None), done(n=3, status=None, error="timed out after 10 s"))
    (r,) = lines.records
    assert r.getMessage().startswith("delivery dead: destination dst_1 event evt_1")
    assert r.getMessage().endswith("attempt 3/5: timed out after 10 s")
    assert (r.status_code, r.destination_name) == (None, None)
    notices.dead(dest(), done(delivery="dlv_2", status=None, error="x" * 1000))
    assert len(lines.records[1].error) == 300


def test_pause_lines(lines: Lines) -> None:
    notices, _ = make(lines)
    notices.paused(dest(), "failures", "5 consecutive failed attempts", done(n=2))
    notices.paused(dest(), "gone", "the receiver answered 410 Gone", done(n=1, status=410))
    notices.paused(dest(), "api", "paused by PATCH")
    failures, gone, api = lines.of("destination.paused")
    assert failures.getMessage() == (
        "destination paused: destination billing (dst_1): 5 consecutive failed attempts; "
        "event evt_1 delivery dlv_1 attempt 2/5: HTTP 500"
    )
    assert (failures.levelno, failures.cause) == (logging.WARNING, "failures")
    assert (gone.cause, gone.status_code) == ("gone", 410)
    assert gone.levelno == logging.WARNING
    assert api.getMessage() == "destination paused: destination billing (dst_1): paused by PATCH"
    assert api.levelno == logging.INFO
    assert fields(api) == {
        "event": "destination.paused",
        "destination_id": "dst_1",
        "destination_name": "billing",
        **dict.fromkeys(FIELDS[3:]),
    }


def test_state_set_by_the_api(lines: Lines) -> None:
    notices, _ = make(lines)
    active = dest()
    paused = msgspec.structs.replace(active, state="paused", paused_reason="paused by PATCH")
    auto = msgspec.structs.replace(paused, paused_reason="5 consecutive failed attempts")
    notices.state_set(active, paused, "PATCH")
    notices.state_set(auto, active, "PATCH")
    notices.state_set(active, active, "PATCH")  # nothing changed: no line
    p, r = lines.records
    assert (p.event, p.reason) == ("destination.paused", "paused by PATCH")
    assert r.event == "destination.resumed" and r.levelno == logging.INFO
    assert r.getMessage() == (
        "destination resumed: destination billing (dst_1) by PATCH "
        "(it was paused: 5 consecutive failed attempts)"
    )
    assert r.reason == "5 consecutive failed attempts"


def test_a_flood_is_limited_per_destination_and_kind_then_summed_up(lines: Lines) -> None:
    notices, clock = make(lines, limit=3, window_s=60)
    for i in range(4210 + 3):
        notices.dead(dest(), done(delivery=f"dlv_{i}"))
        clock.now += 0.001
    notices.dead(dest(id="dst_2", name="other"), done())  # another destination: its own limit
    notices.paused(dest(), "gone", "410")  # another kind: its own limit
    assert len(lines.of("delivery.dead")) == 4
    assert len(lines.of("destination.paused")) == 1
    notices.flush()
    assert lines.of("log.summary") == []  # not a window yet
    clock.now += 60
    notices.flush()
    (summary,) = lines.of("log.summary")
    assert summary.getMessage() == (
        "destination billing (dst_1): 4,210 more dead letters in the last 64 s, "
        "not logged one by one"
    )
    assert summary.levelno == logging.WARNING
    assert {k: getattr(summary, k) for k in ("of", "count", "destination_id")} == {
        "of": "delivery.dead",
        "count": 4210,
        "destination_id": "dst_1",
    }
    notices.flush(everything=True)
    assert len(lines.of("log.summary")) == 1  # nothing more was held back
    notices.dead(dest(), done())  # a window after the first lines: written again
    assert len(lines.of("delivery.dead")) == 5


def test_flush_everything_writes_what_is_held_at_once(lines: Lines) -> None:
    notices, _ = make(lines, limit=1)
    for _ in range(3):
        notices.resumed(dest(), "PATCH", None)
    notices.flush(everything=True)
    (summary,) = lines.of("log.summary")
    assert summary.levelno == logging.INFO
    assert "2 more resumes in the last 1 s" in summary.getMessage()


def test_a_disabled_level_costs_no_line_and_no_count(lines: Lines) -> None:
    notices, clock = make(lines, level=logging.ERROR, limit=1)
    for _ in range(5):
        notices.dead(dest(), done())
    clock.now += 120
    notices.flush(everything=True)
    assert lines.records == []
