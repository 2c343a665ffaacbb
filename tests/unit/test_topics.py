"""Unit tests for tidings.policy.topics: topic and pattern syntax, matching, prefixes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.policy.topics import (
    MAX_TOPIC_LENGTH,
    PATTERN_SCHEMA,
    TOPIC_SCHEMA,
    matches,
    pattern_error,
    pattern_prefix,
    topic_error,
)

FAST = settings(max_examples=200, deadline=None)

# A small alphabet so that generated topics and patterns often share segments.
segments = st.sampled_from(["a", "b", "ab", "order", "orders", "x-1", "_", "B2"])
topics = st.lists(segments, min_size=1, max_size=4).map(".".join)
patterns = st.one_of(
    topics,
    topics.map(lambda t: t + ".*"),
    st.just("*"),
)
# Any valid topic at all, not just from the small alphabet.
SEGMENT_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
any_segment = st.text(alphabet=SEGMENT_CHARS, min_size=1, max_size=8)
any_topic = st.lists(any_segment, min_size=1, max_size=6).map(".".join)


def reference_matches(pattern: str, topic: str) -> bool:
    """Segment-wise model of the documented matching rules."""
    if pattern == "*":
        return True
    p, t = pattern.split("."), topic.split(".")
    if p[-1] == "*":
        head = p[:-1]
        return len(t) > len(head) and t[: len(head)] == head
    return p == t


# --- topic_error -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        "a",
        "order",
        "order.created",
        "order.created.v2",
        "billing.invoice-paid",
        "snake_case.UPPER.123",
        "-._",
        "a" * MAX_TOPIC_LENGTH,
    ],
)
def test_valid_topics(topic: str) -> None:
    assert topic_error(topic) is None


@pytest.mark.parametrize(
    "topic",
    [
        "a..b",
        ".a",
        "a.",
        ".",
        "a b",
        "a/b",
        "a:b",
        "a.*",
        "*",
        "order.*.x",
        "caf\u00e9",
        "a\n",
        "\na",
        "a\t",
        "a.b\n",
        " a",
    ],
)
def test_invalid_topic_syntax(topic: str) -> None:
    error = topic_error(topic)
    assert error is not None
    assert "segments" in error


def test_empty_topic() -> None:
    assert topic_error("") == "must not be empty"


def test_too_long_topic() -> None:
    error = topic_error("a" * (MAX_TOPIC_LENGTH + 1))
    assert error is not None
    assert str(MAX_TOPIC_LENGTH) in error


# --- pattern_error -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    ["*", "a", "a.*", "order.*", "order.created", "a.b.c.*", "x-1_y.*", "a" * MAX_TOPIC_LENGTH],
)
def test_valid_patterns(pattern: str) -> None:
    assert pattern_error(pattern) is None


@pytest.mark.parametrize(
    "pattern",
    [
        "**",
        ".*",
        "*.a",
        "a*",
        "a.*.b",
        "a.**",
        "a.b*",
        "a..*",
        "a.*.*",
        "a.",
        ".a",
        "a b.*",
        "a.*\n",
        "*\n",
        "a\n",
        "#",
        "a.>",
    ],
)
def test_invalid_patterns(pattern: str) -> None:
    error = pattern_error(pattern)
    assert error is not None
    assert "wildcard" in error


def test_empty_pattern() -> None:
    assert pattern_error("") == "must not be empty"


def test_too_long_pattern() -> None:
    error = pattern_error("a" * (MAX_TOPIC_LENGTH - 1) + ".*")
    assert error is not None
    assert str(MAX_TOPIC_LENGTH) in error
    assert pattern_error("a" * (MAX_TOPIC_LENGTH - 2) + ".*") is None


@FAST
@given(any_topic)
def test_every_valid_topic_is_a_valid_exact_pattern(topic: str) -> None:
    if len(topic) <= MAX_TOPIC_LENGTH:
        assert topic_error(topic) is None
        assert pattern_error(topic) is None
        assert matches(topic, topic)


@FAST
@given(any_topic)
def test_topic_with_wildcard_is_valid_pattern_but_not_topic(topic: str) -> None:
    pattern = topic + ".*"
    assert pattern_error(pattern) is None
    assert topic_error(pattern) is not None


# --- matches -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("order.*", "order.a", True),
        ("order.*", "order.a.b", True),
        ("order.*", "order.created.v2", True),
        ("order.*", "order", False),
        ("order.*", "orders.a", False),
        ("order.*", "orders", False),
        ("order.*", "xorder.a", False),
        ("order.*", "a.order.b", False),
        ("order.a.*", "order.a.b", True),
        ("order.a.*", "order.a", False),
        ("order.a.*", "order.ab.c", False),
        ("order.a.*", "order.b.c", False),
        ("*", "a", True),
        ("*", "order.created.v2", True),
        ("order", "order", True),
        ("order", "order.a", False),
        ("order", "orders", False),
        ("order.created", "order.created", True),
        ("order.created", "order.Created", False),
        ("Order.*", "order.a", False),
    ],
)
def test_matches_examples(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


@FAST
@given(any_topic)
def test_star_matches_everything(topic: str) -> None:
    assert matches("*", topic)


@FAST
@given(patterns, topics)
def test_matches_agrees_with_reference_model(pattern: str, topic: str) -> None:
    assert pattern_error(pattern) is None
    assert topic_error(topic) is None
    assert matches(pattern, topic) is reference_matches(pattern, topic)


@FAST
@given(st.lists(any_segment, min_size=1, max_size=3), st.lists(any_segment, max_size=3))
def test_wildcard_matches_exactly_the_longer_topics_under_it(
    head: list[str], tail: list[str]
) -> None:
    pattern = ".".join(head) + ".*"
    topic = ".".join(head + tail)
    assert matches(pattern, topic) is bool(tail)


# --- pattern_prefix ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*", ""),
        ("order.*", "order."),
        ("a.b.*", "a.b."),
        ("order", None),
        ("order.created", None),
    ],
)
def test_pattern_prefix(pattern: str, expected: str | None) -> None:
    assert pattern_prefix(pattern) == expected


@FAST
@given(patterns, topics)
def test_pattern_prefix_is_consistent_with_matches(pattern: str, topic: str) -> None:
    prefix = pattern_prefix(pattern)
    if prefix is None:
        assert matches(pattern, topic) is (pattern == topic)
    else:
        # A wildcard matches exactly the topics that start with its literal prefix and
        # are longer than it (a valid topic never ends in '.').
        assert matches(pattern, topic) is (topic.startswith(prefix) and topic != prefix)


_TOPICISH = st.text(alphabet="ab_-.*9Z é\n", max_size=12)


@given(_TOPICISH)
def test_the_documents_topic_patterns_say_what_the_validators_check(text: str) -> None:
    # Python's `$` also matches before a final newline where ECMA-262's does not; the
    # document's regexes are read by JSON Schema tools, so compare on newline-free text.
    if "\n" in text:
        return
    assert (re.search(TOPIC_SCHEMA, text) is not None) == (topic_error(text) is None)
    assert (re.search(PATTERN_SCHEMA, text) is not None) == (pattern_error(text) is None)
