"""Token buckets: refill, burst, waiting, giving back, and the long-run rate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.policy.ratelimit import TokenBucket, default_burst


def test_starts_full_and_refills_at_the_rate() -> None:
    b = TokenBucket(rate=10, burst=2, updated=0.0)
    assert b.available(0.0) == 2
    b.take(2, 0.0)
    assert b.available(0.0) == 0
    assert b.wait_s(0.0) == pytest.approx(0.1)
    assert b.available(0.05) == 0
    assert b.available(0.1) == 1
    assert b.available(10.0) == 2  # never above the burst


def test_take_more_than_available_is_an_error() -> None:
    b = TokenBucket(rate=1, burst=1, updated=0.0)
    b.take(1, 0.0)
    with pytest.raises(ValueError):
        b.take(1, 0.5)


def test_give_back_is_capped_by_the_burst() -> None:
    b = TokenBucket(rate=1, burst=3, updated=0.0)
    b.take(2, 0.0)
    b.give_back(5)
    assert b.available(0.0) == 3


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_bad_parameters(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst)


@pytest.mark.parametrize(("rate", "burst"), [(0.5, 1), (5, 1), (10, 1), (100, 10), (1000, 100)])
def test_default_burst_is_a_tenth_of_a_second(rate: float, burst: float) -> None:
    assert default_burst(rate) == burst


@given(
    rate=st.floats(0.5, 500),
    steps=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=200),
)
def test_never_more_than_burst_plus_rate_times_elapsed(rate: float, steps: list[float]) -> None:
    """Whatever the caller's timing, tokens taken over [0, t] <= burst + rate * t."""
    burst = default_burst(rate)
    b = TokenBucket(rate=rate, burst=burst, updated=0.0)
    now, taken = 0.0, 0
    for step in steps:
        now += step
        n = b.available(now)
        b.take(n, now)
        taken += n
        assert taken <= burst + rate * now + 1e-6
