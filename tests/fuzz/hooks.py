"""Schemathesis hooks for the API fuzz run (loaded through SCHEMATHESIS_HOOKS).

Every URL a generated body carries (a destination's `url`, `alert_url`) is pointed at
127.0.0.1 with its port and path kept: the fuzzed server then validates real-looking
destinations (so the stateful phase gets ids to walk) and no generated host name is ever
resolved or reached. The server runs without a worker besides, so nothing is sent at all.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import schemathesis


def _loopback(value: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return value
    if not parts.netloc:
        return value
    netloc = "127.0.0.1" + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if isinstance(body, dict):
        for field in ("url", "alert_url"):
            if isinstance(body.get(field), str):
                body[field] = _loopback(body[field])
    return body
