"""The transport interface: what the engine asks of every destination kind, nothing more.

A transport owns one destination kind's wire: from a claimed delivery and its
destination it builds its own request (a signed POST, an XADD, a JetStream publish),
sends it over connections it pools itself, and reports what happened as a kind-neutral
`AttemptResult` (delivered or which failure; the far end's own answer as an opaque
`Answer`; `gone` when the target says it is gone for good). The engine claims, leases,
retries, records and promotes lanes without knowing how bytes move.

A transport must never apply retry policy, touch the store, or raise for a delivery
failure (only programming errors escape); `deliver` may run many times at once.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from msgspec import Struct

from tidings.model import AttemptResult, Claim, Destination

__all__ = ["Alert", "AlertSender", "Transport"]


class Transport(Protocol):
    """Sends deliveries to the destinations of one kind."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def deliver(self, claim: Claim, destination: Destination) -> Awaitable[AttemptResult]:
        """One attempt of `claim` to `destination`, reported as it happened (an `async
        def`, or a plain one handing back another's awaitable: one frame less per
        delivery)."""
        ...


class Alert(Struct, frozen=True, kw_only=True):
    """An operator alert about a destination, to its `alert_url` (see `engine.alerts`)."""

    id: str  # the same on every try
    type: str  # tidings.deliveries.dead, tidings.destination.paused
    at: int  # µs, when it was raised
    data: bytes  # JSON
    attempt: int = 1
    timeout_s: float = 10.0


class AlertSender(Protocol):
    """Sends one try of an alert to a destination's `alert_url`."""

    async def send_alert(self, alert: Alert, destination: Destination) -> AttemptResult: ...
