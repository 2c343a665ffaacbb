"""Per-destination rate limits: a token bucket with an injected clock.

A bucket refills at `rate` tokens a second up to `burst` tokens (by default a tenth of a
second's worth, at least one). The engine takes one token per delivery it claims, so a
rate-limited delivery simply waits in the store; it never fails for it. Must never do
I/O or read the clock itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def default_burst(rate: float) -> float:
    return max(1.0, rate / 10.0)


@dataclass
class TokenBucket:
    rate: float  # tokens a second, > 0
    burst: float  # the most tokens it holds, >= 1
    tokens: float = field(default=-1.0)
    updated: float = 0.0  # seconds, on the caller's clock

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        if self.tokens < 0:
            self.tokens = self.burst

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def available(self, now: float) -> int:
        """Whole tokens that may be taken at `now`."""
        self._refill(now)
        return int(self.tokens + 1e-9)

    def take(self, n: int, now: float) -> None:
        self._refill(now)
        if n > self.tokens + 1e-9:
            raise ValueError(f"only {self.tokens:.3f} tokens available, asked for {n}")
        self.tokens -= n

    def give_back(self, n: int) -> None:
        """Return tokens taken for claims that found nothing to deliver."""
        self.tokens = min(self.burst, self.tokens + n)

    def wait_s(self, now: float) -> float:
        """Seconds until one whole token is available (0 if one is)."""
        self._refill(now)
        missing = 1.0 - self.tokens
        return 0.0 if missing <= 1e-9 else missing / self.rate
