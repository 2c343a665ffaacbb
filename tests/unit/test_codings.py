"""Unit tests for tidings.policy.codings: Content-Encoding names, bounded incremental inflate."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.policy.codings import (
    STEP,
    CodingError,
    Inflater,
    TooLarge,
    UnsupportedCoding,
    body_coding,
)

FAST = settings(max_examples=200, deadline=None)


def gz(data: bytes) -> bytes:
    """gzip with no timestamp: parameters read the same in every process (pytest-xdist)."""
    return gzip.compress(data, mtime=0)


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


ENCODERS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", gz),
    "zlib": ("deflate", zlib.compress),
    "raw deflate": ("deflate", raw_deflate),
}


def inflate(coding: str, chunks: list[bytes], limit: int) -> bytes:
    inflater = Inflater(coding, limit)
    out = b"".join(piece for chunk in chunks for piece in inflater.feed(chunk))
    inflater.end()
    return out


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, at = [], 0
    for size in sizes:
        chunks.append(data[at : at + size])
        at += size
    return [*chunks, data[at:]]


# --------------------------------------------------------------------------- body_coding
@pytest.mark.parametrize(
    ("header", "coding"),
    [
        (None, None),
        ("", None),
        ("identity", None),
        ("Identity", None),
        ("gzip", "gzip"),
        ("GZip", "gzip"),
        ("x-gzip", "gzip"),
        (" deflate ", "deflate"),
        ("gzip, identity", "gzip"),
        ("identity,deflate", "deflate"),
    ],
)
def test_body_coding(header: str | None, coding: str | None) -> None:
    assert body_coding(header) == coding


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("br", "br"),
        ("zstd", "zstd"),
        ("x-foo", "x-foo"),
        ("compress", "compress"),
        ("gzip, br", "br"),
        ("gzip, gzip", "gzip, gzip"),
        ("deflate, gzip", "deflate, gzip"),
    ],
)
def test_unsupported_codings_are_named(header: str, named: str) -> None:
    with pytest.raises(UnsupportedCoding) as info:
        body_coding(header)
    assert str(info.value) == named


# --------------------------------------------------------------------------- Inflater
@FAST
@given(
    st.binary(max_size=5000) | st.text(max_size=3000).map(str.encode),
    st.sampled_from(sorted(ENCODERS)),
    st.lists(st.integers(0, 700), max_size=12),
)
def test_any_chunking_gives_the_body_back(data: bytes, which: str, sizes: list[int]) -> None:
    coding, encode = ENCODERS[which]
    coded = encode(data)
    assert inflate(coding, cut(coded, sizes), limit=len(data)) == data


@FAST
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=5), st.integers(1, 50))
def test_gzip_members_read_as_one_body(parts: list[bytes], size: int) -> None:
    coded = b"".join(gz(p) for p in parts)
    whole = b"".join(parts)
    assert inflate("gzip", cut(coded, [size] * (len(coded) // size)), len(whole)) == whole


@pytest.mark.parametrize("which", sorted(ENCODERS))
def test_one_byte_over_the_limit_is_too_large(which: str) -> None:
    coding, encode = ENCODERS[which]
    data = bytes(range(256)) * 40
    assert inflate(coding, [encode(data)], limit=len(data)) == data
    with pytest.raises(TooLarge):
        inflate(coding, [encode(data)], limit=len(data) - 1)


WBITS = {"gzip": 31, "zlib": 15, "raw deflate": -15}


@pytest.mark.parametrize("which", sorted(ENCODERS))
def test_a_bomb_stops_at_the_limit(which: str) -> None:
    """64 MiB of zeros in about 64 KiB: refused having made the limit (plus one byte)
    of output, in pieces of at most STEP."""
    coding = ENCODERS[which][0]
    c = zlib.compressobj(9, wbits=WBITS[which])
    zeros = bytes(1 << 20)
    coded = b"".join(c.compress(zeros) for _ in range(64)) + c.flush()
    assert len(coded) < 1 << 20
    limit = 3 * STEP + 17
    inflater = Inflater(coding, limit)
    made = 0
    with pytest.raises(TooLarge):
        for chunk in cut(coded, [65536] * (len(coded) // 65536)):
            for piece in inflater.feed(chunk):
                assert len(piece) <= STEP
                made += len(piece)
    assert made <= limit
    assert inflater.size == limit + 1


@pytest.mark.parametrize(
    ("coding", "chunks"),
    [
        ("gzip", [b"plain text, not gzip"]),
        ("gzip", [gz(b"hello")[:5], b"garbage" * 10]),
        ("deflate", [b"\x78\x9c not a stream"]),
        ("deflate", [b"\xff\xff\xff\xff"]),
        ("gzip", [gz(b"hello") + b"trailing"]),
        ("deflate", [zlib.compress(b"hello") + b"x"]),
        ("gzip", [gz(b"hello") + b"\x1f\x8b" + b"not a member"]),
    ],
)
def test_garbage_is_a_coding_error(coding: str, chunks: list[bytes]) -> None:
    with pytest.raises(CodingError):
        inflate(coding, chunks, limit=1 << 20)


@pytest.mark.parametrize(
    ("coding", "coded"),
    [
        ("gzip", gz(b"hello world" * 100)[:-4]),
        ("gzip", gz(b"hello")[:3]),
        ("deflate", zlib.compress(b"hello world" * 100)[:-1]),
        ("deflate", b"x"),  # one byte: not even a header
        ("gzip", gz(b"a") + gz(b"b")[:-1]),  # second member cut
    ],
)
def test_a_body_cut_short_is_a_coding_error_at_its_end(coding: str, coded: bytes) -> None:
    inflater = Inflater(coding, 1 << 20)
    for _ in inflater.feed(coded):
        pass
    with pytest.raises(CodingError):
        inflater.end()


def test_an_unknown_coding_has_no_inflater() -> None:
    with pytest.raises(UnsupportedCoding):
        Inflater("br", 100)
