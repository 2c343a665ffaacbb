"""tidings.policy.consuming: handler routing by topic pattern, a failure's error text,
the causation/correlation stamps of follow-up events, leases due for extension."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.policy.consuming import MAX_ERROR, Cause, Routes, due_for_extension, error_text
from tidings.policy.topics import matches

SEGMENT = st.text("abcxyz_-0", min_size=1, max_size=4)
TOPIC = st.lists(SEGMENT, min_size=1, max_size=3).map(".".join)


def test_first_matching_handler_in_order_wins() -> None:
    routes: Routes[str] = Routes()
    routes.add("order.created", "exact")
    routes.add("order.*", "orders")
    routes.add("*", "rest")
    assert routes.find("order.created") == "exact"
    assert routes.find("order.paid.v2") == "orders"
    assert routes.find("order") == "rest"
    assert routes.find("user.renamed") == "rest"
    assert routes.patterns == ["order.created", "order.*", "*"]


def test_no_match_is_none_and_bad_patterns_are_refused() -> None:
    routes: Routes[str] = Routes()
    routes.add("order.*", "orders")
    assert routes.find("orders.x") is None
    for bad in ("", "order.**", "*.created", "order..x"):
        with pytest.raises(ValueError, match="pattern"):
            routes.add(bad, "x")


@given(st.lists(st.one_of(TOPIC, TOPIC.map(lambda t: t + ".*"), st.just("*"))), TOPIC)
def test_routes_agree_with_destination_matching(patterns: list[str], topic: str) -> None:
    routes: Routes[int] = Routes()
    for i, pattern in enumerate(patterns):
        routes.add(pattern, i)
    expected = next((i for i, p in enumerate(patterns) if matches(p, topic)), None)
    assert routes.find(topic) == expected
    assert routes.find(topic) == expected  # cached the same


def test_error_text_is_the_tracebacks_last_line() -> None:
    try:
        raise KeyError("user-1")
    except KeyError as exc:
        assert error_text(exc) == "KeyError: 'user-1'"
    assert error_text(RuntimeError()) == "RuntimeError"
    assert error_text(ValueError("a\nb")) == "ValueError: a\nb" or "ValueError" in error_text(
        ValueError("a\nb")
    )
    assert len(error_text(ValueError("x" * 10_000))) == MAX_ERROR


def test_stamps_of_follow_up_events() -> None:
    root = Cause("evt_1", None)
    assert root.stamps(None, None) == ("evt_1", "evt_1")  # the root is its own correlation
    child = Cause("evt_2", "order-7")
    assert child.stamps(None, None) == ("evt_2", "order-7")
    assert child.stamps(None, "mine") == ("evt_2", "mine")
    assert child.stamps("evt_2", None) == ("evt_2", "order-7")
    # Another cause given: the server finds its correlation, not the handled event's.
    assert child.stamps("evt_9", None) == ("evt_9", None)


def test_due_for_extension_after_a_third_of_the_lease() -> None:
    held = [("a", 0.0), ("b", 5.0), ("c", 9.0)]
    assert due_for_extension(held, now=10.0, lease_s=15.0) == ["a", "b"]
    assert due_for_extension(held, now=10.0, lease_s=60.0) == []
