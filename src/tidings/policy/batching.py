"""Group commit's pure part: which waiting jobs make up the next group, and whose answers
are whose once the group's one write has answered for all of them.

A store that gathers concurrent writes into one transaction (SQLite's writer, the
PostgreSQL ingest group) takes jobs in arrival order and answers each job with its own
slice of the merged answer, in order. Must never do I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def take_group(sizes: Sequence[int], limit: int) -> int:
    """How many of the waiting jobs (their sizes, in arrival order) the next group takes:
    the first always (a job larger than `limit` goes alone), then the following ones as
    long as the group's total stays within `limit`."""
    if not sizes:
        return 0
    total = sizes[0]
    taken = 1
    for size in sizes[1:]:
        if total + size > limit:
            break
        total += size
        taken += 1
    return taken


def group_limit(waiting: int, free: int, floor: int, cap: int) -> int:
    """Events the next group may take when `waiting` events wait and `free` groups may
    start now: an even share, so that a burst is written by groups side by side (each on
    a connection of its own, the database's cores in parallel) instead of one group
    after another; never below `floor` (a group's fixed cost: a call and a commit) nor
    above `cap`."""
    if free <= 1:
        return cap
    return max(floor, min(cap, -(-waiting // free)))


def split_answers(sizes: Sequence[int], answers: Sequence[T]) -> list[list[T]]:
    """The answers of a merged write, back to the jobs that were merged, in order: job i
    gets the `sizes[i]` answers after those of the jobs before it."""
    if sum(sizes) != len(answers):
        raise ValueError(f"{len(answers)} answers for {sum(sizes)} items")
    out: list[list[T]] = []
    start = 0
    for size in sizes:
        out.append(list(answers[start : start + size]))
        start += size
    return out
