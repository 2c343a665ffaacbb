"""The `redis_stream` transport: one XADD per delivery.

The entry's fields are `id` (the event id), `topic`, `key`, `payload` (the event's JSON
bytes as received) and `received_at` (ISO-8601); with `maxlen` the stream is trimmed to
about that many entries (`MAXLEN ~`). A delivery is done once XADD answered the entry's
id, which is kept as the attempt's answer. Must never re-encode the payload.
"""

from __future__ import annotations

from typing import Any

from tidings.model import Claim, RedisStreamSpec
from tidings.timeutil import to_iso
from tidings.transports.redis_bus import RedisTransport

__all__ = ["RedisStreams"]


class RedisStreams(RedisTransport[RedisStreamSpec]):
    spec_type = RedisStreamSpec

    def _command(self, claim: Claim, spec: RedisStreamSpec) -> tuple[Any, ...]:
        trim = () if spec.maxlen is None else ("MAXLEN", "~", spec.maxlen)
        return (
            "XADD",
            spec.stream,
            *trim,
            "*",
            "id",
            claim.event_id,
            "topic",
            claim.topic,
            "key",
            claim.lane_key,
            "payload",
            claim.payload,
            "received_at",
            to_iso(claim.received_at),
        )

    def _reply(self, reply: Any) -> str:
        return reply.decode() if isinstance(reply, bytes) else str(reply)
