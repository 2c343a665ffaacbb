"""What an attempt's result does to its delivery: the retry state machine.

`decide` maps (result, attempt number, the destination's policy) to the delivery's next
state: delivered, scheduled for a retry at a computed time, or dead; whether its lane may
move on; whether it counts as a failure; and whether the destination must be disabled
(the transport said the target is gone for good: `AttemptResult.gone`). Knows no
protocol: status codes are the transports' business. Must never do I/O; the clock and
randomness are passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tidings.model import AttemptResult, CompletionState, OnDead, RetryPolicy
from tidings.policy.backoff import is_exhausted, next_delay_ms


@dataclass(frozen=True, slots=True)
class Transition:
    state: CompletionState
    next_attempt_at: int | None
    release_lane: bool
    failed: bool
    disable_destination: bool = False


_DELIVERED = Transition("delivered", None, release_lane=True, failed=False)


@dataclass(frozen=True, slots=True)
class FailurePlan:
    """What a failed attempt of a pull group's delivery (a nack, an expired lease) turns
    into, by its attempt number: `decide` with the group's policy; `delay_ms` is a wait
    the consumer asked for (a nack's), capped by `retry.max_ms` like a Retry-After."""

    retry: RetryPolicy
    on_dead: OnDead
    delay_ms: int | None = None
    rng: random.Random | None = None

    def after(self, attempt: int, now: int) -> Transition:
        result = AttemptResult(at=now, outcome="nacked", retry_after_ms=self.delay_ms)
        return decide(result, attempt, self.retry, self.on_dead, now, self.rng)


def decide(
    result: AttemptResult,
    attempt: int,
    retry: RetryPolicy,
    on_dead: OnDead,
    now: int,
    rng: random.Random | None = None,
) -> Transition:
    """The transition after attempt number `attempt` (1 for the first) came to `result`."""
    if result.outcome == "delivered":
        return _DELIVERED  # the common case: frozen, so one will do
    gone = result.gone is not None
    if is_exhausted(retry, attempt):
        return Transition(
            "dead",
            None,
            release_lane=on_dead == "skip",
            failed=True,
            disable_destination=gone,
        )
    delay_ms = next_delay_ms(retry, attempt, rng, result.retry_after_ms)
    return Transition(
        "scheduled",
        now + delay_ms * 1000,
        release_lane=False,
        failed=True,
        disable_destination=gone,
    )
