"""The event a `tidings.Consumer` handler is handling, as a context variable: what
`publish` of any client stamps as the cause of the events it sends from inside that
handler (sync handlers run in threads with a copy of the context, so they see it too).

Owns that variable only; must never do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import msgspec

from tidings.policy.consuming import Cause

CURRENT: ContextVar[Any] = ContextVar("tidings_current_lease", default=None)
CAUSE: ContextVar[Cause | None] = ContextVar("tidings_cause", default=None)


def stamps(causation_id: str | None, correlation_id: str | None) -> tuple[str | None, str | None]:
    """The causation and correlation of an event published here: those given, filled
    from the handled event when inside a handler."""
    cause = CAUSE.get()
    if cause is None:
        return causation_id, correlation_id
    return cause.stamps(causation_id, correlation_id)


def stamped(events: Sequence[Any]) -> list[Any]:
    """A batch's events (`EventIn` or dicts), each cause filled as `stamps` does."""
    cause = CAUSE.get()
    if cause is None:
        return list(events)
    out: list[Any] = []
    for event in events:
        if isinstance(event, Mapping):
            causation, correlation = cause.stamps(
                event.get("causation_id"), event.get("correlation_id")
            )
            out.append({**event, "causation_id": causation, "correlation_id": correlation})
        else:
            causation, correlation = cause.stamps(event.causation_id, event.correlation_id)
            out.append(
                msgspec.structs.replace(event, causation_id=causation, correlation_id=correlation)
            )
    return out
