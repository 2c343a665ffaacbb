"""Routes: the WebSocket gateway (`GET /v1/ws`, `GET /ws/{user_id}`), socket tokens
(`POST /v1/users/{user_id}/token`) and presence (`GET /v1/presence`).

A socket is refused before the upgrade: 401 for a bad, expired or other user's token,
503 past `TIDINGS_WS_MAX_CONNECTIONS` or the connect rate. Once open it gets a welcome
frame with the user's top offset, then the messages after `after` from the store, then
live ones, all through one `Merger` (each offset once, in order, no gap; a gap in the
live stream is filled from the store). A client that cannot keep up (its send queue
full) is closed with 4008. Pings keep it alive (aiohttp's heartbeat closes a socket
that stops answering). The token secret lives in the store's meta table and is never
logged or sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence

import msgspec
from aiohttp import WSMsgType, web

from tidings.api.body import read_bytes
from tidings.api.errors import ApiError, error_response
from tidings.api.http import SETTINGS, STORE, decode_or, json_response
from tidings.api.users import offset_param, user_id_of
from tidings.metrics import WS_CLOSED_SLOW, WS_FRAMES, WS_REFUSED, WS_SOCKETS
from tidings.model import MAX_KEY_LENGTH, Appended, EventIn, InboxMessage
from tidings.policy.ratelimit import TokenBucket
from tidings.policy.validation import FieldError
from tidings.realtime import frames, tokens
from tidings.realtime.hub import NUDGE, Connection, Hub, Written
from tidings.realtime.merge import Merger
from tidings.store.base import Store, StoreError
from tidings.timeutil import to_iso

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
SECRET_META_KEY = "ws_token_secret"
DEFAULT_TTL_S = 3600
MAX_TTL_S = 86_400
PAGE = 500  # messages read from the store per catch-up step
CLOSE_TOO_SLOW = 4008


class Gateway:
    """What the socket routes share in one process: the hub, the token secret, limits."""

    def __init__(self, hub: Hub, max_connections: int, connect_rate: float, queue: int) -> None:
        self.hub = hub
        self.secret = b""
        self.max_connections = max_connections
        self.queue = queue
        self._connects = TokenBucket(rate=connect_rate, burst=max(1.0, connect_rate))

    def admit(self) -> tuple[str, str] | None:
        """None when one more socket may open now; else why not, as a metric label and a
        message (for the 503)."""
        if self.hub.total >= self.max_connections:
            return "capacity", "this node holds its most sockets (TIDINGS_WS_MAX_CONNECTIONS)"
        now = time.monotonic()
        if self._connects.available(now) < 1:
            return "rate", "too many sockets opening at once; retry in a moment"
        self._connects.take(1, now)
        return None


GATEWAY = web.AppKey("gateway", Gateway)
LIVE_FRAMES = WS_FRAMES.labels("live")
STORE_FRAMES = WS_FRAMES.labels("store")


def push_live(
    app: web.Application, events: Sequence[EventIn], appended: Sequence[Appended]
) -> None:
    """Hand the inbox messages an append wrote to the sockets that wait for them (on
    this node or, through the relay, on others). They are stored already: a push lost
    here is read from the store by the socket that notices the gap, or on reconnect.
    Frames are built only for users a socket waits for (the relay asks Redis which,
    after this request is answered)."""
    hub = app[GATEWAY].hub
    # (with no socket to reach, a batch for 10,000 offline messages costs nothing here)
    if hub.reaches_anyone() and any(a.inbox for a in appended):
        hub.publish(Written(events, appended))


async def load_secret(app: web.Application) -> None:
    """Every API process sharing the store signs and checks with one secret."""
    stored = await app[STORE].set_meta_if_absent(SECRET_META_KEY, secrets.token_hex(32))
    app[GATEWAY].secret = bytes.fromhex(stored)


class TokenIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ttl_s: int = DEFAULT_TTL_S


class TokenOut(msgspec.Struct, frozen=True):
    token: str
    expires_at: str


class PresenceOut(msgspec.Struct, frozen=True):
    user_id: str
    online: bool
    connections: int


_token = msgspec.json.Decoder(TokenIn)


@routes.post("/v1/users/{user_id}/token")
async def token(request: web.Request) -> web.Response:
    user = user_id_of(request)
    body = decode_or(await read_bytes(request), _token, TokenIn())
    if not 1 <= body.ttl_s <= MAX_TTL_S:
        raise FieldError("ttl_s", f"ttl_s must be between 1 and {MAX_TTL_S} seconds")
    expires = int(time.time()) + body.ttl_s
    signed = tokens.sign(request.app[GATEWAY].secret, user, expires)
    return json_response(TokenOut(token=signed, expires_at=to_iso(expires * 1_000_000)))


@routes.get("/v1/presence")
async def presence(request: web.Request) -> web.Response:
    user = request.query.get("user_id", "")
    if not 1 <= len(user) <= MAX_KEY_LENGTH:
        raise FieldError("user_id", f"user_id must be 1 to {MAX_KEY_LENGTH} characters")
    n = await request.app[GATEWAY].hub.presence(user)
    return json_response(PresenceOut(user_id=user, online=n > 0, connections=n))


@routes.get("/v1/ws")
async def socket_v1(request: web.Request) -> web.StreamResponse:
    user = request.query.get("user_id", "")
    if not 1 <= len(user) <= MAX_KEY_LENGTH:
        raise FieldError("user_id", f"user_id must be 1 to {MAX_KEY_LENGTH} characters")
    return await serve_socket(request, user)


@routes.get("/ws/{user_id}")
async def socket_compat(request: web.Request) -> web.StreamResponse:
    return await serve_socket(request, user_id_of(request))


def _unauthorized(reason: str) -> ApiError:
    return ApiError(401, "unauthorized", reason)


async def serve_socket(request: web.Request, user: str) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    settings = request.app[SETTINGS]
    reason = tokens.verify(gateway.secret, request.query.get("token", ""), user, int(time.time()))
    if reason is not None:
        WS_REFUSED.labels("token").inc()
        raise _unauthorized(reason)
    after = offset_param(request) if "after" in request.query else None
    refused = gateway.admit()
    if refused is not None:
        label, message = refused
        WS_REFUSED.labels(label).inc()
        return error_response(503, "unavailable", message, headers={"Retry-After": "1"})
    ws = web.WebSocketResponse(
        heartbeat=settings.ws_ping_s, max_msg_size=frames.MAX_CLIENT_FRAME, compress=False
    )
    await ws.prepare(request)
    closing: list[asyncio.Task[None]] = []

    def too_slow() -> None:
        WS_CLOSED_SLOW.inc()
        closing.append(asyncio.create_task(_close_slow(ws, sender)))

    conn = Connection(user, gateway.queue, too_slow)
    # Registered before the store is read: a message committed after the read is pushed.
    gateway.hub.add(conn)
    WS_SOCKETS.inc()
    store = request.app[STORE]
    sender = asyncio.create_task(_send(ws, conn, store, after))
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                frame = frames.parse_client_frame(msg.data)
            except frames.FrameError as exc:
                await ws.send_str(frames.error_frame(str(exc)).decode())
                continue
            if frame.type == "ping":
                await ws.send_str(frames.pong_frame().decode())
            elif frame.up_to is not None:
                level = await store.ack_inbox(user, frame.up_to, time.time_ns() // 1000)
                await ws.send_str(frames.acked_frame(level).decode())
    except (StoreError, ConnectionResetError) as exc:
        log.debug("socket of %s ends: %s", user, exc)
    finally:
        gateway.hub.remove(conn)
        WS_SOCKETS.dec()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)
        if not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()
    return ws


async def _close_slow(ws: web.WebSocketResponse, sender: asyncio.Task[None]) -> None:
    """Close a socket whose send queue overflowed: 4008, and it resumes from its offset."""
    sender.cancel()
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        await asyncio.wait_for(ws.close(code=CLOSE_TOO_SLOW, message=b"too slow"), 10)


def _frame_of(m: InboxMessage) -> bytes:
    return frames.message_frame(m.offset, m.id, m.topic, bytes(m.payload), to_iso(m.received_at))


async def _fill(ws: web.WebSocketResponse, merger: Merger[bytes], store: Store, user: str) -> None:
    """Send from the store what comes after the last offset sent, until a page comes back
    short. A first message above last + 1 means the ones between are gone (retention,
    the inbox bound): the socket goes on from there."""
    while True:
        page = await store.read_inbox(user, merger.last, PAGE)
        if page.messages and page.messages[0].offset > merger.last + 1:
            merger.last = page.messages[0].offset - 1
        for frame in merger.offer((m.offset, _frame_of(m)) for m in page.messages):
            await ws.send_str(frame.decode())
            STORE_FRAMES.inc()
        if len(page.messages) < PAGE:
            return


async def _send(
    ws: web.WebSocketResponse, conn: Connection, store: Store, after: int | None
) -> None:
    try:
        first = await store.read_inbox(conn.user_id, 2**62, 1)
        start = first.top if after is None else after
        await ws.send_str(frames.welcome_frame(first.top).decode())
        merger: Merger[bytes] = Merger(start)
        if after is not None:
            await _fill(ws, merger, store, conn.user_id)
        while not ws.closed:
            if merger.wants_fill or conn.stale:
                # A gap in the live stream, or a nudge (a push may have been missed):
                # the store has everything.
                conn.stale = False
                await _fill(ws, merger, store, conn.user_id)
            batch = [await conn.queue.get()]
            while not conn.queue.empty():
                batch.append(conn.queue.get_nowait())
            for frame in merger.offer(item for item in batch if item[0] != NUDGE):
                await ws.send_str(frame.decode())
                LIVE_FRAMES.inc()
    except (StoreError, ConnectionResetError) as exc:
        log.debug("sending to %s stopped: %s", conn.user_id, exc)
        with contextlib.suppress(Exception):
            await ws.close(code=1011, message=b"store unavailable")
