"""What the bus transports (`redis_stream`, `redis_channel`, `nats`) share: the
allow-list check at send time, the clock of one attempt, and the shape of its result.

A bus attempt is `delivered` only once the bus acknowledged it (its reply is kept as the
attempt's `Answer`); a bus's error reply is `rejected`; no answer in time is `timeout`;
no connection is `connection_error`; a URL the operator's allow-list no longer admits is
`refused` (nothing is sent). Error texts never carry a URL's credentials. Must never
apply retry policy or raise for a delivery failure.
"""

from __future__ import annotations

import time
from typing import Generic, TypeVar

from tidings.model import (
    Answer,
    AttemptOutcome,
    AttemptResult,
    Destination,
    NatsSpec,
    RedisChannelSpec,
    RedisStreamSpec,
)
from tidings.policy.buses import BusPrefix, forbidden_error
from tidings.policy.redaction import mask_credentials
from tidings.timeutil import now_us

__all__ = ["Attempt", "BusTransport", "short"]

S = TypeVar("S", RedisStreamSpec, RedisChannelSpec, NatsSpec)

MAX_ERROR = 300  # characters of an error's text kept


def short(text: str) -> str:
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


class Attempt:
    """One attempt's clock and result builders (started when made)."""

    __slots__ = ("at", "started")

    def __init__(self) -> None:
        self.at = now_us()
        self.started = time.perf_counter()

    def _ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def delivered(self, reply: str) -> AttemptResult:
        return AttemptResult(
            at=self.at, outcome="delivered", latency_ms=self._ms(), answer=Answer(None, reply)
        )

    def failed(self, outcome: AttemptOutcome, error: str) -> AttemptResult:
        return AttemptResult(at=self.at, outcome=outcome, latency_ms=self._ms(), error=short(error))

    def refused(self, url: str, allowed: tuple[BusPrefix, ...]) -> AttemptResult | None:
        """`refused` when the allow-list does not admit `url` (it may have changed since
        the destination was created), else None."""
        problem = forbidden_error(url, allowed)
        return None if problem is None else self.failed("refused", problem)

    def timed_out(self, url: str, timeout_s: float, what: str) -> AttemptResult:
        return self.failed(
            "timeout", f"{what} {mask_credentials(url)}: no answer in {timeout_s:g} s"
        )


class BusTransport(Generic[S]):
    """What every bus transport starts with: the allow-list, and each attempt's first
    steps (`begin`). `spec_type` is the kind's spec."""

    spec_type: type[S]

    def __init__(self, allowed: tuple[BusPrefix, ...]) -> None:
        self._allowed = allowed

    async def start(self) -> None:
        return None

    def begin(self, destination: Destination) -> tuple[S, Attempt, AttemptResult | None]:
        """The spec, the attempt's clock, and `refused` when the allow-list no longer
        admits the URL (send nothing then)."""
        spec = destination.spec
        if not isinstance(spec, self.spec_type):  # the registry routes by kind: a bug
            raise TypeError(f"not a {self.spec_type.__name__}: {destination.id}")
        attempt = Attempt()
        return spec, attempt, attempt.refused(spec.url, self._allowed)
