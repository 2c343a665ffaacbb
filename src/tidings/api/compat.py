"""Routes: the calls of the systems Tidings replaces, outside `/v1`, so that their clients
switch over unchanged (same API key).

- `POST /publish-event` `{"userId", "payload"}` (the Redis event delivery system): an
  event of topic `TIDINGS_COMPAT_TOPIC`, key and recipient `userId`.
- `POST /upload` (the Webhook Delivery System): `POST /v1/uploads` under its old name.
- `GET|POST /retry` (the Webhook Delivery System): every dead delivery goes again.

Each only translates a request into what the `/v1` calls do; none has rules of its own.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from tidings.api import uploads
from tidings.api.destinations import replay_all
from tidings.api.http import SETTINGS, STORE, decode, json_response, read_body
from tidings.api.keys import ENGINE
from tidings.api.wire import AcceptedOut
from tidings.metrics import EVENTS_INGESTED
from tidings.model import MAX_KEY_LENGTH, EventIn
from tidings.policy.validation import FieldError, check_event
from tidings.timeutil import to_iso

routes = web.RouteTableDef()
PATHS = frozenset({"/publish-event", "/upload", "/retry"})  # behind the API key


class PublishEventIn(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    userId: str | int  # the seed's spelling
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


class RetriedOut(msgspec.Struct, frozen=True):
    retried: int


_publish = msgspec.json.Decoder(PublishEventIn)


def _user_id(value: str | int) -> str:
    user = str(value) if not isinstance(value, bool) else ""
    if not user.strip():
        raise FieldError("userId", "userId must be a non-empty string")
    if len(user) > MAX_KEY_LENGTH:
        raise FieldError("userId", f"userId is longer than {MAX_KEY_LENGTH} characters")
    return user


@routes.post("/publish-event")
async def publish_event(request: web.Request) -> web.Response:
    body = decode(await read_body(request), _publish)
    user = _user_id(body.userId)
    event = EventIn(
        topic=request.app[SETTINGS].compat_topic,
        key=user,
        payload=body.payload,
        recipients=[user],
    )
    check_event(event, request.app[SETTINGS].max_payload_bytes)
    (appended,) = await request.app[STORE].append_events([event])
    EVENTS_INGESTED.inc()
    if appended.deliveries:
        request.app[ENGINE].wake()
    return json_response(
        AcceptedOut(
            id=appended.id, received_at=to_iso(appended.received_at), deliveries=appended.deliveries
        ),
        status=202,
    )


@routes.post("/upload")
async def upload(request: web.Request) -> web.StreamResponse:
    return await uploads.upload(request)


@routes.get("/retry")
@routes.post("/retry")
async def retry(request: web.Request) -> web.Response:
    """Every dead delivery of every destination goes again, oldest first in each lane."""
    store = request.app[STORE]
    total, cursor = 0, None
    while True:
        page = await store.list_destinations(1000, cursor)
        for destination in page.items:
            total += await replay_all(store, destination.id, "dead", None, None)
        cursor = page.next
        if cursor is None:
            break
    if total:
        request.app[ENGINE].wake()
    return json_response(RetriedOut(retried=total), status=202)
