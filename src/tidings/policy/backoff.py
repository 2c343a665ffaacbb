"""Retry timing: exponential backoff with jitter, and `Retry-After` parsing.

After the n-th failed attempt (n >= 1) the next try waits
`min(max_ms, initial_ms * multiplier**(n-1))`, spread uniformly by ±`jitter` (a fraction)
and never above `max_ms`. A receiver's `Retry-After` (seconds or an HTTP date) on a 429 or
503 replaces the computed delay, still capped by `max_ms`. Must never do I/O; randomness
and the clock are passed in.
"""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime

from tidings.model import RetryPolicy


def base_delay_ms(policy: RetryPolicy, failures: int) -> float:
    """The un-jittered delay after `failures` failed attempts (>= 1)."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    # Cap the exponent first: multiplier**n overflows floats long before it matters.
    exponent = min(failures - 1, 200)
    try:
        raw = policy.initial_ms * policy.multiplier**exponent
    except OverflowError:
        raw = float(policy.max_ms)
    return float(min(policy.max_ms, raw))


def next_delay_ms(
    policy: RetryPolicy,
    failures: int,
    rng: random.Random | None = None,
    retry_after_ms: int | None = None,
) -> int:
    """Milliseconds to wait before the next attempt."""
    if retry_after_ms is not None:
        return max(0, min(policy.max_ms, retry_after_ms))
    base = base_delay_ms(policy, failures)
    spread = (rng or random).uniform(-policy.jitter, policy.jitter) if policy.jitter else 0.0
    return max(0, min(policy.max_ms, round(base * (1.0 + spread))))


def is_exhausted(policy: RetryPolicy, attempts: int) -> bool:
    """After `attempts` failed attempts, is the delivery dead?"""
    return attempts >= policy.max_attempts


def parse_retry_after(value: str | None, now_s: float) -> int | None:
    """`Retry-After` as milliseconds from `now_s` (unix seconds), or None if unusable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text) * 1000
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0, round((when.timestamp() - now_s) * 1000))
