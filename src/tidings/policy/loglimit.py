"""How many log lines of one kind a key (a destination) may write: a sliding window.

`LineLimiter.admit` lets at most `limit` lines per key through in any `window_s` seconds
and counts the rest; `LineLimiter.due` hands back, once a window after the first line it
held back, how many it held back since (so the caller can write one summary line), and
forgets keys that have been quiet for a window. Admitting costs one dict lookup and a
deque append: it runs for every dead letter of a failing destination. Must never do I/O
or read the clock itself (`now` is seconds on the caller's monotonic clock).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Key:
    times: deque[float]  # when the last (at most `limit`) admitted lines were written
    held: int = 0  # lines held back since `since`
    since: float = 0.0  # when the first of those was held back


@dataclass(frozen=True, slots=True)
class Held(Generic[K]):
    """`count` lines of `key` held back between `since` and `until`."""

    key: K
    count: int
    since: float
    until: float


@dataclass
class LineLimiter(Generic[K]):
    limit: int  # lines per key in any window, >= 1
    window_s: float  # > 0
    _keys: dict[K, _Key] = field(default_factory=dict, init=False, repr=False)
    _holding: dict[K, _Key] = field(default_factory=dict, init=False, repr=False)
    _swept_at: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_s <= 0:
            raise ValueError("limit must be >= 1 and window_s > 0")

    def admit(self, key: K, now: float) -> bool:
        """May a line of `key` be written at `now`? If not, it is counted as held back."""
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Key(deque(maxlen=self.limit))
        times = state.times
        if len(times) < self.limit or now - times[0] >= self.window_s:
            times.append(now)  # the deque drops the oldest
            return True
        if state.held == 0:
            state.since = now
            self._holding[key] = state
        state.held += 1
        return False

    def due(self, now: float, everything: bool = False) -> list[Held[K]]:
        """Keys whose lines have been held back for a window (all of them with
        `everything`, e.g. at shutdown): how many each, and their count starts again."""
        out: list[Held[K]] = []
        for key, state in list(self._holding.items()):
            if everything or now - state.since >= self.window_s:
                out.append(Held(key, state.held, state.since, now))
                state.held = 0
                del self._holding[key]
        self._sweep(now)
        return out

    def _sweep(self, now: float) -> None:
        """Forget keys with no line in the last window and none held back (once a window),
        so the table holds only destinations that logged lately."""
        if self._swept_at is not None and now - self._swept_at < self.window_s:
            return
        self._swept_at = now
        quiet = [
            key
            for key, state in self._keys.items()
            if state.held == 0 and (not state.times or now - state.times[-1] >= self.window_s)
        ]
        for key in quiet:
            del self._keys[key]

    def __len__(self) -> int:
        """How many keys it remembers."""
        return len(self._keys)
