"""Unit tests for tidings.ids: ULID encoding, monotonic factories and prefixed ids."""

from __future__ import annotations

import itertools
import re
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings import ids
from tidings.ids import (
    DELIVERY_PREFIX,
    DESTINATION_PREFIX,
    EVENT_PREFIX,
    MAX_MEMBERS,
    MEMBER_BITS,
    IdFactory,
    decode_ulid,
    encode_ulid,
    has_prefix_id,
    member_id,
)

TIME_MAX = (1 << 48) - 1
RANDOM_MAX = (1 << 80) - 1
ULID_RE = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
FAST = settings(max_examples=200, deadline=None)

ms_values = st.integers(min_value=0, max_value=TIME_MAX)
rand_values = st.integers(min_value=0, max_value=RANDOM_MAX)


def fixed_entropy(value: int):
    """An entropy source that always returns `value` as 10 big-endian bytes."""
    calls: list[int] = []

    def entropy(n: int) -> bytes:
        calls.append(n)
        return value.to_bytes(10, "big")

    entropy.calls = calls  # type: ignore[attr-defined]
    return entropy


class SteppingClock:
    """A clock that returns the given readings in turn (repeating the last)."""

    def __init__(self, readings: list[int]) -> None:
        self._readings = list(readings)
        self._i = 0

    def __call__(self) -> int:
        value = self._readings[min(self._i, len(self._readings) - 1)]
        self._i += 1
        return value


# --- encode / decode -------------------------------------------------------------------


def test_encode_extremes() -> None:
    assert encode_ulid(0, 0) == "0" * 26
    assert encode_ulid(TIME_MAX, RANDOM_MAX) == "7" + "Z" * 25
    assert encode_ulid(0, 1) == "0" * 25 + "1"
    assert encode_ulid(1, 0) == "0" * 9 + "1" + "0" * 16


def test_decode_known_vector_from_ulid_spec() -> None:
    # From the reference implementation's README: ulid(1469918176385) -> 01ARYZ6S41...
    ms, rand = decode_ulid("01ARYZ6S41TSV4RRFFQ69G5FAV")
    assert ms == 1469918176385
    assert encode_ulid(ms, rand) == "01ARYZ6S41TSV4RRFFQ69G5FAV"


@FAST
@given(ms_values, rand_values)
def test_round_trip(ms: int, rand: int) -> None:
    text = encode_ulid(ms, rand)
    assert len(text) == 26
    assert ULID_RE.match(text)
    assert decode_ulid(text) == (ms, rand)


@FAST
@given(ms_values, rand_values)
def test_decode_is_case_insensitive(ms: int, rand: int) -> None:
    assert decode_ulid(encode_ulid(ms, rand).lower()) == (ms, rand)


@FAST
@given(st.tuples(ms_values, rand_values), st.tuples(ms_values, rand_values))
def test_string_order_matches_numeric_order(a: tuple[int, int], b: tuple[int, int]) -> None:
    ea, eb = encode_ulid(*a), encode_ulid(*b)
    assert (ea < eb) == (a < b)
    assert (ea == eb) == (a == b)


@pytest.mark.parametrize(
    ("ms", "rand"),
    [(-1, 0), (TIME_MAX + 1, 0), (0, -1), (0, RANDOM_MAX + 1)],
)
def test_encode_rejects_out_of_range(ms: int, rand: int) -> None:
    with pytest.raises(ValueError):
        encode_ulid(ms, rand)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0" * 25,
        "0" * 27,
        "0" * 25 + "I",  # I, L, O, U are not in Crockford's alphabet
        "0" * 25 + "L",
        "0" * 25 + "O",
        "0" * 25 + "U",
        "0" * 25 + "-",
        "0" * 25 + " ",
        "8" + "0" * 25,  # 130 bits: overflows 128
        "Z" * 26,
        "0" * 25 + "\u017f",  # LATIN SMALL LETTER LONG S: upper() is "S"
        "0" * 25 + "\u00df",  # sharp s: upper() is "SS"
        "0" * 25 + "\u0131",  # dotless i
    ],
)
def test_decode_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        decode_ulid(text)


