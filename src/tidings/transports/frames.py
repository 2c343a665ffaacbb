"""Length-prefixed frames over a stream socket: the wire between a worker and its sender
processes (see `senders`).

Owns framing only: a frame is a 4-byte big-endian length and that many bytes. Frames sent
during one turn of the event loop leave in one write (one system call for a whole burst of
deliveries). Must never interpret a frame's bytes; that is the caller's job.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import cast

__all__ = ["MAX_FRAME", "FrameBuffer", "FrameError", "FramedProtocol", "encode_frame"]

_LENGTH = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024  # a 1 MiB payload with its envelope is far below this


class FrameError(ValueError):
    """The peer sent something that is not a frame (a bug, or not our peer at all)."""


class FrameBuffer:
    """Bytes in, whole frames out; keeps the tail of a frame that has not fully arrived."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos, size = 0, len(buf)
        while size - pos >= 4:
            (length,) = _LENGTH.unpack_from(buf, pos)
            if length > MAX_FRAME:
                raise FrameError(f"frame of {length} bytes exceeds {MAX_FRAME}")
            end = pos + 4 + length
            if end > size:
                break
            frames.append(bytes(buf[pos + 4 : end]))
            pos = end
        if pos:
            del buf[:pos]
        return frames

    @property
    def pending(self) -> int:
        """Bytes held that do not make a whole frame yet."""
        return len(self._buf)


def encode_frame(body: bytes) -> bytes:
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return _LENGTH.pack(len(body)) + body


class FramedProtocol(asyncio.Protocol):
    """Calls `on_frame` with each frame received and `on_lost` once the stream ends."""

    def __init__(
        self,
        on_frame: Callable[[bytes], None],
        on_lost: Callable[[BaseException | None], None],
    ) -> None:
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._frames = FrameBuffer()
        self._transport: asyncio.Transport | None = None
        # Kept: asyncio.get_running_loop() costs a getpid() system call on every call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._error: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._frames.feed(data)
        except FrameError as exc:
            self._error = exc
            if self._transport is not None:
                self._transport.abort()  # connection_lost follows
            return
        for body in frames:
            self._on_frame(body)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._out.clear()
        self._on_lost(self._error or exc)

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(self, body: bytes) -> None:
        """Queue one frame; everything queued in this loop turn goes out in one write."""
        self._out.append(encode_frame(body))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            (self._loop or asyncio.get_running_loop()).call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if self._transport is not None and not self._transport.is_closing() and out:
            self._transport.write(b"".join(out))

    def close(self) -> None:
        if self._transport is not None:
            self._flush()
            self._transport.close()
