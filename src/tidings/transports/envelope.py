"""The body Tidings sends for an event, whatever carries it: a webhook's POST, a Redis
PUBLISH, a NATS message.

`envelope` is the Standard Webhooks shape `{"type": topic, "timestamp": iso, "data":
payload}` with the payload's bytes spliced in verbatim; a destination whose `body` is
`"data"` gets the payload's bytes alone. Must never re-encode the payload or do I/O.
"""

from __future__ import annotations

import msgspec

from tidings.model import BodyShape
from tidings.timeutil import to_iso

__all__ = ["body_of", "envelope"]

_encode = msgspec.json.encode


def envelope(topic: str, received_at: int, payload: bytes) -> bytes:
    """`{"type":topic,"timestamp":iso,"data":payload}` with `payload` spliced verbatim."""
    return b"".join(
        (
            b'{"type":',
            _encode(topic),
            b',"timestamp":"',
            to_iso(received_at).encode("ascii"),
            b'","data":',
            payload,
            b"}",
        )
    )


def body_of(shape: BodyShape, topic: str, received_at: int, payload: bytes) -> bytes:
    return envelope(topic, received_at, payload) if shape == "envelope" else payload
