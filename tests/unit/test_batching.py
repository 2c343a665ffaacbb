"""policy.batching: which jobs a group takes, and the answers going back to their jobs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.policy.batching import group_limit, split_answers, take_group


def test_take_group_examples() -> None:
    assert take_group([], 10) == 0
    assert take_group([50], 10) == 1  # too big: alone
    assert take_group([1, 1, 1], 10) == 3
    assert take_group([4, 4, 4], 10) == 2
    assert take_group([4, 20, 1], 10) == 1  # arrival order: the big one waits its turn


@given(st.lists(st.integers(1, 50), max_size=30), st.integers(1, 100))
def test_take_group_takes_a_prefix_within_the_limit(sizes: list[int], limit: int) -> None:
    n = take_group(sizes, limit)
    if not sizes:
        assert n == 0
        return
    assert 1 <= n <= len(sizes)
    assert n == 1 or sum(sizes[:n]) <= limit
    if n < len(sizes):
        assert sum(sizes[: n + 1]) > limit  # it stops only when the next does not fit


@given(st.lists(st.integers(0, 8), max_size=20))
def test_split_answers_hands_each_job_its_slice(sizes: list[int]) -> None:
    answers = list(range(sum(sizes)))
    parts = split_answers(sizes, answers)
    assert [len(p) for p in parts] == sizes
    assert [a for p in parts for a in p] == answers


def test_split_answers_refuses_a_count_mismatch() -> None:
    with pytest.raises(ValueError):
        split_answers([1, 2], [0, 1])


def test_group_limit_shares_a_burst_over_the_free_groups() -> None:
    assert group_limit(400, 3, 64, 1000) == 134  # 4 batches of 100: three groups
    assert [take_group([100] * 4, group_limit(400, 3, 64, 1000))] == [1]
    assert group_limit(32, 3, 64, 1000) == 64  # 32 single events: one group
    assert group_limit(5000, 3, 64, 1000) == 1000  # never above the cap
    assert group_limit(400, 1, 64, 1000) == 1000  # the last free group takes what fits
    assert group_limit(400, 0, 64, 1000) == 1000


@given(st.integers(0, 10_000), st.integers(0, 5), st.integers(1, 100), st.integers(100, 2000))
def test_group_limit_stays_within_floor_and_cap(
    waiting: int, free: int, floor: int, cap: int
) -> None:
    limit = group_limit(waiting, free, floor, cap)
    assert floor <= limit <= cap
    if free > 1 and limit > floor:
        assert limit * free >= min(waiting, cap * free)  # the shares cover the burst
