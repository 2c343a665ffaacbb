"""The sockets of this node and the live messages for them.

`Hub` keeps, per user, the connections this process holds, and hands each live message
(offset, frame) to every connection of its user, into that connection's bounded send
queue; a queue that is full marks its connection too slow (the gateway closes it with
4008, and the client resumes from its offset). Publishing goes through `publish`: in one
process it delivers here directly; `tidings.realtime.relay` replaces that with Redis
pub/sub across nodes. Live pushes are only a fast path: every message is in the store
first, and a connection that misses one fills the gap from there. Owns no socket I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from tidings.model import Appended, EventIn
from tidings.realtime.frames import message_frame
from tidings.timeutil import to_iso

Live = tuple[str, int, bytes]  # (user_id, offset, frame)


class Connection:
    def __init__(self, user_id: str, max_queue: int, on_overflow: Callable[[], None]) -> None:
        self.user_id = user_id
        self.queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(max_queue)
        self.overflowed = False
        self._on_overflow = on_overflow

    def push(self, offset: int, frame: bytes) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait((offset, frame))
        except asyncio.QueueFull:
            self.overflowed = True
            self._on_overflow()


class Hub:
    def __init__(self) -> None:
        self._by_user: dict[str, set[Connection]] = {}
        self.total = 0
        # Called with a user id when its first connection here opens / last one closes
        # (the Redis relay subscribes and unsubscribes its channel).
        self.on_first: Callable[[str], None] = lambda _user: None
        self.on_last: Callable[[str], None] = lambda _user: None
        # Where published messages go: this node by default, the relay when there is one.
        self.publish: Callable[[Sequence[Live]], None] = self.deliver

    def add(self, conn: Connection) -> None:
        conns = self._by_user.setdefault(conn.user_id, set())
        conns.add(conn)
        self.total += 1
        if len(conns) == 1:
            self.on_first(conn.user_id)

    def remove(self, conn: Connection) -> None:
        conns = self._by_user.get(conn.user_id)
        if conns is None or conn not in conns:
            return
        conns.discard(conn)
        self.total -= 1
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

    def deliver(self, messages: Sequence[Live]) -> None:
        for user_id, offset, frame in messages:
            for conn in self._by_user.get(user_id, ()):
                conn.push(offset, frame)


def live_messages(events: Sequence[EventIn], appended: Sequence[Appended]) -> list[Live]:
    """The message frames an append wrote, one per (recipient, offset)."""
    out: list[Live] = []
    for event, a in zip(events, appended, strict=True):
        if a.duplicate or not a.inbox:
            continue
        received = to_iso(a.received_at)
        payload = bytes(event.payload)
        for user_id, offset in a.inbox:
            out.append(
                (user_id, offset, message_frame(offset, a.id, event.topic, payload, received))
            )
    return out
