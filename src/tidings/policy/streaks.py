"""Runs of consecutive failed attempts per destination, and when a write pauses it.

A store folds a batch of outcomes (in the order they happened) into one `Run` per
destination, then combines it with the streak it holds: a success in the batch restarts
the count from the failures after it. `pause_for` says whether the write pauses the
destination and why: a run long enough, or an attempt whose target said it is gone.
Must never do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Run:
    saw_success: bool  # the batch had a success for this destination
    failures: int  # failed attempts after the last success (or all, without one)


def fold_runs(outcomes: Iterable[tuple[str, bool]]) -> dict[str, Run]:
    """(destination_id, failed) in order -> each destination's run in this batch."""
    runs: dict[str, Run] = {}
    for destination_id, failed in outcomes:
        run = runs.get(destination_id, Run(False, 0))
        runs[destination_id] = Run(run.saw_success, run.failures + 1) if failed else Run(True, 0)
    return runs


def next_streak(stored: int, run: Run) -> int:
    return run.failures if run.saw_success else stored + run.failures


def pauses(streak: int, pause_after: int, state: str) -> bool:
    """Does this streak pause an active destination? `pause_after` 0 never pauses."""
    return pause_after > 0 and streak >= pause_after and state == "active"


def pause_reason(streak: int) -> str:
    return f"{streak} consecutive failed attempts"


def pause_for(streak: int, pause_after: int, state: str, gone: str | None) -> str | None:
    """The reason this write pauses the destination, or None: its target gone (`gone`,
    the transport's words) before a run of failures; only an active one is paused."""
    if state != "active":
        return None
    if gone is not None:
        return gone
    return pause_reason(streak) if pauses(streak, pause_after, state) else None
