"""JSON text that cannot be decoded safely or stored: nesting too deep, strings no store keeps.

- `deeper_than(body)`: does the JSON text nest arrays and objects deeper than `MAX_DEPTH`?
  msgspec (like the standard `json`) decodes nested values by recursion, and JSON nested
  10,000 deep fails inside it with a RecursionError; this check runs before it, on the
  ingest hot path, so it is a few passes of bytes methods (C loops), never a Python loop
  per byte: about what msgspec's own decode costs for a usual body. Text that hovers near
  the limit for megabytes (crafted) costs most, some 40 ns a bracket.
- `depth_path(body)`: where the nesting first goes too deep (the field to name), for the
  error answer only: a token walk, slow and bounded.
- `text_problem(s)`, `lone_surrogate_path(body)`: strings that are not Unicode text (a
  lone UTF-16 surrogate, `"\\ud800"`, is valid JSON but has no UTF-8 form) or hold a NUL
  (PostgreSQL `text` refuses it), and where in a document the first one is.

Pure: bytes, strings and decoded documents in, answers out; no I/O, no knowledge of the
API's shapes.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Callable
from itertools import accumulate
from typing import Any

import msgspec

MAX_DEPTH = 64
PATH_PARTS = 3  # components of a path named in an error: `events[3].payload`
MAX_TOKENS = 200_000  # a longer walk to the too-deep point names no field

_ALL = bytes(range(256))
_KEEP_QUOTES_AND_BRACKETS = bytes(b for b in _ALL if b not in b'"[]{}')  # delete the rest
_KEEP_OPENERS = bytes(b for b in _ALL if b not in b"[{")
_SMALL = 8192  # bodies this size or less count their openers first (most have few)
_ESCAPE = re.compile(rb"\\.", re.S)
_PARENS = bytes.maketrans(b"[{]}", b"(())")  # depth does not care which kind
_STEP = bytes.maketrans(b"()", b"\x01\xff")  # +1 / -1 as signed bytes
_CHUNK = 4096  # brackets per accumulate() call: bounds the list it builds
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:,]', re.S)


# --------------------------------------------------------------------------- depth
def deeper_than(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """True if `body`, read as JSON text, opens an array or object at a depth beyond
    `limit` (the outermost value is depth 1), counting only brackets outside strings.

    Exact for well-formed JSON; for malformed text it answers for the text as a JSON
    reader sees it up to the fault (the decoder reports the fault itself)."""
    if len(body) <= limit:
        return False  # a value at depth limit + 1 takes more brackets than that
    if len(body) <= _SMALL and len(body.translate(None, _KEEP_OPENERS)) <= limit:
        return False  # too few openers, in strings or not: the usual single event
    if b"\\" in body:
        # Escapes, the only place a backslash may be, go first (left to right, as a
        # reader pairs them: `\\"` keeps its closing quote, `\"` is no quote at all);
        # every quote left then opens or closes a string.
        body = _ESCAPE.sub(b"", body)
    marks = body.translate(_PARENS, _KEEP_QUOTES_AND_BRACKETS)  # `"`, `(`, `)` only
    brackets = marks.translate(None, b'"')
    quotes = len(marks) - len(brackets)
    # Two quotes in a row are an empty string (here: one without brackets) or the gap
    # between two strings. If every run of quotes pairs up so (as counting the pairs,
    # left to right, tells), no bracket is inside a string: the usual document.
    if quotes and marks.count(b'""') * 2 != quotes:
        # Dropping those pairs keeps every other mark in or out of a string as it was;
        # what is left between a quote and the next is inside a string.
        marks = marks.replace(b'""', b"")
        brackets = b"".join(marks.split(b'"')[::2])
    return _brackets_deeper_than(brackets, limit)


def _brackets_deeper_than(brackets: bytes, limit: int) -> bool:
    """The depth test on brackets alone, openers as `(` and closers as `)`."""
    if brackets.count(b"(") <= limit:
        return False
    # Each round drops every innermost pair `()` (one pass: what a removal makes adjacent
    # waits for the next round), the leaves of the bracket tree, which lowers the deepest
    # point by exactly one: a few C passes decide a usual document (a batch of a thousand
    # events, a few levels deep). A round that drops little (a deep or lopsided text)
    # hands over to the exact scan.
    rounds = 0
    while rounds < limit:
        shorter = brackets.replace(b"()", b"")
        if not shorter:
            return False
        dropped = len(brackets) - len(shorter)
        if dropped == 0:
            break  # no pair left but brackets: unbalanced (malformed); the scan answers
        brackets = shorter
        rounds += 1
        if dropped * 8 < len(brackets):
            break
    return _max_prefix_above(brackets, limit - rounds)


def _max_prefix_above(brackets: bytes, limit: int) -> bool:
    """Does the running count (+1 an opener, -1 a closer) ever exceed `limit`?"""
    depth = 0
    for start in range(0, len(brackets), _CHUNK):
        steps = array("b", brackets[start : start + _CHUNK].translate(_STEP))
        if max(accumulate(steps, initial=depth)) > limit:
            return True
        depth += sum(steps)
    return False


def depth_path(body: bytes, limit: int = MAX_DEPTH) -> str | None:
    """The path (`events[3].payload`, at most PATH_PARTS parts) of the value holding the
    first array or object opened beyond `limit`; None if that is the whole body, or if
    it lies beyond MAX_TOKENS tokens (the answer then names no field)."""
    frames: list[_Frame] = []
    for n, match in enumerate(_TOKEN.finditer(body)):
        if n >= MAX_TOKENS:
            return None
        token = match.group()
        mark = token[:1]
        top = frames[-1] if frames else None
        if mark == b'"':
            if top is not None and top.awaiting_key:
                top.part = _key_of(token)
                top.awaiting_key = False
        elif mark in (b"[", b"{"):
            if len(frames) >= limit:
                return format_path([f.part for f in frames if f.part is not None])
            frames.append(_Frame(mark == b"{"))
        elif mark in (b"]", b"}"):
            if top is None:
                return None
            frames.pop()
        elif mark == b"," and top is not None:
            if top.is_object:
                top.awaiting_key, top.part = True, None
            elif isinstance(top.part, int):
                top.part += 1
    return None


class _Frame:
    """An open array (part: the index of its current item) or object (its current key)."""

    __slots__ = ("awaiting_key", "is_object", "part")

    def __init__(self, is_object: bool) -> None:
        self.is_object = is_object
        self.awaiting_key = is_object
        self.part: str | int | None = None if is_object else 0


def _key_of(token: bytes) -> str:
    try:
        key = json.loads(token)
    except ValueError:
        return token[1:-1].decode("utf-8", "replace")
    return key if isinstance(key, str) else str(key)


def format_path(parts: list[str | int], most: int = PATH_PARTS) -> str | None:
    """`["events", 3, "payload"]` -> `events[3].payload` (msgspec's form for errors), its
    first `most` parts; keys shown so that any JSON encoder can write them."""
    out = ""
    for part in parts[:most]:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + printable(part)
    return out or None


def printable(text: str) -> str:
    """`text` with what no UTF-8 encoder writes (lone surrogates) and NULs spelled as
    escapes: fit for an error message and its `field`."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")


