"""The log line limiter: a sliding window per key, held-back counts, summaries, forgetting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.policy.loglimit import Held, LineLimiter


def test_the_first_lines_pass_then_the_rest_are_held() -> None:
    lim: LineLimiter[str] = LineLimiter(limit=3, window_s=60)
    assert [lim.admit("a", 0.0 + i) for i in range(5)] == [True, True, True, False, False]
    assert lim.due(30.0) == []  # not a window since the first was held back (t=3)
    assert lim.due(63.0) == [Held("a", 2, 3.0, 63.0)]
    assert lim.due(64.0) == []  # counted once


def test_the_window_slides_line_by_line() -> None:
    lim: LineLimiter[str] = LineLimiter(limit=2, window_s=10)
    assert lim.admit("a", 0.0) and lim.admit("a", 5.0)
    assert not lim.admit("a", 9.999)
    assert lim.admit("a", 10.0)  # the line at 0 has left the window
    assert not lim.admit("a", 14.9)  # 5 and 10 are in it
    assert lim.admit("a", 15.0)
    assert not lim.admit("a", 15.0)


def test_keys_are_independent() -> None:
    lim: LineLimiter[tuple[str, str]] = LineLimiter(limit=1, window_s=60)
    assert lim.admit(("dead", "d1"), 0.0)
    assert lim.admit(("dead", "d2"), 0.0)
    assert lim.admit(("paused", "d1"), 0.0)
    assert not lim.admit(("dead", "d1"), 1.0)
    assert lim.due(61.0) == [Held(("dead", "d1"), 1, 1.0, 61.0)]


def test_a_flood_writes_limit_lines_and_one_summary_a_window() -> None:
    lim: LineLimiter[str] = LineLimiter(limit=10, window_s=60)
    written = 0
    summaries: list[Held[str]] = []
    for tick in range(3 * 60 * 100):  # 100 lines a second for three minutes
        now = tick / 100
        written += lim.admit("billing", now)
        if tick % 100 == 0:  # the caller looks for due summaries once a second
            summaries += lim.due(now)
    summaries += lim.due(180.0, everything=True)
    assert written == 30  # 10 in each minute
    assert len(summaries) == 3
    assert written + sum(s.count for s in summaries) == 3 * 60 * 100
    assert all(s.until - s.since <= 61 for s in summaries)


def test_everything_flushes_counts_before_their_window() -> None:
    lim: LineLimiter[str] = LineLimiter(limit=1, window_s=60)
    lim.admit("a", 0.0)
    lim.admit("a", 1.0)
    lim.admit("a", 2.0)
    assert lim.due(5.0, everything=True) == [Held("a", 2, 1.0, 5.0)]
    assert lim.due(100.0, everything=True) == []


def test_quiet_keys_are_forgotten_held_ones_are_not() -> None:
    lim: LineLimiter[str] = LineLimiter(limit=1, window_s=10)
    lim.admit("quiet", 0.0)
    lim.admit("busy", 0.0)
    lim.admit("busy", 5.0)  # held: due at 15
    assert len(lim) == 2
    assert lim.due(10.0) == []
    assert len(lim) == 1  # "quiet" had no line for a window and nothing held
    assert lim.due(15.0) == [Held("busy", 1, 5.0, 15.0)]
    assert lim.due(21.0) == []  # swept once a window: "busy" last wrote at 0
    assert len(lim) == 0
    assert lim.admit("busy", 21.0)  # a forgotten key starts afresh


@pytest.mark.parametrize(("limit", "window"), [(0, 60.0), (-1, 60.0), (1, 0.0), (1, -1.0)])
def test_bad_parameters(limit: int, window: float) -> None:
    with pytest.raises(ValueError):
        LineLimiter(limit=limit, window_s=window)


_steps = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.floats(min_value=0, max_value=5, allow_nan=False),  # seconds since the last step
        st.booleans(),  # look for due summaries after this step
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(steps=_steps, limit=st.integers(1, 5), window=st.sampled_from([1.0, 2.5, 10.0]))
def test_against_a_model(steps: list[tuple[str, float, bool]], limit: int, window: float) -> None:
    """A line passes exactly when fewer than `limit` lines of its key passed in the window
    before it; every line held back is counted in exactly one summary; a summary comes no
    sooner than a window after the first line it counts was held back."""
    lim: LineLimiter[str] = LineLimiter(limit=limit, window_s=window)
    passed: dict[str, list[float]] = {}
    held: dict[str, list[float]] = {}
    summed: dict[str, int] = {}
    now = 0.0
    for key, dt, look in steps:
        now += dt
        recent = [t for t in passed.get(key, []) if now - t < window]
        expected = len(recent) < limit
        assert lim.admit(key, now) is expected
        (passed if expected else held).setdefault(key, []).append(now)
        if look:
            for h in lim.due(now):
                assert h.until - h.since >= window
                assert h.since in held[h.key]
                summed[h.key] = summed.get(h.key, 0) + h.count
    for h in lim.due(now, everything=True):
        summed[h.key] = summed.get(h.key, 0) + h.count
    assert summed == {k: len(v) for k, v in held.items()}
    for times in passed.values():  # never more than `limit` in any window
        for i, t in enumerate(times):
            assert sum(1 for u in times[i:] if u - t < window) <= limit
