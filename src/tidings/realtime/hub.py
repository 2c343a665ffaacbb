"""The sockets of this node and the live messages for them.

`Hub` keeps, per user, the connections this process holds, and hands each live message
(offset, frame) to every connection of its user, into that connection's bounded send
queue; a queue that is full marks its connection too slow (the gateway closes it with
4008, and the client resumes from its offset). Publishing goes through `publish`, which
takes `Pushes`: messages framed only for the users asked for, since most of a batch's
messages reach nobody. In one process it delivers here directly;
`tidings.realtime.relay` replaces that with Redis pub/sub across nodes. `nudge` tells a
user's connections to read the store (a push may have been missed: the relay was
resubscribing). Live pushes are only a fast path: every message is in the store first,
and a connection that misses one fills the gap from there. Owns no socket I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tidings.model import Appended, EventIn
from tidings.realtime.frames import message_frame
from tidings.timeutil import to_iso

Live = tuple[str, int, bytes]  # (user_id, offset, frame)


NUDGE = -1  # a queue item's offset meaning "read the store", not a message


class Pushes(Protocol):
    """Live messages to publish, framed on demand."""

    def users(self) -> Iterable[str]:
        """The users with a message here."""
        ...

    def frames(self, wanted: Callable[[str], bool]) -> list[Live]:
        """The messages of the users `wanted` names, framed, in offset order per user."""
        ...


@dataclass(frozen=True, slots=True)
class Written:
    """The inbox messages of one append (its events, and what the store answered)."""

    events: Sequence[EventIn]
    appended: Sequence[Appended]

    def users(self) -> set[str]:
        return {user for a in self.appended if not a.duplicate for user, _ in a.inbox}

    def frames(self, wanted: Callable[[str], bool]) -> list[Live]:
        return live_messages(self.events, self.appended, wanted)


@dataclass(frozen=True, slots=True)
class Framed:
    """Messages framed already (tests, tools)."""

    messages: Sequence[Live]

    def users(self) -> set[str]:
        return {user for user, _, _ in self.messages}

    def frames(self, wanted: Callable[[str], bool]) -> list[Live]:
        return [m for m in self.messages if wanted(m[0])]


@dataclass(frozen=True, slots=True)
class Reusing:
    """Pushes of which some users' messages are framed already (every message of each
    user in `built`, as a hub's push built them for its own sockets): those frames are
    handed out again, not built twice (the relay publishes a node's local users too)."""

    pushes: Pushes
    built: Sequence[Live]

    def users(self) -> Iterable[str]:
        return self.pushes.users()

    def frames(self, wanted: Callable[[str], bool]) -> list[Live]:
        done = {user for user, _, _ in self.built}
        rest = self.pushes.frames(lambda user: user not in done and wanted(user))
        return [m for m in self.built if wanted(m[0])] + rest


class Connection:
    _ids = itertools.count(1)

    def __init__(self, user_id: str, max_queue: int, on_overflow: Callable[[], None]) -> None:
        self.user_id = user_id
        self.id = next(Connection._ids)
        # One slot more than the bound, for a nudge when the queue is full of messages.
        self.queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(max_queue + 1)
        self.max_queue = max_queue
        self.overflowed = False
        self.stale = False  # set by a nudge: the sender reads the store before going on
        self._on_overflow = on_overflow

    def push(self, offset: int, frame: bytes) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= self.max_queue:
            self.overflowed = True
            self._on_overflow()
            return
        self.queue.put_nowait((offset, frame))

    def nudge(self) -> None:
        if self.stale or self.overflowed:
            return
        self.stale = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait((NUDGE, b""))


class Hub:
    def __init__(self) -> None:
        self._by_user: dict[str, set[Connection]] = {}
        self.total = 0
        # Called with a user id when its first connection here opens / last one closes
        # (the Redis relay subscribes and unsubscribes its channel).
        self.on_first: Callable[[str], None] = lambda _user: None
        self.on_last: Callable[[str], None] = lambda _user: None
        # Called with each connection as it opens / closes (the relay's presence).
        self.on_add: Callable[[Connection], None] = lambda _conn: None
        self.on_remove: Callable[[Connection], None] = lambda _conn: None
        # Where published messages go: this node by default, the relay when there is one.
        self.publish: Callable[[Pushes], object] = self.push
        # Whether a push for this user can reach anyone: alone, only the users with a
        # socket here (so a batch for offline users builds no frames at all); the relay
        # answers yes for everyone, since a socket on another node may want it.
        self.reaches: Callable[[str], bool] = self._by_user.__contains__
        # Whether a push can reach anyone at all: alone, while a socket is open here.
        self.reaches_anyone: Callable[[], bool] = lambda: bool(self._by_user)

    def add(self, conn: Connection) -> None:
        conns = self._by_user.setdefault(conn.user_id, set())
        conns.add(conn)
        self.total += 1
        if len(conns) == 1:
            self.on_first(conn.user_id)
        self.on_add(conn)

    def remove(self, conn: Connection) -> None:
        conns = self._by_user.get(conn.user_id)
        if conns is None or conn not in conns:
            return
        conns.discard(conn)
        self.total -= 1
        self.on_remove(conn)
        if not conns:
            del self._by_user[conn.user_id]
            self.on_last(conn.user_id)

    def connections(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    async def presence(self, user_id: str) -> int:
        """The user's sockets on every node (here: this one; the relay asks Redis)."""
        return self.connections(user_id)

    def users(self) -> list[str]:
        return list(self._by_user)

    def all_connections(self) -> list[Connection]:
        return [conn for conns in self._by_user.values() for conn in conns]

    def nudge(self, user_id: str) -> None:
        """Have the user's connections here read the store for what they may have missed."""
        for conn in self._by_user.get(user_id, ()):
            conn.nudge()

    def push(self, pushes: Pushes) -> list[Live]:
        """Deliver to the sockets here, framing the messages of their users only; answers
        the frames built."""
        if not self._by_user:
            return []
        built = pushes.frames(self._by_user.__contains__)
        self.deliver(built)
        return built

    def deliver(self, messages: Sequence[Live]) -> None:
        for user_id, offset, frame in messages:
            for conn in self._by_user.get(user_id, ()):
                conn.push(offset, frame)


def live_messages(
    events: Sequence[EventIn],
    appended: Sequence[Appended],
    reaches: Callable[[str], bool] = lambda _user: True,
) -> list[Live]:
    """The message frames an append wrote, one per (recipient, offset), for the
    recipients `reaches` names."""
    out: list[Live] = []
    for event, a in zip(events, appended, strict=True):
        if a.duplicate or not a.inbox:
            continue
        wanted = [(user_id, offset) for user_id, offset in a.inbox if reaches(user_id)]
        if not wanted:
            continue
        received = to_iso(a.received_at)
        payload = bytes(event.payload)
        for user_id, offset in wanted:
            out.append(
                (user_id, offset, message_frame(offset, a.id, event.topic, payload, received))
            )
    return out
