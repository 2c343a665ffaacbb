"""policy.backoff: exponential schedule, jitter bounds, caps, Retry-After."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.model import RetryPolicy
from tidings.policy.backoff import (
    base_delay_ms,
    is_exhausted,
    next_delay_ms,
    parse_retry_after,
)

policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 100),
    initial_ms=st.integers(1, 86_400_000),
    multiplier=st.floats(1.0, 10.0),
    max_ms=st.integers(1, 604_800_000),
    jitter=st.floats(0.0, 1.0),
)


def test_api_defaults_give_the_documented_schedule() -> None:
    policy = RetryPolicy(jitter=0.0)
    assert [next_delay_ms(policy, n) for n in range(1, 8)] == [
        500, 1000, 2000, 4000, 8000, 16000, 32000,
    ]  # fmt: skip
    assert next_delay_ms(policy, 30) == 600_000  # capped by max_ms


@given(policies, st.integers(1, 500), st.integers(0, 2**32))
def test_delay_stays_within_jitter_band_and_cap(policy: RetryPolicy, n: int, seed: int) -> None:
    delay = next_delay_ms(policy, n, random.Random(seed))
    base = base_delay_ms(policy, n)
    assert 0 <= delay <= policy.max_ms
    assert base * (1 - policy.jitter) - 1 <= delay <= base * (1 + policy.jitter) + 1


@given(policies, st.integers(1, 200))
def test_base_delay_never_decreases(policy: RetryPolicy, n: int) -> None:
    assert base_delay_ms(policy, n) <= base_delay_ms(policy, n + 1)


def test_base_delay_rejects_zero_failures() -> None:
    with pytest.raises(ValueError):
        base_delay_ms(RetryPolicy(), 0)


def test_retry_after_replaces_the_delay_but_is_capped() -> None:
    policy = RetryPolicy(max_ms=10_000)
    assert next_delay_ms(policy, 1, retry_after_ms=3_000) == 3_000
    assert next_delay_ms(policy, 1, retry_after_ms=60_000) == 10_000
    assert next_delay_ms(policy, 1, retry_after_ms=-5) == 0


def test_exhaustion_counts_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert not is_exhausted(policy, 2)
    assert is_exhausted(policy, 3)


def test_parse_retry_after() -> None:
    assert parse_retry_after(None, 0) is None
    assert parse_retry_after("7", 0) == 7000
    assert parse_retry_after(" 0 ", 0) == 0
    assert parse_retry_after("garbage", 0) is None
    # An HTTP date 90 s after "now".
    now = 1_700_000_000.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:50 GMT", now) == 90_000
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0  # in the past
