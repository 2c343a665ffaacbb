"""What a `tidings.Consumer` decides without I/O: which handler takes an event, the
error text a failed handler's nack carries, the causation and correlation an event
published from inside a handler gets, and which held leases are due for extension.

Owns those rules; must never do I/O (the Consumer in tidings.sdk runs the calls).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tidings.policy.topics import matches, pattern_error

H = TypeVar("H")
MAX_ERROR = 4096  # the API keeps this many characters of a nack's error


class Routes(Generic[H]):
    """Handlers by topic pattern, in the order they were added: an event goes to the
    first whose pattern matches its topic (patterns as destinations' topics: exact,
    `order.*`, or `*`), or to none."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, H]] = []
        self._cache: dict[str, H | None] = {}

    def add(self, pattern: str, handler: H) -> None:
        problem = pattern_error(pattern)
        if problem is not None:
            raise ValueError(f"handler pattern {pattern!r} {problem}")
        self._routes.append((pattern, handler))
        self._cache.clear()

    def find(self, topic: str) -> H | None:
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = next((h for p, h in self._routes if matches(p, topic)), None)
        if len(self._cache) < 10_000:  # topics are few; never grow without bound
            self._cache[topic] = found
        return found

    @property
    def patterns(self) -> list[str]:
        return [p for p, _ in self._routes]


def error_text(exc: BaseException) -> str:
    """The last line of the exception's traceback (`ValueError: no such user`), what a
    nack records as the attempt's error; cut to what the API keeps."""
    lines = traceback.format_exception_only(type(exc), exc)
    text = lines[-1].strip() if lines else type(exc).__name__
    return text[:MAX_ERROR] or type(exc).__name__


@dataclass(frozen=True)
class Cause:
    """The event being handled, as the events it causes name it."""

    id: str
    correlation_id: str | None

    def stamps(
        self, causation_id: str | None, correlation_id: str | None
    ) -> tuple[str | None, str | None]:
        """(causation_id, correlation_id) for an event published while handling this
        one: what the caller gave, else this event and its correlation (or its id: the
        root of a chain is its own correlation). A cause given that is another event
        keeps its own correlation (the server's, or the caller's)."""
        if causation_id is not None and causation_id != self.id:
            return causation_id, correlation_id
        if causation_id is None:
            causation_id = self.id
        if correlation_id is None:
            correlation_id = self.correlation_id or self.id
        return causation_id, correlation_id


def due_for_extension(
    renewed_at: Iterable[tuple[str, float]], now: float, lease_s: float
) -> list[str]:
    """The held leases to extend now: those renewed (leased or extended) a third of a
    lease or longer ago, so two more tries fit before one runs out."""
    return [lease_id for lease_id, at in renewed_at if now - at >= lease_s / 3]
