"""The pure parts of `tidings bench` (tidings.loadgen): percentiles and the summary."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from tidings.loadgen import LoadPlan, LoadResult, percentile, summary


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 99.5) == 100
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([7.0], 99) == 7
    assert percentile([], 50) == 0


@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200),
    st.floats(0, 100),
    st.floats(0, 100),
)
def test_percentile_is_a_member_and_monotone(values: list[float], q1: float, q2: float) -> None:
    values.sort()
    low, high = sorted((q1, q2))
    assert percentile(values, low) in values
    assert percentile(values, low) <= percentile(values, high)
    assert percentile(values, 100) == values[-1]


def test_summary() -> None:
    plan = LoadPlan(events=10, concurrency=2, batch_size=5, payload_bytes=64, topic="t", keys=3)
    result = LoadResult(accepted=5, elapsed_s=0.5, failures=Counter({503: 1}))
    result.latencies_ms.append(3.0)
    result.first_error = "503: busy"
    assert summary(plan, result) == {
        "events": 5,
        "events_per_s": 10.0,
        "elapsed_s": 0.5,
        "requests": 1,
        "batch_size": 5,
        "concurrency": 2,
        "latency_ms": {"p50": 3.0, "p95": 3.0, "p99": 3.0, "max": 3.0},
        "failed_requests": {"503": 1},
        "first_error": "503: busy",
        "stopped": None,
    }
    empty = summary(plan, LoadResult())
    assert empty["events_per_s"] == 0.0 and empty["latency_ms"] == {
        "p50": 0.0,
        "p95": 0.0,
        "p99": 0.0,
        "max": 0.0,
    }
