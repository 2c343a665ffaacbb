"""Live inbox messages and presence across API nodes, over Redis.

With `TIDINGS_REDIS_URL`, `RedisRelay` takes over the hub's `publish`, `on_first`,
`on_last`, `on_add`, `on_remove` and `presence` hooks:

- Messages go on one Redis channel per user (`tidings:inbox:<user>`), and a node
  subscribes to a user's channel only while it holds a socket of that user, so no node
  reads every message; a message is published only if some node subscribes to its
  user's channel (one PUBSUB NUMSUB a round), and framed only then. The publishing node
  also delivers to its own sockets directly (and skips its own messages coming back
  from Redis); the frames it built for them are the ones it publishes.
- Every socket writes a heartbeat into a sorted set per user (`tidings:presence:<user>`,
  member = connection id, score = expiry in ms), renewed every third of
  `TIDINGS_WS_PRESENCE_TTL_S`; presence counts the unexpired members, so the users of a
  crashed node go offline within the TTL.

Redis is a fast path only: every message is in the store before it is published. A push
lost here shows up as a gap the socket fills from the store; when the subscription is
confirmed (a user's first socket here, or after Redis was away), every socket concerned
is nudged to read the store, since what was published before was missed. Publishing
never blocks or fails a request; the subscriber reconnects by itself. Owns no state of record.

Writes (publishes, a socket's first heartbeat, its leaving) are queued and sent by one
task, a pipeline per round: a reconnect storm of thousands of sockets costs a few round
trips, not a connection each (redis-py's pool holds at most 100).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline, PubSub
from redis.exceptions import RedisError

from tidings.engine.signals import RECONNECT_MAX_S, close_quietly
from tidings.metrics import RELAY_ERRORS
from tidings.policy.inbox import everyone
from tidings.realtime.hub import Connection, Hub, Pushes, Reusing

log = logging.getLogger(__name__)
TIMEOUT_S = 0.5
POLL_S = 0.05  # how long the listener waits for a message before applying (un)subscribes
NUMSUB_CHUNK = 5000  # channels asked about per PUBSUB NUMSUB


class _Relayed(msgspec.Struct, array_like=True, frozen=True):
    node: str
    messages: list[tuple[int, bytes]]


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Relayed).decode


def _users_of(outbox: Sequence[Pushes]) -> list[str]:
    users: set[str] = set()
    for pushes in outbox:
        users.update(pushes.users())
    return list(users)


class RedisRelay:
    def __init__(
        self, url: str, hub: Hub, *, presence_ttl_s: float = 30.0, prefix: str = "tidings:"
    ) -> None:
        self._client = aioredis.Redis.from_url(
            url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S
        )
        self._hub = hub
        self._node = secrets.token_hex(8)
        self._inbox = prefix + "inbox:"
        self._presence = prefix + "presence:"
        self._ttl_ms = int(presence_ttl_s * 1000)
        self._pending: dict[str, bool] = {}  # user -> subscribe (True) / unsubscribe
        # Waiting for the writer: messages to publish, sockets that opened / closed.
        self._outbox: list[Pushes] = []
        self._joined: list[Connection] = []
        self._left: list[Connection] = []
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._failing = False

    def install(self) -> None:
        """Take over the hub's hooks and start listening and heartbeating."""
        hub = self._hub
        hub.publish = self.publish
        hub.reaches = everyone  # a socket on another node may want any of them
        hub.reaches_anyone = lambda: True
        hub.on_first = lambda user: self._pending.__setitem__(user, True)
        hub.on_last = lambda user: self._pending.__setitem__(user, False)
        hub.on_add = self._joined_now
        hub.on_remove = self._left_now
        hub.presence = self.presence  # type: ignore[method-assign]
        self._loops = [
            asyncio.create_task(self._listen(), name="tidings-relay-listen"),
            asyncio.create_task(self._heartbeats(), name="tidings-relay-presence"),
            asyncio.create_task(self._writer(), name="tidings-relay-writer"),
        ]

    def _joined_now(self, conn: Connection) -> None:
        self._joined.append(conn)
        self._wake.set()

    def _left_now(self, conn: Connection) -> None:
        self._left.append(conn)
        self._wake.set()

    # -------------------------------------------------------------- publishing
    def publish(self, pushes: Pushes) -> None:
        built = self._hub.push(pushes)  # this node's sockets at once
        self._outbox.append(Reusing(pushes, built) if built else pushes)
        self._wake.set()

    async def _writer(self) -> None:
        """Send what waits, in order, one pipeline per round."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        joined, self._joined = self._joined, []
        left, self._left = self._left, []
        if not (outbox or joined or left):
            return
        try:
            by_user = self._framed(outbox, await self._heard(_users_of(outbox)))
            async with self._client.pipeline(transaction=False) as pipe:
                for user, items in by_user.items():
                    pipe.publish(self._inbox + user, _encode(_Relayed(self._node, items)))
                self._queue_beats(pipe, joined)  # before the leaves: one may be both
                for conn in left:
                    pipe.zrem(self._presence + conn.user_id, f"{self._node}:{conn.id}")
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._warn(exc)
        else:
            self._failing = False

    @staticmethod
    def _framed(outbox: Sequence[Pushes], heard: set[str]) -> dict[str, list[tuple[int, bytes]]]:
        """The heard users' messages, framed, in publishing order (a user's offsets
        rise along it, but for requests committed side by side: the sockets' mergers
        hold and fill those). A push that fails to frame is left to the store (logged,
        counted): the writer goes on with the others."""
        by_user: dict[str, list[tuple[int, bytes]]] = {}
        for pushes in outbox:
            try:
                framed = pushes.frames(heard.__contains__)
            except Exception:
                RELAY_ERRORS.inc()
                log.exception("a live push could not be framed; its sockets read the store")
                continue
            for user, offset, frame in framed:
                by_user.setdefault(user, []).append((offset, frame))
        return by_user

    async def _heard(self, users: list[str]) -> set[str]:
        """The users whose channel some node subscribes to now (PUBSUB NUMSUB, one round
        trip): only theirs are published. A batch for 6,300 users nobody holds a socket
        of cost ~95 ms of this process's CPU in PUBLISHes (measured here); this asks
        ~5 ms. Nothing is missed: these messages are committed before the question, so
        a subscription Redis takes after it is confirmed after it too, and the
        confirmation has the user's sockets read the store (`_listen`). Only the users
        heard have their messages framed: ~11 ms for a batch's 10,000 otherwise."""
        heard: set[str] = set()
        for i in range(0, len(users), NUMSUB_CHUNK):
            chunk = users[i : i + NUMSUB_CHUNK]
            counts = await self._client.pubsub_numsub(*[self._inbox + user for user in chunk])
            # (channel, subscribers) in the order asked
            heard.update(user for user, (_, n) in zip(chunk, counts, strict=True) if n)
        return heard

    def _warn(self, exc: Exception) -> None:
        RELAY_ERRORS.inc()
        if not self._failing:
            log.warning("Redis relay unavailable (%s); sockets catch up from the store", exc)
        self._failing = True

    # -------------------------------------------------------------- subscribing
    async def _listen(self) -> None:
        delay = 0.2
        while True:
            pubsub = self._client.pubsub()
            try:
                self._pending.clear()
                users = self._hub.users()
                await pubsub.subscribe(*[self._inbox + u for u in users] or [self._inbox])
                delay = 0.2
                while True:
                    await self._apply(pubsub)
                    message = await pubsub.get_message(timeout=POLL_S)
                    if message is None:
                        continue
                    if message["type"] == "message":
                        self._received(message["channel"], message["data"])
                    elif message["type"] == "subscribe":
                        # From here on Redis brings this user's pushes. What was
                        # published before (while the socket read the store, or while
                        # Redis was away) came on no channel we heard: the sockets read
                        # the store once more.
                        self._hub.nudge(self._user_of(message["channel"]))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.debug("Redis relay subscription lost (%s); reconnecting", exc)
            finally:
                await close_quietly(pubsub)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _apply(self, pubsub: PubSub) -> None:
        if not self._pending:
            return
        changes, self._pending = self._pending, {}
        on = [u for u, sub in changes.items() if sub and self._hub.connections(u)]
        off = [u for u, sub in changes.items() if not sub and not self._hub.connections(u)]
        if on:
            await pubsub.subscribe(*[self._inbox + u for u in on])  # confirmed: a nudge
        if off:
            await pubsub.unsubscribe(*[self._inbox + u for u in off])

    def _received(self, channel: bytes, data: bytes) -> None:
        try:
            relayed = _decode(data)
        except msgspec.DecodeError:
            return
        if relayed.node == self._node:
            return  # delivered here when it was published
        user = self._user_of(channel)
        self._hub.deliver([(user, offset, frame) for offset, frame in relayed.messages])

    def _user_of(self, channel: bytes) -> str:
        return channel.decode()[len(self._inbox) :]

    # -------------------------------------------------------------- presence
    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            await self._beat(self._hub.all_connections())

    def _queue_beats(self, pipe: Pipeline, conns: Sequence[Connection]) -> None:
        expires = int(time.time() * 1000) + self._ttl_ms
        for conn in conns:
            key = self._presence + conn.user_id
            pipe.zadd(key, {f"{self._node}:{conn.id}": expires})
            pipe.pexpire(key, self._ttl_ms)

    async def _beat(self, conns: Sequence[Connection]) -> None:
        if not conns:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                self._queue_beats(pipe, conns)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._warn(exc)

    async def presence(self, user_id: str) -> int:
        """The user's live sockets on every node; this node's alone if Redis is away."""
        key = self._presence + user_id
        now = int(time.time() * 1000)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.zremrangebyscore(key, "-inf", now)
                pipe.zcard(key)
                _, count = await pipe.execute()
            return int(count)
        except (RedisError, OSError):
            return self._hub.connections(user_id)

    async def close(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self._flush()  # the last leaves, so presence drops at once
        await self._client.aclose()