# --------------------------------------------------------------------------- strings
_SURROGATE = re.compile("[\ud800-\udfff]")
_NUL_ESCAPE = re.compile(rb"\\u0000")  # sre jumps from backslash to backslash


def may_hold_nul(body: bytes) -> bool:
    """Might the JSON text `body` hold a NUL? (Only ever as the escape `\\u0000`; an
    escaped backslash before `u0000` makes this a false alarm, never a miss.)"""
    return b"\\" in body and _NUL_ESCAPE.search(body) is not None


def text_problem(text: str) -> str | None:
    """Why no store can keep `text` (as a PostgreSQL `text` or a UTF-8 string), or None."""
    if "\x00" in text:
        return "holds a NUL character (\\u0000), which cannot be stored"
    return surrogate_problem(text)


def surrogate_problem(text: str) -> str | None:
    """Why `text` has no UTF-8 form (a lone surrogate), or None."""
    if text.isascii():
        return None
    lone = _SURROGATE.search(text)
    if lone is None:
        return None
    return (
        f"holds a lone UTF-16 surrogate (\\u{ord(lone.group()):04x}), "
        "which is not Unicode text and cannot be stored"
    )


def lone_surrogate_path(body: bytes) -> tuple[str | None, str] | None:
    """(path, problem) of the first string or key of the JSON text `body` that holds a
    lone surrogate escape (`"\\ud800"`), or None if there is none or the text is not
    JSON that Python's reader takes (which, unlike msgspec, reads lone surrogates).
    For an answer after a decode error: it parses the whole body again."""
    if b"\\u" not in body:
        return None
    try:
        document = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    found = first_bad_string(document, surrogate_problem)
    if found is None:
        return None
    parts, problem = found
    return format_path(parts, most=len(parts)), problem


def first_bad_string(
    value: Any, problem_of: Callable[[str], str | None], parts: list[str | int] | None = None
) -> tuple[list[str | int], str] | None:
    """(path parts, problem) of the first string or key of a decoded document (builtins
    or msgspec Structs) for which `problem_of` names a problem, depth first; None if none.
    A msgspec.Raw is passed over: it is JSON text, checked as bytes where it matters."""
    parts = parts or []
    if isinstance(value, str):
        problem = problem_of(value)
        return (parts, problem) if problem else None
    if isinstance(value, msgspec.Struct):
        items: Any = (
            (f.encode_name, getattr(value, f.name)) for f in msgspec.structs.fields(value)
        )
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
        for key in value:
            if isinstance(key, str) and (problem := problem_of(key)):
                return [*parts, key], f"key {problem}"
    else:
        return None
    for part, item in items:
        found = first_bad_string(item, problem_of, [*parts, part])
        if found:
            return found
    return None
