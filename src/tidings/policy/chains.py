"""The causation tree of a correlation, laid out for `GET /v1/events/{id}/chain`.

Convention (as in most event stores): an event that starts a conversation names no
correlation; the events that follow from it name its id as their `correlation_id`, and
each names the event it follows from as its `causation_id`. So the correlation of an event
is its `correlation_id`, or its own id when it has none.

This module only orders events the store has read: parents before children, siblings
oldest first, every event exactly once, whatever ids the clients wrote (a causation_id
outside the correlation, naming the event itself, or a cycle). It does no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Linked(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def seq(self) -> int: ...

    @property
    def causation_id(self) -> str | None: ...

    @property
    def correlation_id(self) -> str | None: ...


E = TypeVar("E", bound=Linked)


def correlation_of(event: Linked) -> str:
    """The correlation an event belongs to: its correlation_id, or its own id."""
    return event.correlation_id or event.id


@dataclass(frozen=True, slots=True)
class Node(Generic[E]):
    event: E
    depth: int  # 0 for a root
    parent_id: str | None  # the causation_id when that event is in the tree, else None


def causation_tree(events: Sequence[E]) -> list[Node[E]]:
    """`events` in depth-first pre-order of their causation links: each root (an event
    whose cause is not among them) and then, depth first, what it caused, oldest first.

    Events caught in a cycle of causation links have no root above them: the oldest
    member of each cycle becomes a root (and what hangs below the cycle stays below it),
    so every event appears exactly once.
    """
    by_id = {e.id: e for e in events}
    children: dict[str, list[E]] = {}
    roots: list[E] = []
    for e in sorted(by_id.values(), key=lambda e: e.seq):
        cause = e.causation_id
        if cause is None or cause == e.id or cause not in by_id:
            roots.append(e)
        else:
            children.setdefault(cause, []).append(e)

    out: list[Node[E]] = []
    placed: set[str] = set()

    def walk(root: E) -> None:
        # Iterative: a chain may be a thousand events deep.
        stack: list[tuple[E, int, str | None]] = [(root, 0, None)]
        while stack:
            e, depth, parent = stack.pop()
            if e.id in placed:
                continue
            placed.add(e.id)
            out.append(Node(e, depth, parent))
            for child in reversed(children.get(e.id, ())):
                stack.append((child, depth + 1, e.id))

    for root in roots:
        walk(root)
    if len(placed) < len(by_id):
        # Every event left has its cause among the events and no root above it, so going
        # up from any of them ends in a cycle: root that cycle at its oldest member.
        for e in sorted(by_id.values(), key=lambda e: e.seq):
            if e.id in placed:
                continue
            path: list[E] = []
            on_path: set[str] = set()
            at = e
            while at.id not in on_path:
                path.append(at)
                on_path.add(at.id)
                cause = at.causation_id
                assert cause is not None  # not a root, so its cause is among the events
                at = by_id[cause]
            cycle = path[path.index(at) :]
            walk(min(cycle, key=lambda c: c.seq))
    return out
