"""Per-destination rate limits for the delivery engine, in one process or cluster-wide.

Owns the answer to "how many deliveries may destination D start now, at `rate` a
second?" and nothing else: `acquire` grants up to `want` tokens (and says when the next
one will be free), `give_back` returns tokens taken for claims that found nothing.

- `LocalLimiter`: one `policy.ratelimit.TokenBucket` per destination, on an injected
  clock. Limits one process.
- `RedisLimiter`: one bucket per destination in Redis (a hash `{tokens, ts}` under
  `prefix + destination_id`), updated by one Lua script that reads the time from Redis
  `TIME`, so every worker sharing the key space shares one bucket and one clock.

Redis is an accelerator here, never the store of record: a bucket is a few numbers that
may be lost at any moment (keys expire after a minute of inactivity). On any Redis error
the call is answered by the local fallback limiter, one warning is logged per outage,
the fallback stays in use for `retry_redis_after_s`, then Redis is tried again; it
recovers by itself, without a restart.

Must never: block the event loop, wait on Redis longer than its short timeouts, raise a
Redis error to the engine, or hold delivery state (deliveries live in the store; a
rate-limited delivery just waits there).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tidings.policy.ratelimit import TokenBucket, default_burst

log = logging.getLogger(__name__)

Clock = Callable[[], float]
MIN_RETRY_S = 1e-6  # retry_in_s is never 0 when fewer tokens were granted than wanted
IDLE_TTL_S = 60.0  # a Redis bucket outlives its last use by its refill time plus this


@dataclass(frozen=True)
class Grant:
    granted: int  # 0..want tokens taken now
    retry_in_s: float  # when granted < want: seconds until one more token (> 0); else 0


class RateLimiter(Protocol):
    async def acquire(self, destination_id: str, rate: float, want: int) -> Grant: ...

    async def give_back(self, destination_id: str, rate: float, n: int) -> None: ...

    async def close(self) -> None: ...


def _check(rate: float, n: int) -> None:
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a finite number > 0, not {rate!r}")
    if n < 0:
        raise ValueError(f"token count must be >= 0, not {n!r}")


class LocalLimiter:
    """One token bucket per destination, in this process.

    A bucket is created with at most one token, the first time a destination is seen and
    again whenever its rate changes (burst = `default_burst(rate)`), so configuring or
    reconfiguring a destination never releases a burst.
    """

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def _bucket(self, destination_id: str, rate: float, now: float) -> TokenBucket:
        bucket = self._buckets.get(destination_id)
        if bucket is None or bucket.rate != rate:
            bucket = TokenBucket(rate=rate, burst=default_burst(rate), updated=now)
            bucket.tokens = min(bucket.tokens, 1.0)
            self._buckets[destination_id] = bucket
        return bucket

    async def acquire(self, destination_id: str, rate: float, want: int) -> Grant:
        return self.acquire_now(destination_id, rate, want)

    def acquire_now(self, destination_id: str, rate: float, want: int) -> Grant:
        """`acquire` without the coroutine (it never waits)."""
        _check(rate, want)
        now = self._clock()
        bucket = self._bucket(destination_id, rate, now)
        granted = min(want, bucket.available(now))
        if granted > 0:
            bucket.take(granted, now)
        if granted >= want:
            return Grant(granted, 0.0)
        return Grant(granted, max(MIN_RETRY_S, bucket.wait_s(now)))

    async def give_back(self, destination_id: str, rate: float, n: int) -> None:
        self.give_back_now(destination_id, rate, n)

    def give_back_now(self, destination_id: str, rate: float, n: int) -> None:
        _check(rate, n)
        bucket = self._buckets.get(destination_id)
        if bucket is not None and bucket.rate == rate and n > 0:
            bucket.give_back(n)

    def forget(self, destination_id: str) -> None:
        """Drop a destination's bucket (it was deleted)."""
        self._buckets.pop(destination_id, None)

    async def close(self) -> None:
        return None


# KEYS[1]: the bucket. ARGV: mode ("take" | "give"), rate (tokens/s), n, idle TTL (s).
# Answers {granted, microseconds until the next token} (both 0 for "give").
# Times are integer microseconds from Redis TIME; numbers are written with
# string.format because Lua's default number-to-string keeps only 14 digits.
_SCRIPT = """
local key = KEYS[1]
local mode = ARGV[1]
local rate = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local idle = tonumber(ARGV[4])
if rate == nil or rate <= 0 or n == nil or n < 0 or idle == nil or idle < 0 then
  return redis.error_reply('ERR tidings rate limit: bad rate or count')
end
if redis.replicate_commands then redis.replicate_commands() end -- TIME before writes (< 5.0)
local burst = math.max(1, rate / 10)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = tokens + (now - ts) / 1000000 * rate
end
if tokens > burst then tokens = burst end
local granted = 0
local wait_us = 0
if mode == 'give' then
  tokens = math.min(burst, tokens + n)
else
  granted = math.floor(tokens + 1e-9)
  if granted > n then granted = n end
  if granted < 0 then granted = 0 end
  tokens = tokens - granted
  if granted < n then
    wait_us = math.max(1, math.ceil((1 - tokens) / rate * 1000000))
  end
end
redis.call('HSET', key, 'tokens', string.format('%.17g', tokens),
  'ts', string.format('%.0f', now))
redis.call('PEXPIRE', key, string.format('%.0f', math.ceil((burst / rate + idle) * 1000)))
return {granted, wait_us}
"""


