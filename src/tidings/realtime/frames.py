"""Frames a WebSocket client may send, parsed and bounded; frames the server sends.

Clients send `{"type": "ack", "up_to": OFFSET}` or `{"type": "ping"}`; anything else is
answered with an error frame, never acted on. No frame names a user: a socket only ever
reads and acks the inbox of the user its token names. Pure: no I/O.
"""

from __future__ import annotations

from typing import Literal

import msgspec

MAX_CLIENT_FRAME = 4096  # bytes; aiohttp closes the socket (1009) above it
MAX_OFFSET = 2**62


class ClientFrame(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["ack", "ping"]
    up_to: int | None = None


class FrameError(ValueError):
    pass


_decoder = msgspec.json.Decoder(ClientFrame)


def parse_client_frame(data: str | bytes) -> ClientFrame:
    if len(data) > MAX_CLIENT_FRAME:
        raise FrameError("frame too large")
    try:
        frame = _decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise FrameError(f"bad frame: {exc}") from None
    if frame.type == "ack" and (frame.up_to is None or not 0 <= frame.up_to <= MAX_OFFSET):
        raise FrameError("an ack needs up_to, an offset >= 0")
    return frame


class MessageFrame(msgspec.Struct, frozen=True, tag_field="type", tag="message"):
    offset: int
    id: str
    topic: str
    payload: msgspec.Raw
    received_at: str


def message_frame(offset: int, id: str, topic: str, payload: bytes, received_at: str) -> bytes:
    return msgspec.json.encode(
        MessageFrame(
            offset=offset, id=id, topic=topic, payload=msgspec.Raw(payload), received_at=received_at
        )
    )


def welcome_frame(top: int) -> bytes:
    return msgspec.json.encode({"type": "welcome", "top": top})


def acked_frame(up_to: int) -> bytes:
    return msgspec.json.encode({"type": "acked", "up_to": up_to})


def pong_frame() -> bytes:
    return b'{"type":"pong"}'


def error_frame(message: str) -> bytes:
    return msgspec.json.encode({"type": "error", "message": message})
