"""The retry state machine: every outcome, attempt number and dead-lane policy."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.model import Answer, AttemptResult, RetryPolicy
from tidings.policy.outcome import decide

NOW = 1_700_000_000_000_000
POLICY = RetryPolicy(max_attempts=4, initial_ms=100, multiplier=2.0, max_ms=1_000, jitter=0.0)
FAILURES = ["http_error", "rejected", "timeout", "connection_error", "refused", "lost"]


def result(
    outcome: str, status: int | None = None, retry_after_ms: int | None = None
) -> AttemptResult:
    return AttemptResult(
        at=NOW,
        outcome=outcome,
        retry_after_ms=retry_after_ms,  # type: ignore[arg-type]
        answer=Answer(status),
        gone="the receiver answered 410 Gone" if status == 410 else None,
    )


@pytest.mark.parametrize("attempt", [1, 2, 4, 9])
@pytest.mark.parametrize("on_dead", ["skip", "block"])
def test_success_delivers_and_frees_the_lane(attempt: int, on_dead: str) -> None:
    t = decide(result("delivered", 200), attempt, POLICY, on_dead, NOW)  # type: ignore[arg-type]
    assert (t.state, t.next_attempt_at, t.release_lane, t.failed) == (
        "delivered",
        None,
        True,
        False,
    )
    assert not t.disable_destination


@pytest.mark.parametrize("outcome", FAILURES)
@pytest.mark.parametrize(("attempt", "delay_ms"), [(1, 100), (2, 200), (3, 400)])
def test_failure_before_the_last_attempt_schedules_a_retry(
    outcome: str, attempt: int, delay_ms: int
) -> None:
    t = decide(result(outcome, 500), attempt, POLICY, "skip", NOW)
    assert t.state == "scheduled"
    assert t.next_attempt_at == NOW + delay_ms * 1000
    assert (t.release_lane, t.failed) == (False, True)


@pytest.mark.parametrize("outcome", FAILURES)
def test_last_failure_is_dead_and_the_lane_policy_decides(outcome: str) -> None:
    skip = decide(result(outcome), 4, POLICY, "skip", NOW)
    block = decide(result(outcome), 4, POLICY, "block", NOW)
    assert (skip.state, skip.release_lane, skip.failed) == ("dead", True, True)
    assert (block.state, block.release_lane, block.failed) == ("dead", False, True)
    assert skip.next_attempt_at is None and block.next_attempt_at is None


def test_attempts_past_the_limit_are_dead_too() -> None:
    # A lease lost on the last attempt arrives with attempts == max (or more after a change).
    assert decide(result("lost"), 7, POLICY, "skip", NOW).state == "dead"


def test_retry_after_replaces_the_backoff_and_is_capped() -> None:
    t = decide(result("http_error", 429, retry_after_ms=700), 1, POLICY, "skip", NOW)
    assert t.next_attempt_at == NOW + 700_000
    t = decide(result("http_error", 503, retry_after_ms=60_000), 1, POLICY, "skip", NOW)
    assert t.next_attempt_at == NOW + POLICY.max_ms * 1000


def test_gone_disables_the_destination_and_keeps_the_delivery() -> None:
    t = decide(result("http_error", 410), 1, POLICY, "skip", NOW)
    assert (t.state, t.disable_destination, t.failed) == ("scheduled", True, True)
    t = decide(result("http_error", 410), 4, POLICY, "block", NOW)
    assert (t.state, t.disable_destination, t.release_lane) == ("dead", True, False)


def test_policy_reads_the_gone_signal_not_a_status_code() -> None:
    bare_410 = AttemptResult(at=NOW, outcome="http_error", answer=Answer(410))
    assert decide(bare_410, 1, POLICY, "skip", NOW).disable_destination is False
    bus_gone = AttemptResult(at=NOW, outcome="rejected", gone="the stream was deleted")
    assert decide(bus_gone, 1, POLICY, "skip", NOW).disable_destination is True


@given(
    attempt=st.integers(1, 50),
    max_attempts=st.integers(1, 20),
    jitter=st.floats(0, 1),
    seed=st.integers(0, 2**32),
    outcome=st.sampled_from(FAILURES),
)
def test_failures_are_scheduled_within_the_cap_or_dead(
    attempt: int, max_attempts: int, jitter: float, seed: int, outcome: str
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, initial_ms=50, max_ms=5_000, jitter=jitter)
    t = decide(result(outcome), attempt, policy, "skip", NOW, random.Random(seed))
    if attempt >= max_attempts:
        assert t.state == "dead" and t.next_attempt_at is None
    else:
        assert t.state == "scheduled"
        assert t.next_attempt_at is not None
        assert NOW <= t.next_attempt_at <= NOW + policy.max_ms * 1000
    assert t.failed
    assert not t.release_lane or t.state == "dead"
