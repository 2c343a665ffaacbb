"""Unit tests for tidings.timeutil: µs integers and their ISO-8601 wire form."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.timeutil import US, now_us, parse_iso, to_iso

FAST = settings(max_examples=300, deadline=None)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_US = -62135596800 * US  # 0001-01-01T00:00:00Z
MAX_US = 253402300799 * US + 999_999  # 9999-12-31T23:59:59.999999Z
ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")

all_us = st.integers(min_value=MIN_US, max_value=MAX_US)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def exact_us(dt: datetime) -> int:
    """µs since the epoch by timedelta arithmetic (no floats)."""
    aware = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    return (aware - EPOCH) // timedelta(microseconds=1)


def test_us_constant() -> None:
    assert US == 1_000_000


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (1700000000123456, "2023-11-14T22:13:20.123456Z"),
        (0, "1970-01-01T00:00:00.000000Z"),
        (1, "1970-01-01T00:00:00.000001Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (999_999, "1970-01-01T00:00:00.999999Z"),
        (951782400 * US, "2000-02-29T00:00:00.000000Z"),
        (MIN_US, "0001-01-01T00:00:00.000000Z"),
        (MAX_US, "9999-12-31T23:59:59.999999Z"),
        (-30000000000 * US, "1019-05-04T18:40:00.000000Z"),
        (-50000000000 * US, "0385-07-25T07:06:40.000000Z"),
    ],
)
def test_to_iso_examples(us: int, text: str) -> None:
    assert to_iso(us) == text
    assert parse_iso(text) == us


@FAST
@given(all_us)
def test_round_trip_is_exact(us: int) -> None:
    text = to_iso(us)
    assert ISO_RE.match(text), text
    assert parse_iso(text) == us


@FAST
@given(all_us, all_us)
def test_to_iso_sorts_like_the_integers(a: int, b: int) -> None:
    assert (to_iso(a) < to_iso(b)) == (a < b)


@FAST
@given(all_us)
def test_to_iso_agrees_with_datetime(us: int) -> None:
    expected = datetime(1, 1, 1, tzinfo=UTC) + timedelta(microseconds=us - MIN_US)
    assert datetime.fromisoformat(to_iso(us)) == expected


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("2023-11-14T22:13:20.123456Z", 1700000000123456),
        ("2023-11-14T22:13:20.123456+00:00", 1700000000123456),
        ("2023-11-14T23:13:20.123456+01:00", 1700000000123456),
        ("2023-11-14T16:43:20.123456-05:30", 1700000000123456),
        ("2023-11-14T22:13:20.123456", 1700000000123456),  # naive means UTC
        ("2023-11-14T22:13:20Z", 1700000000 * US),
        ("2023-11-14T22:13:20.123Z", 1700000000123000),
        ("2023-11-14 22:13:20Z", 1700000000 * US),
        ("2023-11-14", 1699920000 * US),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("1969-12-31T23:59:59.999999Z", -1),
    ],
)
def test_parse_iso_examples(text: str, us: int) -> None:
    assert parse_iso(text) == us


@pytest.mark.parametrize(
    "text",
    ["", "yesterday", "2023-13-01T00:00:00Z", "2023-11-14T25:00:00Z", "2023-11-14T22:13:20ZZ"],
)
def test_parse_iso_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso(text)


@FAST
@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    offsets,
)
def test_parse_iso_with_offsets_is_exact(naive: datetime, tz: timezone) -> None:
    aware = naive.replace(tzinfo=tz)
    assert parse_iso(aware.isoformat()) == exact_us(aware)


@FAST
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_naive_means_utc(naive: datetime) -> None:
    expected = exact_us(naive.replace(tzinfo=UTC))
    assert parse_iso(naive.isoformat()) == expected
    assert parse_iso(naive.isoformat() + "Z") == expected
    assert parse_iso(naive.isoformat() + "+00:00") == expected


@FAST
@given(all_us, offsets)
def test_same_instant_in_any_offset(us: int, tz: timezone) -> None:
    instant = datetime.fromisoformat(to_iso(us))
    try:
        shifted = instant.astimezone(tz)
    except OverflowError:
        return  # the shifted wall time leaves datetime's year range
    assert parse_iso(shifted.isoformat()) == us


def test_now_us_reads_the_clock() -> None:
    before = time.time_ns() // 1_000
    value = now_us()
    after = time.time_ns() // 1_000
    assert isinstance(value, int)
    assert before <= value <= after
