"""Schemathesis hooks for the API fuzz run (loaded through SCHEMATHESIS_HOOKS).

Every URL a body meant to be valid carries (a destination's `url`, `alert_url`) is
pointed at 127.0.0.1 with its port and path kept, in every phase: the fuzzed server then
validates real-looking destinations (so the stateful phase gets ids to walk). A body
meant to break the schema keeps its URLs and is refused. The server runs without a
worker, so no generated host is ever resolved or sent to. A lease's valid `wait_ms` is
kept under the run's request timeout.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import schemathesis
from schemathesis.core.parameters import ParameterLocation

from tidings.api.groups import MAX_WAIT_MS


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


# A pull group's lease long-polls up to `wait_ms` (30 s at most) while nothing is due:
# a right answer, which a wait past the run's --request-timeout (10 s) would report as
# a network error. Generated waits are kept under it. A wait past the document's own
# maximum is left as generated: it is a negative case, answered 400 at once, and capping
# it would turn it into a valid request the run then reports as wrongly accepted.
MAX_FUZZ_WAIT_MS = 2000


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    # A case hook, not a body hook: schemathesis runs `map_body` in the fuzzing phase
    # only, and the coverage phase's cases then went out as generated (a lease waiting
    # 29,999 ms outlived the request timeout).
    body = case.body
    if not isinstance(body, dict):
        return case
    # A body meant to break the schema keeps its URLs: pointing a host that is too long
    # or malformed at 127.0.0.1 would mend the very fault the case is there to send.
    if case.meta is None or not case.meta.is_negative_at(ParameterLocation.BODY):
        for field in ("url", "alert_url"):
            if isinstance(body.get(field), str):
                body[field] = _loopback(body[field])
    wait = body.get("wait_ms")
    if (
        isinstance(wait, int)
        and not isinstance(wait, bool)
        and MAX_FUZZ_WAIT_MS < wait <= MAX_WAIT_MS
    ):
        body["wait_ms"] = MAX_FUZZ_WAIT_MS
    return case
