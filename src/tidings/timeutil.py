"""Time as integer microseconds since the Unix epoch, and its ISO-8601 wire form.

Stores and engines keep times as µs integers (exact, sortable, cheap to compare); the API
renders them as ISO-8601 UTC strings. No I/O beyond reading the clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache

US = 1_000_000


def now_us() -> int:
    return time.time_ns() // 1_000


def to_iso(us: int) -> str:
    """`1700000000123456` -> `2023-11-14T22:13:20.123456Z`."""
    # Built from integer parts: float division alone can round the last microsecond.
    seconds, micros = divmod(us, US)
    return f"{_iso_second(seconds)}.{micros:06d}Z"


@lru_cache(maxsize=4096)  # events arrive in bursts: many share their second
def _iso_second(seconds: int) -> str:
    dt = datetime.fromtimestamp(seconds, tz=UTC).replace(tzinfo=None)
    return dt.isoformat(timespec="seconds")


def parse_iso(text: str) -> int:
    """Parse an ISO-8601 timestamp (naive means UTC) into µs; raises ValueError."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds
