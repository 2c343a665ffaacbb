"""The `redis_channel` transport: one PUBLISH per delivery, of the body a webhook would
carry (the envelope, or the payload alone with `"body": "data"`).

Pub/sub keeps nothing: a subscriber that is not connected at that moment never sees the
message. A delivery is done once Redis accepted the PUBLISH, however many subscribers
heard it (the count is kept as the attempt's answer). Must never re-encode the payload.
"""

from __future__ import annotations

from typing import Any

from tidings.model import Claim, RedisChannelSpec
from tidings.transports.envelope import body_of
from tidings.transports.redis_bus import RedisTransport

__all__ = ["RedisChannels"]


class RedisChannels(RedisTransport[RedisChannelSpec]):
    spec_type = RedisChannelSpec

    def _command(self, claim: Claim, spec: RedisChannelSpec) -> tuple[Any, ...]:
        return (
            "PUBLISH",
            spec.channel,
            body_of(spec.body, claim.topic, claim.received_at, claim.payload),
        )

    def _reply(self, reply: Any) -> str:
        heard = int(reply)
        return f"{heard} subscriber{'' if heard == 1 else 's'}"
