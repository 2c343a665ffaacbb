"""Routes: users' inboxes (`GET /v1/users/{user_id}/inbox`, `POST .../inbox/ack`).

An event with `recipients` puts one message in each recipient's inbox at that user's
next offset (the store writes it with the event); these calls read a user's messages
after an offset and acknowledge them up to one. The WebSocket gateway (`api/ws.py`)
serves the same messages live. Owns no rules: offsets and acks are the store's.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from tidings.api.http import STORE, decode, json_response, limit_param, read_body
from tidings.model import MAX_KEY_LENGTH, InboxPage
from tidings.policy.validation import FieldError
from tidings.timeutil import now_us, to_iso

routes = web.RouteTableDef()
MAX_OFFSET = 2**62  # offsets are 64-bit integers in both stores


class InboxMessageOut(msgspec.Struct, frozen=True):
    offset: int
    id: str
    topic: str
    payload: msgspec.Raw
    received_at: str


class InboxOut(msgspec.Struct, frozen=True):
    messages: list[InboxMessageOut]
    next: int | None  # `after` for the next page; null when this page reached the top
    top: int


class AckIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    up_to: int


class AckedOut(msgspec.Struct, frozen=True):
    acked: int


_ack = msgspec.json.Decoder(AckIn)


def user_id_of(request: web.Request) -> str:
    user = request.match_info["user_id"]
    if not 1 <= len(user) <= MAX_KEY_LENGTH:
        raise FieldError("user_id", f"user_id must be 1 to {MAX_KEY_LENGTH} characters")
    return user


def offset_param(request: web.Request, name: str = "after") -> int:
    raw = request.query.get(name)
    if raw is None:
        return 0
    if raw == "":  # as every empty filter: never read as "from the start"
        raise FieldError(name, f"{name} is empty; give an offset, or leave it out")
    try:
        value = int(raw)
    except ValueError:
        raise FieldError(name, f"{name} must be an integer offset") from None
    if not 0 <= value <= MAX_OFFSET:
        raise FieldError(name, f"{name} must be between 0 and {MAX_OFFSET}")
    return value


def inbox_out(page: InboxPage, limit: int) -> InboxOut:
    messages = [
        InboxMessageOut(
            offset=m.offset,
            id=m.id,
            topic=m.topic,
            payload=m.payload,
            received_at=to_iso(m.received_at),
        )
        for m in page.messages
    ]
    last = messages[-1].offset if messages else None
    more = last is not None and len(messages) == limit and last < page.top
    return InboxOut(messages=messages, next=last if more else None, top=page.top)


async def read_ack(request: web.Request) -> int:
    body = decode(await read_body(request), _ack)
    if not 0 <= body.up_to <= MAX_OFFSET:
        raise FieldError("up_to", f"up_to must be between 0 and {MAX_OFFSET}")
    return body.up_to


@routes.get("/v1/users/{user_id}/inbox")
async def inbox(request: web.Request) -> web.Response:
    user = user_id_of(request)
    after = offset_param(request)
    limit = limit_param(request)
    page = await request.app[STORE].read_inbox(user, after, limit)
    return json_response(inbox_out(page, limit))


@routes.post("/v1/users/{user_id}/inbox/ack")
async def ack(request: web.Request) -> web.Response:
    user = user_id_of(request)
    up_to = await read_ack(request)
    return json_response(AckedOut(acked=await request.app[STORE].ack_inbox(user, up_to, now_us())))
