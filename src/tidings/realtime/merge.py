"""The catch-up/live merge of one connection: each offset sent once, in order, no gap.

A socket gets messages from two sources: pages read from the store (what it missed) and
live pushes (what arrives meanwhile). Both go through `offer`, which releases only the
message right after the last one sent, holds any later one until the gap before it is
filled, and drops any at or below the last sent (a repeat). A held message means live
delivery skipped something (the catch-up still running, or pub/sub lost a push):
`wants_fill` tells the caller to read the store after `last`. Held messages are bounded;
past the bound the farthest go, since the store has them all anyway. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Merger(Generic[T]):
    def __init__(self, after: int, max_held: int = 10_000) -> None:
        self.last = after  # the offset of the last message released
        self.max_held = max_held
        self._held: dict[int, T] = {}

    def offer(self, messages: Iterable[tuple[int, T]]) -> list[T]:
        """Take messages (offset, item) in any order; answer those to send now, in order."""
        for offset, item in messages:
            if offset > self.last:
                self._held[offset] = item
        out: list[T] = []
        while self._held:
            item_next = self._held.pop(self.last + 1, None)
            if item_next is None:
                break
            out.append(item_next)
            self.last += 1
        if len(self._held) > self.max_held:
            for offset in sorted(self._held)[self.max_held :]:
                del self._held[offset]
        return out

    @property
    def wants_fill(self) -> bool:
        """A message is held behind a gap: read the store after `last`."""
        return bool(self._held)

    @property
    def held(self) -> int:
        return len(self._held)
