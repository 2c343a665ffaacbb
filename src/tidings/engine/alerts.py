"""Operator alerts: a signed webhook to a destination's `alert_url`, whatever its kind.

Sent when deliveries of the destination go dead (one alert per destination per batch of
outcomes, listing up to `MAX_LISTED` of them) and when the destination is paused (a run
of failures, or its target gone). Alerts are best effort: a few tries in memory, never
stored, never blocking delivery. The `AlertSender` (the webhook transport) signs them
like any webhook of that destination, with the types `tidings.deliveries.dead` and
`tidings.destination.paused`. Owns what an alert says and when it is tried again; never
how it is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import msgspec

from tidings.ids import IdFactory
from tidings.model import Completion, Destination
from tidings.timeutil import now_us, to_iso
from tidings.transports.base import Alert, AlertSender

log = logging.getLogger(__name__)
MAX_LISTED = 100
TRIES = 3
BACKOFF_S = (1.0, 4.0)
TIMEOUT_S = 10.0
ALERT_PREFIX = "alr_"


class Alerter:
    def __init__(self, sender: AlertSender) -> None:
        self._sender = sender
        self._ids = IdFactory()
        self._tasks: set[asyncio.Task[None]] = set()

    def deliveries_dead(self, d: Destination, dead: Sequence[Completion]) -> None:
        self._send(
            d,
            "tidings.deliveries.dead",
            {
                "destination_id": d.id,
                "destination_name": d.spec.name,
                "count": len(dead),
                "deliveries": [
                    {
                        "id": c.delivery_id,
                        "error": c.attempt.error,
                        "status_code": c.attempt.status_code,
                    }
                    for c in dead[:MAX_LISTED]
                ],
            },
        )

    def destination_paused(self, d: Destination) -> None:
        self._send(
            d,
            "tidings.destination.paused",
            {
                "destination_id": d.id,
                "destination_name": d.spec.name,
                "reason": d.paused_reason,
                "paused_at": to_iso(now_us()),
            },
        )

    def _send(self, d: Destination, kind: str, data: dict[str, Any]) -> None:
        if not d.spec.alert_url:
            return
        alert = Alert(
            id=self._ids.new(ALERT_PREFIX),
            type=kind,
            at=now_us(),
            data=msgspec.json.encode(data),
            timeout_s=TIMEOUT_S,
        )
        task = asyncio.create_task(self._deliver(alert, d))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, alert: Alert, d: Destination) -> None:
        for attempt in range(1, TRIES + 1):
            result = await self._sender.send_alert(
                msgspec.structs.replace(alert, attempt=attempt), d
            )
            if result.outcome == "delivered":
                return
            if attempt < TRIES:
                await asyncio.sleep(BACKOFF_S[attempt - 1])
        log.warning("alert %s to %s failed: %s", alert.type, d.spec.alert_url, result.error)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
