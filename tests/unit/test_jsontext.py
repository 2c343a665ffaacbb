"""Unit tests for tidings.policy.jsontext: nesting depth from the bytes, unstorable strings."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.policy.jsontext import (
    MAX_DEPTH,
    MAX_TOKENS,
    deeper_than,
    depth_path,
    format_path,
    lone_surrogate_path,
    may_hold_nul,
    printable,
    surrogate_problem,
    text_problem,
)

FAST = settings(max_examples=300, deadline=None)


def depth(value: Any) -> int:
    """Nesting depth as a JSON reader sees it: the outermost array or object is 1."""
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def nest(n: int, inner: str = "1", kinds: str = "[{") -> str:
    """`n` arrays/objects around `inner`, alternating the kinds given."""
    text = inner
    for i in range(n):
        text = f"[{text}]" if kinds[i % len(kinds)] == "[" else f'{{"k{i}":{text}}}'
    return text


# Strings full of what could fool a reader of bytes: brackets, quotes, backslashes,
# escapes of every kind (json.dumps writes `\\`, `\"`, `\n`, `\u00e9`, surrogate pairs).
tricky_text = st.text(
    alphabet=st.sampled_from([*'[]{}"\\/:,', "a", " ", "\n", "\t", "é", "😀", "\x00", "\x1f"]),
    max_size=12,
)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | tricky_text
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=40,
)


def dumps(value: Any, ascii_only: bool, spaced: bool) -> bytes:
    if spaced:
        return json.dumps(value, ensure_ascii=ascii_only, indent=1).encode()
    return json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- deeper_than
@FAST
@given(documents, st.integers(0, 8), st.booleans(), st.booleans())
def test_depth_is_what_a_json_reader_sees(
    value: Any, limit: int, ascii_only: bool, spaced: bool
) -> None:
    body = dumps(value, ascii_only, spaced)
    assert deeper_than(body, limit) == (depth(json.loads(body)) > limit)


@FAST
@given(st.integers(1, 200), st.integers(1, 130), st.sampled_from(["[", "{", "[{"]), tricky_text)
def test_a_chain_is_too_deep_exactly_past_the_limit(
    n: int, limit: int, kinds: str, text: str
) -> None:
    body = nest(n, json.dumps(text), kinds).encode()
    assert depth(json.loads(body)) == n
    assert deeper_than(body, limit) == (n > limit)


@FAST
@given(
    st.integers(1, 80),
    st.integers(0, 3000),
    st.integers(0, 3000),
    st.sampled_from(["[]", "{}", '"[[[["', '"]]]]"', '"\\\\"', '"\\"["']),
)
def test_deep_points_among_many_shallow_ones(n: int, before: int, after: int, filler: str) -> None:
    """Wide documents (more brackets than one scan chunk), the deep point anywhere: the
    rounds that drop innermost pairs and the exact scan after them agree with a reader."""
    items = [filler] * before + [nest(n)] + [filler] * after
    body = ("[" + ",".join(items) + "]").encode()
    assert deeper_than(body) == (depth(json.loads(body)) > MAX_DEPTH)
    assert deeper_than(body) == (n + 1 > MAX_DEPTH)


@pytest.mark.parametrize(
    "body",
    [
        '["[[[[[[[[[["]',
        '{"a":"]]]]]]]]]]]]","b":[[["{{{{{"]]]}',
        '["\\\\", [["\\\\\\"[[[["]]]',  # an escaped backslash, then an escaped quote
        '["\\"", "[[[[", "\\\\"]',
        '{"[": "{", "]": "}"}',
    ],
)
def test_brackets_inside_strings_do_not_count(body: str) -> None:
    value = json.loads(body)
    assert depth(value) <= 4
    assert not deeper_than(body.encode(), 4)
    # ... and the same strings around a real nest still see it, one level each.
    deep = f"[{body},{nest(MAX_DEPTH)}]".encode()
    assert deeper_than(deep)
    assert not deeper_than(f"[{body},{nest(MAX_DEPTH - 1)}]".encode())


def test_ten_thousand_deep_is_refused_before_any_decoder_recurses() -> None:
    body = nest(10_000, kinds="[").encode()
    with pytest.raises(RecursionError):
        json.loads(body)
    with pytest.raises(RecursionError):
        msgspec.json.decode(body)
    assert deeper_than(body)
    assert depth_path(body) == "[0][0][0]"
    flat = ("[" + "[1]," * 100_000 + "1]").encode()  # wide, two deep
    assert not deeper_than(flat)


def test_depth_up_to_the_limit_decodes() -> None:
    body = nest(MAX_DEPTH, kinds="[{").encode()
    assert not deeper_than(body)
    assert depth(msgspec.json.decode(body)) == MAX_DEPTH
    assert deeper_than(nest(MAX_DEPTH + 1).encode())


@pytest.mark.parametrize(
    "body",
    [b"", b"[", b"]]]]", b"[[[[[[[[[[[[", b'"', b'["unterminated', b"[}" * 100, b"\\" * 200],
)
def test_malformed_text_answers_without_error(body: bytes) -> None:
    assert deeper_than(body, 5) in (True, False)
    assert depth_path(body, 5) is None or isinstance(depth_path(body, 5), str)


def test_malformed_but_deep_text_is_too_deep() -> None:
    # Never closed: a reader would recurse 10,000 levels before it notices.
    assert deeper_than(b"[" * 10_000)
    assert deeper_than(b'{"a":' * 10_000)


# --------------------------------------------------------------------------- depth_path
@pytest.mark.parametrize(
    ("body", "path"),
    [
        ('{"topic":"a","payload":DEEP}', "payload[0][0]"),  # its first 3 parts
        ('{"topic":"a","payload":{"x":[1,2,DEEP]}}', "payload.x[2]"),
        ('{"events":[{"topic":"a"},{"topic":"b","payload":DEEP}]}', "events[1].payload"),
        ('{"a\\"b":{"c":DEEP}}', 'a"b.c[0]'),
        ('{"k\\u00e9":DEEP}', "ké[0][0]"),
        ('{"filter":{"all":[{"eq":["$.a", DEEP]}]}}', "filter.all[0]"),
        ("DEEP", "[0][0][0]"),
        ('[[1],{"a":DEEP}]', "[1].a[0]"),
    ],
)
def test_depth_path_names_the_field(body: str, path: str | None) -> None:
    text = body.replace("DEEP", nest(200, kinds="[")).encode()
    assert deeper_than(text)
    assert depth_path(text) == path


def test_depth_path_gives_up_past_its_token_budget() -> None:
    body = ("[" + "1," * MAX_TOKENS + nest(100) + "]").encode()
    assert deeper_than(body)
    assert depth_path(body) is None


# --------------------------------------------------------------------------- strings
def test_text_problem() -> None:
    assert text_problem("plain") is None
    assert text_problem("é😀 ok") is None
    assert "NUL" in (text_problem("a\x00b") or "")
    assert "\\ud800" in (text_problem("a\ud800") or "")
    assert "\\udc00" in (text_problem("\udc00z") or "")
    assert surrogate_problem("a\x00") is None


def test_printable_and_format_path() -> None:
    assert printable("abc") == "abc"
    assert printable("a\ud800b\x00") == "a\\ud800b\\u0000"
    assert printable("é") == "é"
    assert format_path(["events", 3, "payload", "x"]) == "events[3].payload"
    assert format_path(["events", 3, "payload", "x"], most=9) == "events[3].payload.x"
    assert format_path([0, 1]) == "[0][1]"
    assert format_path([]) is None
    msgspec.json.encode(format_path(["\ud800"]))  # any encoder can write it


@pytest.mark.parametrize(
    ("body", "path", "what"),
    [
        (b'{"topic":"a","payload":{"x":[1,"\\ud800"]}}', "payload.x[1]", "\\ud800"),
        (b'{"topic":"a","payload":{"\\udc00":1}}', "payload.\\udc00", "key holds"),
        (b'{"topic":"\\ud83d"}', "topic", "\\ud83d"),
        (b'{"events":[{"topic":"a"},{"topic":"b","key":"x\\udfff"}]}', "events[1].key", "udfff"),
        (b'"\\ud800"', None, "ud800"),
    ],
)
def test_lone_surrogate_path(body: bytes, path: str | None, what: str) -> None:
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(body)  # msgspec refuses them, without a path
    found = lone_surrogate_path(body)
    assert found is not None
    assert found[0] == path
    assert what in found[1]


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":"\\ud83d\\ude00"}',  # a pair is a character
        b'{"a":"\\\\ud800"}',  # an escaped backslash, then text
        b'{"a":"plain"}',
        b'{"a":"\\ud800"',  # not JSON at all
        b'{"a":"\xff\\ud800"}',  # not UTF-8
    ],
)
def test_no_lone_surrogate_path(body: bytes) -> None:
    assert lone_surrogate_path(body) is None


def test_may_hold_nul() -> None:
    assert may_hold_nul(b'{"a":"x\\u0000"}')
    assert may_hold_nul(b'{"a":"\\\\u0000"}')  # a false alarm (text `\u0000`), never a miss
    assert not may_hold_nul(b'{"a":"\\u0001 \\n"}')
    assert not may_hold_nul(b'{"a":"u0000"}')