class RedisLimiter:
    """One bucket per destination shared by every process using the same Redis keys.

    - A bucket Redis does not hold (new, or expired after `burst/rate + 60` s idle, by
      which time it would be full anyway) starts full: one burst for the whole cluster.
    - A change of rate keeps the tokens, capped at the new burst; while workers disagree
      on a destination's rate (until each has refreshed it) each call refills at its own.
    - Workers take tokens first come, first served: no per-worker share. Every worker
      told "retry in t" wakes at the same time and one of them gets the token.
    - On a Redis error the call is answered by `fallback` (a per-process bucket), so for
      `retry_redis_after_s` after a failure the cluster as a whole may run up to N times
      the rate with N workers. Tokens given back go to whichever side answers.
    - A call waits at most `timeout_s` per Redis round trip (connect, command) and never
      more than `4 * timeout_s` once it has one of the `max_connections` connections
      (more concurrent calls queue for one); while Redis is down only one call at a time
      probes it, the others are answered by the fallback at once.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tidings:rl:",
        fallback: LocalLimiter | None = None,
        retry_redis_after_s: float = 5.0,
        clock: Clock = time.monotonic,
        timeout_s: float = 0.5,
        health_check_interval_s: int = 10,
        max_connections: int = 32,
    ) -> None:
        self._prefix = prefix
        self._fallback = fallback if fallback is not None else LocalLimiter(clock=clock)
        self._retry_after_s = retry_redis_after_s
        self._clock = clock
        # connect + health-check PING + SCRIPT LOAD + EVALSHA, each bounded by timeout_s;
        # the deadline is a backstop in case a socket timeout does not fire.
        self._deadline_s = 4 * timeout_s
        self._pool: ConnectionPool = ConnectionPool.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry_on_timeout=False,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=health_check_interval_s,
            max_connections=max_connections,
        )
        self._slots = asyncio.Semaphore(max_connections)
        self._client: Redis = Redis(connection_pool=self._pool)
        self._script = self._client.register_script(_SCRIPT)  # no I/O: computes the SHA
        self._down_until: float | None = None  # on self._clock; None while Redis is healthy
        self._warned = False
        self._probing = False

    @property
    def degraded(self) -> bool:
        """True while calls are answered by the local fallback (Redis failed lately)."""
        return self._down_until is not None

    async def acquire(self, destination_id: str, rate: float, want: int) -> Grant:
        _check(rate, want)
        reply = await self._run(destination_id, "take", rate, want)
        if reply is None:
            return self._fallback.acquire_now(destination_id, rate, want)
        granted, wait_us = reply
        granted = max(0, min(want, granted))
        if granted >= want:
            return Grant(granted, 0.0)
        return Grant(granted, max(MIN_RETRY_S, wait_us / 1e6))

    async def give_back(self, destination_id: str, rate: float, n: int) -> None:
        _check(rate, n)
        if n == 0:
            return
        if await self._run(destination_id, "give", rate, n) is None:
            self._fallback.give_back_now(destination_id, rate, n)

    async def close(self) -> None:
        try:
            await self._client.aclose(close_connection_pool=True)
        except Exception as e:  # closing a dead connection must not fail shutdown
            log.debug("closing the Redis rate limiter: %r", e)
        await self._fallback.close()

    async def _run(
        self, destination_id: str, mode: str, rate: float, n: int
    ) -> tuple[int, int] | None:
        """Run the script; None when Redis is (or just turned out to be) unavailable."""
        if self._use_fallback():
            return None
        # Callers beyond the pool's size queue here instead of failing with "Too many
        # connections"; they look again once in, since Redis may have failed meanwhile.
        async with self._slots:
            if self._use_fallback():
                return None
            probe = self._down_until is not None
            self._probing = probe  # one call probes; the others use the fallback
            try:
                async with asyncio.timeout(self._deadline_s):
                    reply: Any = await self._script(
                        keys=[self._prefix + destination_id],
                        args=[mode, repr(float(rate)), n, repr(IDLE_TTL_S)],
                    )
                result = (int(reply[0]), int(reply[1]))
            except Exception as e:  # any failure: answer locally; CancelledError passes
                self._failed(e)
                return None
            finally:
                if probe:
                    self._probing = False
        if self._down_until is not None or self._warned:
            log.info("Redis rate limiter is back; limits are cluster-wide again")
            self._down_until = None
            self._warned = False
        return result

    def _use_fallback(self) -> bool:
        if self._down_until is None:
            return False
        return self._probing or self._clock() < self._down_until

    def _failed(self, error: Exception) -> None:
        self._down_until = self._clock() + self._retry_after_s
        if not self._warned:
            self._warned = True
            log.warning(
                "Redis rate limiter unavailable (%s: %s); limiting per process until it "
                "answers again (next try in %.1fs)",
                type(error).__name__,
                error,
                self._retry_after_s,
            )


def make_limiter(redis_url: str | None, prefix: str = "tidings:") -> RateLimiter:
    """Cluster-wide limits through Redis when a URL is configured, else per process."""
    if redis_url is None:
        return LocalLimiter()
    return RedisLimiter(redis_url, prefix=prefix + "rl:", fallback=LocalLimiter())


__all__ = ["Grant", "LocalLimiter", "RateLimiter", "RedisLimiter", "make_limiter"]