def test_decode_largest_valid() -> None:
    assert decode_ulid("7" + "Z" * 25) == (TIME_MAX, RANDOM_MAX)


# --- IdFactory ---------------------------------------------------------------------------


def test_factory_uses_clock_and_entropy() -> None:
    entropy = fixed_entropy(12345)
    factory = IdFactory(clock_ms=lambda: 1_700_000_000_000, entropy=entropy)
    assert decode_ulid(factory.ulid()) == (1_700_000_000_000, 12345 >> 1)
    assert entropy.calls == [10]


def test_factory_clears_top_random_bit() -> None:
    factory = IdFactory(clock_ms=lambda: 5, entropy=fixed_entropy(RANDOM_MAX))
    _, rand = decode_ulid(factory.ulid())
    assert rand == RANDOM_MAX >> 1
    assert rand < 1 << 79


def test_factory_counts_up_within_one_millisecond() -> None:
    entropy = fixed_entropy(1000 << 1)
    factory = IdFactory(clock_ms=lambda: 42, entropy=entropy)
    generated = [factory.ulid() for _ in range(100)]
    assert generated == sorted(generated)
    assert len(set(generated)) == 100
    decoded = [decode_ulid(u) for u in generated]
    assert decoded == [(42, 1000 + i) for i in range(100)]
    # Fresh randomness is drawn only once; later ids in the millisecond count up.
    assert entropy.calls == [10]


def test_factory_draws_fresh_randomness_when_the_clock_advances() -> None:
    values = iter([7 << 1, 3 << 1])

    def entropy(n: int) -> bytes:
        return next(values).to_bytes(n, "big")

    factory = IdFactory(clock_ms=SteppingClock([10, 11]), entropy=entropy)
    first, second = factory.ulid(), factory.ulid()
    assert decode_ulid(first) == (10, 7)
    assert decode_ulid(second) == (11, 3)
    assert first < second


def test_factory_keeps_order_when_the_clock_steps_back() -> None:
    factory = IdFactory(clock_ms=SteppingClock([100, 90, 50, 100, 101]), entropy=fixed_entropy(8))
    generated = [factory.ulid() for _ in range(5)]
    assert generated == sorted(generated)
    assert len(set(generated)) == 5
    decoded = [decode_ulid(u) for u in generated]
    # Behind or at the last millisecond: stay on it and count up.
    assert decoded[:4] == [(100, 4), (100, 5), (100, 6), (100, 7)]
    # Once the clock moves past, a fresh random part in the new millisecond.
    assert decoded[4] == (101, 4)


def test_factory_rolls_into_next_millisecond_when_random_part_is_exhausted() -> None:
    factory = IdFactory(clock_ms=lambda: 500, entropy=fixed_entropy(6))
    first = factory.ulid()
    # Reaching 2**80 increments for real is impossible; put the counter at its end.
    factory._last_rand = RANDOM_MAX
    second = factory.ulid()
    third = factory.ulid()
    assert decode_ulid(first) == (500, 3)
    assert decode_ulid(second) == (501, 3)
    assert decode_ulid(third) == (501, 4)
    assert first < second < third


@FAST
@given(st.lists(st.integers(min_value=0, max_value=1 << 44), min_size=1, max_size=60))
def test_factory_is_strictly_increasing_for_any_clock(readings: list[int]) -> None:
    factory = IdFactory(clock_ms=SteppingClock(readings))
    generated = [factory.ulid() for _ in readings]
    assert all(a < b for a, b in itertools.pairwise(generated))
    # The time part never goes below the highest reading seen so far.
    high = -1
    for reading, ulid in zip(readings, generated, strict=True):
        high = max(high, reading)
        assert decode_ulid(ulid)[0] == high


def test_factory_default_clock_is_wall_clock_ms() -> None:
    before = time.time_ns() // 1_000_000
    ms, _ = decode_ulid(IdFactory().ulid())
    after = time.time_ns() // 1_000_000
    assert before <= ms <= after


