"""policy.inbox: offsets handed to an append's recipients."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidings.policy.inbox import (
    ack_level,
    assign_offsets,
    count_messages,
    messages_by_user,
    offsets_from,
    recipients_of,
    trim_from,
)

users = st.sampled_from(["a", "b", "c", "d"])


@given(st.lists(st.lists(users, max_size=6), max_size=20), st.integers(0, 1000))
def test_offsets_are_contiguous_per_user_and_end_at_top(raw: list[list[str]], base: int) -> None:
    per_event = [recipients_of(r) for r in raw]
    counts = count_messages(per_event)
    tops = {u: base + n for u, n in counts.items()}
    got = assign_offsets(per_event, counts, tops)
    assert [[u for u, _ in row] for row in got] == per_event
    for user, n in counts.items():
        mine = [pos for row in got for u, pos in row if u == user]
        assert mine == list(range(base + 1, base + n + 1))


@given(st.lists(st.lists(users, max_size=6), max_size=20), st.integers(0, 1000))
def test_messages_by_user_place_each_message_where_assign_offsets_does(
    raw: list[list[str]], base: int
) -> None:
    per_event = [recipients_of(r) for r in raw]
    counts = count_messages(per_event)
    tops = {u: base + n for u, n in counts.items()}
    distinct, by_user = messages_by_user(raw)
    assert distinct == per_event
    assert {u: len(events) for u, events in by_user.items()} == counts
    # what tidings_append writes: user u's k-th message (event order) at top - n + k
    placed = {
        (n, u): tops[u] - len(events) + k
        for u, events in by_user.items()
        for k, n in enumerate(events, 1)
    }
    expected = {
        (n, u): pos
        for n, row in enumerate(assign_offsets(per_event, counts, tops), 1)
        for u, pos in row
    }
    assert placed == expected
    for events in by_user.values():
        assert events == sorted(set(events))
    first = {u: tops[u] - n + 1 for u, n in counts.items()}
    assert offsets_from(per_event, first) == assign_offsets(per_event, counts, tops)


def test_recipients_of_keeps_first_mentions() -> None:
    assert recipients_of(["b", "a", "b"]) == ["b", "a"]


def test_trim_and_ack() -> None:
    assert trim_from(3, 1, 3) is None
    assert trim_from(4, 1, 3) == 2
    assert trim_from(10, 8, 3) is None
    assert ack_level(2, 1, 5) == 2
    assert ack_level(2, 9, 5) == 5
    assert ack_level(0, 3, 5) == 3
