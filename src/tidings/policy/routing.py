"""Fan-out routing: which destinations want an event.

A `Router` is built once from the current destinations and answers, for a topic and a
payload, the destinations whose topic patterns match and whose filter holds. Exact
topics are a dict lookup and wildcard patterns a scan of prefixes, so routing stays
cheap with many destinations. The payload is decoded lazily, only when some matching
destination has a filter. Must never do I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tidings.policy.filters import Filter, compile_filter
from tidings.policy.topics import pattern_prefix


@dataclass(frozen=True)
class Route:
    """One destination as the router sees it."""

    destination_id: str
    topics: tuple[str, ...]
    filter: dict[str, Any] | None = None
    enabled: bool = True


@dataclass
class Router:
    _exact: dict[str, list[str]] = field(default_factory=dict)
    _prefixes: list[tuple[str, str]] = field(default_factory=list)
    _filters: dict[str, Filter] = field(default_factory=dict)
    _order: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, routes: Iterable[Route]) -> Router:
        router = cls()
        for position, route in enumerate(routes):
            if not route.enabled:
                continue
            router._order[route.destination_id] = position
            if route.filter is not None:
                router._filters[route.destination_id] = compile_filter(route.filter)
            for pattern in route.topics:
                prefix = pattern_prefix(pattern)
                if prefix is None:
                    router._exact.setdefault(pattern, []).append(route.destination_id)
                else:
                    router._prefixes.append((prefix, route.destination_id))
        return router

    @property
    def by_topic_only(self) -> bool:
        """True when no destination has a filter: every event of a topic goes to the same
        destinations, so a caller routing many events may route each topic once."""
        return not self._filters

    def route(self, topic: str, load_payload: Callable[[], Any]) -> list[str]:
        """Destination ids for this event, each once, in destination creation order."""
        candidates = set(self._exact.get(topic, ()))
        for prefix, destination_id in self._prefixes:
            if topic.startswith(prefix) and len(topic) > len(prefix):
                candidates.add(destination_id)
        if not candidates:
            return []
        payload: Any = None
        loaded = False
        chosen = []
        for destination_id in sorted(candidates, key=self._order.__getitem__):
            flt = self._filters.get(destination_id)
            if flt is not None:
                if not loaded:
                    payload, loaded = load_payload(), True
                if not flt.matches(payload):
                    continue
            chosen.append(destination_id)
        return chosen
