"""Arguments people type that the API takes in another form: times as "2h" ago.

Owns parsing `--since`/`--until` values: an ISO-8601 time passes through as given (the
API validates it and names the field when it is wrong), a duration (`90s`, `30m`,
`1h30m`, `7d`, `2w`) is that long before `now`. Pure: `now` is an argument, no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")
_DURATION = re.compile(r"^(?:\d+[smhdw])+$")


def duration_s(text: str) -> int | None:
    """Seconds in a duration like `1h30m`, or None when `text` is not one."""
    if not _DURATION.match(text):
        return None
    return sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))


def iso(moment: datetime) -> str:
    """UTC ISO-8601 with microseconds and a Z, the form the API answers."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def time_arg(text: str, now: datetime) -> str:
    """What to send for a `--since`/`--until` value: `now`, a duration ago, or the
    ISO-8601 text as given."""
    text = text.strip()
    if text == "now":
        return iso(now)
    seconds = duration_s(text)
    if seconds is None:
        return text
    return iso(now - timedelta(seconds=seconds))