@pytest.mark.parametrize("prefix", [EVENT_PREFIX, DELIVERY_PREFIX, DESTINATION_PREFIX])
def test_new_adds_prefix(prefix: str) -> None:
    value = IdFactory().new(prefix)
    assert value.startswith(prefix)
    assert ULID_RE.match(value[len(prefix) :])
    assert has_prefix_id(value, prefix)


def test_prefixes_are_distinct() -> None:
    assert EVENT_PREFIX == "evt_"
    assert DELIVERY_PREFIX == "dlv_"
    assert DESTINATION_PREFIX == "dst_"


@pytest.fixture
def eager_thread_switching():
    # Switch threads as often as possible so that an unguarded read-modify-write in the
    # factory would interleave and show up as duplicates.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _hammer(factory: IdFactory, threads: int, per_thread: int) -> list[list[str]]:
    results: list[list[str]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads)

    def work(slot: int) -> None:
        barrier.wait()
        out = results[slot]
        for _ in range(per_thread):
            out.append(factory.new(EVENT_PREFIX))

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return results


@pytest.mark.usefixtures("eager_thread_switching")
def test_factory_is_thread_safe_with_real_clock() -> None:
    threads, per_thread = 8, 2000
    results = _hammer(IdFactory(), threads, per_thread)
    everything = [x for chunk in results for x in chunk]
    assert len(everything) == threads * per_thread
    assert len(set(everything)) == len(everything)
    for chunk in results:
        assert chunk == sorted(chunk)
        assert all(a < b for a, b in itertools.pairwise(chunk))


@pytest.mark.usefixtures("eager_thread_switching")
def test_factory_is_thread_safe_within_one_millisecond() -> None:
    # A frozen clock forces every id through the count-up path: if two threads ever raced
    # on the counter there would be duplicates or gaps in the random parts. The clock gives
    # up the GIL on every call, inviting another thread into the critical section.
    threads, per_thread = 8, 1000
    start = 1 << 20

    def yielding_clock() -> int:
        time.sleep(0)
        return 77

    factory = IdFactory(clock_ms=yielding_clock, entropy=fixed_entropy(start << 1))
    results = _hammer(factory, threads, per_thread)
    everything = [x for chunk in results for x in chunk]
    decoded = [decode_ulid(x[len(EVENT_PREFIX) :]) for x in everything]
    assert {ms for ms, _ in decoded} == {77}
    assert sorted(r for _, r in decoded) == list(range(start, start + threads * per_thread))
    for chunk in results:
        assert all(a < b for a, b in itertools.pairwise(chunk))


# --- has_prefix_id -------------------------------------------------------------------------


def test_has_prefix_id() -> None:
    ulid = encode_ulid(1_700_000_000_000, 99)
    assert has_prefix_id("evt_" + ulid, "evt_")
    assert has_prefix_id("evt_" + ulid.lower(), "evt_")
    assert not has_prefix_id("dlv_" + ulid, "evt_")
    assert not has_prefix_id(ulid, "evt_")
    assert not has_prefix_id("evt_", "evt_")
    assert not has_prefix_id("evt_" + ulid[:-1], "evt_")
    assert not has_prefix_id("evt_" + ulid + "0", "evt_")
    assert not has_prefix_id("evt_" + ulid[:-1] + "U", "evt_")
    assert not has_prefix_id("evt_" + "8" + "0" * 25, "evt_")
    assert not has_prefix_id("evt_" + "0" * 25 + "\u017f", "evt_")
    assert not has_prefix_id("EVT_" + ulid, "evt_")
    assert has_prefix_id(ulid, "")


@FAST
@given(ms_values, rand_values, st.sampled_from([EVENT_PREFIX, DELIVERY_PREFIX, "x"]))
def test_has_prefix_id_accepts_every_encoded_ulid(ms: int, rand: int, prefix: str) -> None:
    assert has_prefix_id(prefix + encode_ulid(ms, rand), prefix)


def test_module_constants() -> None:
    assert ids._RANDOM_MAX == RANDOM_MAX
    assert ids._TIME_MAX == TIME_MAX


# --- families: an event's id and its deliveries' ---------------------------------------


@settings(max_examples=300)
@given(
    ms_values,
    st.integers(min_value=0, max_value=(1 << 79) - 1),
    st.integers(min_value=1, max_value=3000),
)
def test_families_spell_what_encode_ulid_spells(ms: int, drawn: int, n: int) -> None:
    """The families are spelled a pair of characters at a time (the first twenty once
    per carry): the same text as encoding each ULID in full, carries included."""
    entropy = (drawn << 1).to_bytes(10, "big")  # the factory shifts the draw right by one
    (first,) = IdFactory(clock_ms=lambda: ms, entropy=lambda k: entropy).families(1)
    got = IdFactory(clock_ms=lambda: ms, entropy=lambda k: entropy).families(n)
    start_ms, start_rand = decode_ulid(first)
    assert start_ms == ms  # the top random bit is clear: n families always fit
    assert got == [encode_ulid(ms, start_rand + (k << MEMBER_BITS)) for k in range(n)]


def test_families_leave_the_member_bits_clear_and_count_up() -> None:
    factory = IdFactory(clock_ms=lambda: 42, entropy=fixed_entropy((5 << 20 | 77) << 1))
    heads = factory.families(4)
    decoded = [decode_ulid(h) for h in heads]
    assert decoded == [(42, (5 + k) << MEMBER_BITS) for k in range(4)]
    assert all(h.endswith("0000") for h in heads)
    assert factory.families(0) == []


def test_member_ids_spell_their_number_in_the_last_four_characters() -> None:
    (head,) = IdFactory(clock_ms=lambda: 7, entropy=fixed_entropy(0)).families(1)
    ms, rand = decode_ulid(head)
    for i in (1, 2, 31, 32, 1023, 1024, 54321, MAX_MEMBERS):
        member = member_id(head, i)
        assert decode_ulid(member) == (ms, rand + i)
        assert member[:22] == head[:22]
        assert ULID_RE.match(member)
    assert MAX_MEMBERS == (1 << MEMBER_BITS) - 1


def test_members_sort_between_their_head_and_the_next() -> None:
    factory = IdFactory(clock_ms=lambda: 1_700_000_000_000)
    heads = factory.families(3) + factory.families(2)
    for head, following in itertools.pairwise(heads):
        assert head < member_id(head, 1) < member_id(head, MAX_MEMBERS) < following


def test_ulid_after_families_sorts_after_every_member() -> None:
    factory = IdFactory(clock_ms=lambda: 9, entropy=fixed_entropy(0))
    (head,) = factory.families(1)
    after = factory.ulid()
    assert member_id(head, MAX_MEMBERS) < after
    assert factory.families(1)[0] > after


def test_families_roll_into_the_next_millisecond_when_exhausted() -> None:
    factory = IdFactory(clock_ms=lambda: 500, entropy=fixed_entropy(3 << 21))
    factory.families(1)
    factory._last_rand = RANDOM_MAX - (1 << MEMBER_BITS)  # almost at the end
    first, second = factory.families(2)
    assert decode_ulid(first) == (501, 3 << MEMBER_BITS)
    assert decode_ulid(second) == (501, 4 << MEMBER_BITS)


@FAST
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=1 << 44), st.integers(0, 5)),
        min_size=1,
        max_size=40,
    )
)
def test_families_and_ulids_never_collide_and_keep_order(calls: list[tuple[int, int]]) -> None:
    """Any mix of `families(n)` (n > 0) and `ulid()` (n = 0) calls, under any clock: every
    id handed out, members included, sorts after everything handed out before it."""
    factory = IdFactory(clock_ms=SteppingClock([reading for reading, _ in calls]))
    handed_out: list[str] = []
    for _, n in calls:
        if n == 0:
            handed_out.append(factory.ulid())
        else:
            for head in factory.families(n):
                handed_out += [head, member_id(head, 1), member_id(head, MAX_MEMBERS)]
    assert all(a < b for a, b in itertools.pairwise(handed_out))
