"""Inbox offsets: which offset each recipient of an ingested event gets (issue 15).

Pure: the stores draw each user's new top from their counter rows and hand it here.
Each distinct recipient of an event gets one message; a user's messages in one append
take consecutive offsets in event order, ending at the user's new top. Must never do I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import chain


def everyone(_user: str) -> bool:
    """Who a push can reach when any user's may be wanted (a Redis relay: a socket on
    another node), and whose offsets a store works out when nobody said otherwise."""
    return True


def recipients_of(recipients: Sequence[str]) -> list[str]:
    """An event's distinct recipients, first mention first (one message each)."""
    if len(recipients) == 1:  # a file's row: one user (a dict for it costs 5% of a writer)
        return list(recipients)
    return list(dict.fromkeys(recipients))


def count_messages(per_event: Sequence[Sequence[str]]) -> dict[str, int]:
    """Messages per user for events whose recipients are already distinct, in order of
    first mention."""
    return dict(Counter(chain.from_iterable(per_event)))


def assign_offsets(
    per_event: Sequence[Sequence[str]], counts: Mapping[str, int], tops: Mapping[str, int]
) -> list[list[tuple[str, int]]]:
    """(user, offset) for each event's recipients: user u's `counts[u]` messages take
    tops[u] - counts[u] + 1 .. tops[u], in event order."""
    return offsets_from(per_event, first_offsets(counts, tops))


def first_offsets(counts: Mapping[str, int], tops: Mapping[str, int]) -> dict[str, int]:
    """Each user's first new offset, once the top was raised by the user's count."""
    return {user: tops[user] - n + 1 for user, n in counts.items()}


def offsets_from(
    per_event: Sequence[Sequence[str]], first: Mapping[str, int]
) -> list[list[tuple[str, int]]]:
    """(user, offset) for each event's recipients, user u's messages taking first[u],
    first[u] + 1, ... in event order."""
    nxt = dict(first)
    out: list[list[tuple[str, int]]] = []
    for users in per_event:
        row = []
        for user in users:
            pos = nxt[user]
            nxt[user] = pos + 1
            row.append((user, pos))
        out.append(row)
    return out


def place_messages(
    per_event: Sequence[Sequence[str]], seqs: Sequence[int], first: Mapping[str, int]
) -> tuple[list[list[tuple[str, int]]], dict[str, dict[int, int]]]:
    """offsets_from's (user, offset) for each event's recipients, and in the same pass
    each user's messages as {offset: event seq} (`seqs[i]` being event i's seq): the
    rows an append writes, grouped by user (SQLite's insert reads them so, one JSON
    object of small objects, about twice as fast as one array per message)."""
    nxt = dict(first)
    by_user: dict[str, dict[int, int]] = {user: {} for user in first}
    out: list[list[tuple[str, int]]] = []
    for users, seq in zip(per_event, seqs, strict=True):
        row = []
        for user in users:
            pos = nxt[user]
            nxt[user] = pos + 1
            by_user[user][pos] = seq
            row.append((user, pos))
        out.append(row)
    return out, by_user


def messages_by_user(
    recipients: Sequence[Sequence[str]],
) -> tuple[list[list[str]], dict[str, list[int]]]:
    """For the recipient lists of an append's events: each event's distinct recipients
    (first mention first: one message each, as recipients_of), and each user's messages
    as the events they come from (1-based positions, ascending). User u's k-th message
    takes offset top - n + k, n its count (what assign_offsets hands out): PostgreSQL's
    tidings_append places them so, from users sorted with their events."""
    distinct: list[list[str]] = []
    by_user: dict[str, list[int]] = {}
    for n, users in enumerate(recipients, 1):
        row = []
        for user in users:
            mine = by_user.get(user)
            if mine is None:
                by_user[user] = [n]
            elif mine[-1] == n:
                continue  # named twice by this event: still one message
            else:
                mine.append(n)
            row.append(user)
        distinct.append(row)
    return distinct, by_user


def trim_from(top: int, kept_from: int, limit: int) -> int | None:
    """The new lowest offset to keep when a user's inbox outgrows `limit` messages (the
    oldest go first), or None while it fits."""
    if limit <= 0 or top - kept_from + 1 <= limit:
        return None
    return top - limit + 1


def ack_level(acked: int, up_to: int, top: int) -> int:
    """Acks only move forward and never past the last offset handed out."""
    return max(acked, min(up_to, top))
