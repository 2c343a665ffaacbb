"""Operator notices: one log line per dead letter, pause and resume of a destination.

The engine (dead letters; pauses after a run of failures or a target gone) and the API (a
PATCH that pauses or resumes) call `Notices` once the store has recorded what happened.
It owns the wording and the fields of those lines, written to the `tidings.notices`
logger with the fields as `extra` (the JSON format writes each as a field, with `event`
naming what happened: `delivery.dead`, `destination.paused`, `destination.resumed`,
`log.summary`). It keeps a failing destination from flooding the log: at most `limit`
lines per destination and kind in any `window_s` seconds (`policy.loglimit`, one dict
lookup per line), the rest counted in one summary line a window, written by `flush`
(called about once a second, and at shutdown). One instance per process.

It never decides anything and never reads the store. It never names a destination's URL,
secret or payload, nor a receiver's answer; the formatters redact whatever else might
carry a secret (`policy.redaction`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from tidings.model import Completion, Destination
from tidings.policy.loglimit import LineLimiter

DEAD = "delivery.dead"
PAUSED = "destination.paused"
RESUMED = "destination.resumed"
SUMMARY = "log.summary"
PauseCause = Literal["failures", "gone", "api"]

_NOUNS = {DEAD: "dead letters", PAUSED: "pauses", RESUMED: "resumes"}
_MAX_ERROR = 300  # characters of an attempt's error kept in a line
DEFAULT_LIMIT = 10
DEFAULT_WINDOW_S = 60.0

log = logging.getLogger("tidings.notices")


def _label(d: Destination) -> str:
    return f"destination {d.spec.name} ({d.id})" if d.spec.name else f"destination {d.id}"


def _error(c: Completion) -> str:
    a = c.attempt
    text = a.error or a.outcome  # a transport words its failures (a webhook's "HTTP 500")
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"


def _attempt_fields(d: Destination, c: Completion | None) -> dict[str, Any]:
    if c is None:
        return dict.fromkeys(
            ("event_id", "delivery_id", "attempt", "max_attempts", "outcome", "status_code")
        ) | {"error": None}
    return {
        "event_id": c.event_id or None,
        "delivery_id": c.delivery_id,
        "attempt": c.attempt_number or None,
        "max_attempts": d.spec.retry.max_attempts,
        "outcome": c.attempt.outcome,
        "status_code": c.attempt.status_code,
        "error": _error(c),
    }


def _attempt_text(d: Destination, c: Completion) -> str:
    event = c.event_id or "?"
    number = c.attempt_number or "?"
    return (
        f"event {event} delivery {c.delivery_id} "
        f"attempt {number}/{d.spec.retry.max_attempts}: {_error(c)}"
    )


class Notices:
    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self._limiter: LineLimiter[tuple[str, str]] = LineLimiter(limit, window_s)
        self._clock = clock
        self._log = logger
        # The destination of each (kind, destination id) with lines held back, as last seen.
        self._held: dict[tuple[str, str], Destination] = {}

    # ------------------------------------------------------------------ the lines
    def dead(self, d: Destination, c: Completion) -> None:
        """Delivery `c` of `d` went dead (its last attempt failed)."""
        if self._admit(DEAD, d, logging.WARNING):
            self._log.warning(
                "delivery dead: %s %s",
                _label(d),
                _attempt_text(d, c),
                extra=self._fields(DEAD, d, _attempt_fields(d, c)),
            )

    def paused(
        self, d: Destination, cause: PauseCause, reason: str, c: Completion | None = None
    ) -> None:
        """`d` was paused: by a run of failed attempts, its target gone (`c` the attempt that
        paused it, if known), or by the API."""
        level = logging.INFO if cause == "api" else logging.WARNING
        if self._admit(PAUSED, d, level):
            last = f"; {_attempt_text(d, c)}" if c is not None else ""
            self._log.log(
                level,
                "destination paused: %s: %s%s",
                _label(d),
                reason,
                last,
                extra=self._fields(
                    PAUSED, d, {"cause": cause, "reason": reason, **_attempt_fields(d, c)}
                ),
            )

    def resumed(self, d: Destination, by: str, was: str | None) -> None:
        """`d`, paused for `was`, is active again."""
        if self._admit(RESUMED, d, logging.INFO):
            self._log.info(
                "destination resumed: %s by %s (it was paused: %s)",
                _label(d),
                by,
                was or "no reason recorded",
                extra=self._fields(RESUMED, d, {"by": by, "reason": was}),
            )

    def state_set(self, before: Destination, after: Destination, by: str) -> None:
        """The API changed `before`'s state: the line for what it became."""
        if after.state == "paused":
            self.paused(after, "api", after.paused_reason or f"paused by {by}")
        elif before.state == "paused":
            self.resumed(after, by, before.paused_reason)

    # ------------------------------------------------------------------ summaries
    def flush(self, everything: bool = False) -> None:
        """One summary line per destination and kind whose lines have been held back for
        a window (all of them with `everything`)."""
        for held in self._limiter.due(self._clock(), everything):
            kind, destination_id = held.key
            d = self._held.pop(held.key, None)
            seconds = max(1, round(held.until - held.since))
            self._log.log(
                logging.INFO if kind == RESUMED else logging.WARNING,
                "%s: %s more %s in the last %d s, not logged one by one",
                _label(d) if d is not None else f"destination {destination_id}",
                f"{held.count:,}",
                _NOUNS[kind],
                seconds,
                extra={
                    "event": SUMMARY,
                    "of": kind,
                    "count": held.count,
                    "seconds": seconds,
                    "destination_id": destination_id,
                    "destination_name": d.spec.name if d is not None else None,
                },
            )

    async def flush_every(self, interval_s: float = 1.0) -> None:
        """Write due summaries until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.flush()

    # ------------------------------------------------------------------ helpers
    def _admit(self, kind: str, d: Destination, level: int) -> bool:
        if not self._log.isEnabledFor(level):
            return False
        if self._limiter.admit((kind, d.id), self._clock()):
            return True
        self._held[(kind, d.id)] = d
        return False

    @staticmethod
    def _fields(kind: str, d: Destination, fields: dict[str, Any]) -> dict[str, Any]:
        return {
            "event": kind,
            "destination_id": d.id,
            "destination_name": d.spec.name,
            **fields,
        }
