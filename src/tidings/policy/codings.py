"""Request body codings (`Content-Encoding`): which are taken, and undoing one within a cap.

Taken: `gzip` (and its alias `x-gzip`), `deflate` (RFC 9110 means the zlib format; raw
deflate, which some clients send under that name, is taken too) and `identity`. Anything
else (`br`, `zstd`, two codings stacked) is `UnsupportedCoding`, which the API answers
with a 415 naming what it takes.

`Inflater` undoes one coding as the body arrives, chunk by chunk, and never makes more
than `limit` bytes of output (plus one byte, to know the limit is passed): a small body
that would expand to gigabytes (a "zip bomb") raises `TooLarge` having cost `limit` bytes
of memory and no more. A body that is not what its coding says (garbage, a stream cut
short, data after its end) raises `CodingError`.

Pure: bytes in, bytes out; no I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

ACCEPTED = ("gzip", "deflate", "identity")
STEP = 256 * 1024  # most output bytes made per step: bounds what one step holds
_GZIP = 16 + zlib.MAX_WBITS
_ZLIB = zlib.MAX_WBITS
_RAW = -zlib.MAX_WBITS
_GZIP_MAGIC = b"\x1f\x8b"


class UnsupportedCoding(ValueError):
    """A Content-Encoding this server does not undo (its text is the coding)."""


class CodingError(ValueError):
    """The body is not what its Content-Encoding says."""


class TooLarge(ValueError):
    """The body, undone, is larger than the limit."""


def body_coding(header: str | None) -> str | None:
    """The coding to undo (`gzip` or `deflate`) named by a Content-Encoding header, None
    for none (`identity`, or no header). Raises UnsupportedCoding."""
    if header is None:
        return None
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    for coding in codings:
        if coding not in ("gzip", "x-gzip", "deflate"):
            raise UnsupportedCoding(coding)
    if len(codings) > 1:
        raise UnsupportedCoding(", ".join(codings))
    return "deflate" if codings[0] == "deflate" else "gzip"


def _zlib_header(head: bytes) -> bool:
    """Do these two bytes open a zlib stream (RFC 1950: method 8, check bits)?"""
    return head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and (head[0] << 8 | head[1]) % 31 == 0


class Inflater:
    """Undoes `coding` (`gzip` or `deflate`) of a body fed in chunks, to at most `limit`
    bytes. `feed` yields the output as it comes; `end` says the body was whole."""

    def __init__(self, coding: str, limit: int) -> None:
        if coding not in ("gzip", "deflate"):
            raise UnsupportedCoding(coding)
        self.coding = coding
        self.limit = limit
        self.size = 0  # output bytes made so far
        self._head = b""  # deflate: the first bytes, until they tell zlib from raw
        self._d = zlib.decompressobj(_GZIP) if coding == "gzip" else None

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The output of one more chunk of the body, in pieces of at most STEP bytes."""
        if self._d is None:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            self._d = zlib.decompressobj(_ZLIB if _zlib_header(data) else _RAW)
        pending = data
        while True:
            d = self._d
            if d.eof:
                pending = d.unused_data + pending
                if not pending:
                    return
                if self.coding == "gzip" and pending[:2] == _GZIP_MAGIC[: len(pending)]:
                    # Another member (RFC 1952 allows several, read as one body).
                    self._d = d = zlib.decompressobj(_GZIP)
                else:
                    raise CodingError(f"the body goes on after the end of its {self.coding} data")
            room = min(STEP, self.limit - self.size + 1)
            try:
                out = d.decompress(pending, room)
            except zlib.error as exc:
                raise CodingError(f"the body is not valid {self.coding} data: {exc}") from None
            pending = d.unconsumed_tail
            self.size += len(out)
            if self.size > self.limit:
                raise TooLarge(f"the body is larger than {self.limit} bytes once undone")
            if out:
                yield out
            if not pending and not d.eof and len(out) < room:
                return  # the input is used up and nothing is held back

    def end(self) -> None:
        """Raise CodingError unless the data fed so far ends the coded stream."""
        d = self._d
        if d is None:
            if self._head:
                raise CodingError(f"the body ends inside its {self.coding} data")
            return
        if not d.eof:
            raise CodingError(f"the body ends before its {self.coding} data does")
