"""policy.inbox: offsets handed to an append's recipients."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tidings.policy.inbox import (
    ack_level,
    assign_offsets,
    count_messages,
    messages_by_user,
    offsets_from,
    place_messages,
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


@given(st.lists(st.lists(users, max_size=6), max_size=20), st.integers(0, 1000))
def test_place_messages_groups_by_user_what_offsets_from_hands_out(
    raw: list[list[str]], base: int
) -> None:
    per_event = [recipients_of(r) for r in raw]
    counts = count_messages(per_event)
    first = {u: base + 1 for u in counts}
    seqs = [100 + 3 * n for n in range(len(per_event))]  # any ascending seqs
    offsets, by_user = place_messages(per_event, seqs, first)
    assert offsets == offsets_from(per_event, first)
    rows = sorted((seq, u, pos) for seq, row in zip(seqs, offsets, strict=True) for u, pos in row)
    assert sorted((seq, u, pos) for u, mine in by_user.items() for pos, seq in mine.items()) == rows
    assert list(by_user) == list(counts)  # first mention first, every user once
    for u, mine in by_user.items():
        assert list(mine) == list(range(base + 1, base + counts[u] + 1))


def test_recipients_of_keeps_first_mentions() -> None:
    assert recipients_of(["b", "a", "b"]) == ["b", "a"]


def test_trim_and_ack() -> None:
    assert trim_from(3, 1, 3) is None
    assert trim_from(4, 1, 3) == 2
    assert trim_from(10, 8, 3) is None
    assert ack_level(2, 1, 5) == 2
    assert ack_level(2, 9, 5) == 5
    assert ack_level(0, 3, 5) == 3


def test_offsets_are_wanted_for_the_users_some_open_hub_reaches() -> None:
    """Store.offsets_wanted over the hubs registered with want_offsets: everyone with
    none registered, nobody while no hub can reach anyone, else the union of the
    reaching hubs' users (everyone as soon as one of them is a relay)."""
    from types import SimpleNamespace

    from tidings.policy.inbox import everyone
    from tidings.store.base import Store

    store: Any = SimpleNamespace(_offsets_wanted=())
    assert Store.offsets_wanted(store) is everyone
    open_a, open_b = [False], [False]
    users_a, users_b = {"a"}, {"b"}
    Store.want_offsets(store, lambda: open_a[0], lambda: users_a.__contains__)
    Store.want_offsets(store, lambda: open_b[0], lambda: users_b.__contains__)
    assert Store.offsets_wanted(store) is None
    open_a[0] = True
    only_a = Store.offsets_wanted(store)
    assert only_a is not None and only_a("a") and not only_a("b")
    open_b[0] = True
    both = Store.offsets_wanted(store)
    assert both is not None and both("a") and both("b") and not both("c")
    Store.want_offsets(store, lambda: True, lambda: everyone)  # a relay's hub
    assert Store.offsets_wanted(store) is everyone
