"""Routes: the calls of the systems Tidings replaces, outside `/v1`, so that their clients
switch over unchanged (same API key).

- `POST /publish-event` `{"userId", "payload"}` (the Redis event delivery system): an
  event of topic `TIDINGS_COMPAT_TOPIC`, key and recipient `userId`.
- `POST /upload` (the Webhook Delivery System): `POST /v1/uploads` under its old name.
- `GET|POST /retry` (the Webhook Delivery System): every dead delivery goes again.
- `POST /notifications` `{"user_id", "title"?, "message"?, "data"?, "topic"?}` (the
  notification platform): an event for that recipient (topic default `notification`,
  payload `{"title", "message", "data"}` as given); `GET /notifications/offline/{user_id}`
  (the messages after the user's ack offset) and `POST .../ack` `{"up_to"}`.

Each only translates a request into what the `/v1` calls do; none has rules of its own.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from tidings.api import uploads, users
from tidings.api.destinations import replay_all
from tidings.api.http import SETTINGS, STORE, decode, json_response, limit_param, read_body
from tidings.api.keys import ENGINE
from tidings.api.wire import AcceptedOut
from tidings.api.ws import push_live
from tidings.metrics import EVENTS_INGESTED
from tidings.model import MAX_KEY_LENGTH, EventIn
from tidings.policy.validation import FieldError, check_event
from tidings.timeutil import now_us, to_iso

routes = web.RouteTableDef()
# Behind the API key, and every path below one of them (/notifications/offline/...).
PATHS = frozenset({"/publish-event", "/upload", "/retry", "/notifications"})
NOTIFICATION_TOPIC = "notification"


class PublishEventIn(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    userId: str | int  # the seed's spelling
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


class RetriedOut(msgspec.Struct, frozen=True):
    retried: int


class NotificationIn(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    user_id: str | int
    title: str | None = None
    message: str | None = None
    data: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b""))  # b"": absent
    topic: str | None = None


_publish = msgspec.json.Decoder(PublishEventIn)
_notification = msgspec.json.Decoder(NotificationIn)


def _user_id(value: str | int, field: str = "userId") -> str:
    user = str(value) if not isinstance(value, bool) else ""
    if not user.strip():
        raise FieldError(field, f"{field} must be a non-empty string")
    if len(user) > MAX_KEY_LENGTH:
        raise FieldError(field, f"{field} is longer than {MAX_KEY_LENGTH} characters")
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
    return await _ingest_one(request, event)


async def _ingest_one(request: web.Request, event: EventIn) -> web.Response:
    check_event(event, request.app[SETTINGS].max_payload_bytes)
    (appended,) = await request.app[STORE].append_events([event])
    push_live(request.app, [event], [appended])  # inboxes (issue 15)
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


@routes.post("/notifications")
async def notify(request: web.Request) -> web.Response:
    body = decode(await read_body(request), _notification)
    user = _user_id(body.user_id, "user_id")
    payload: dict[str, object] = {}
    for name, value in (("title", body.title), ("message", body.message)):
        if value is not None:
            payload[name] = value
    if len(body.data):
        payload["data"] = body.data
    event = EventIn(
        topic=body.topic if body.topic is not None else NOTIFICATION_TOPIC,
        key=user,
        payload=msgspec.Raw(msgspec.json.encode(payload)),
        recipients=[user],
    )
    return await _ingest_one(request, event)


@routes.get("/notifications/offline/{user_id}")
async def offline(request: web.Request) -> web.Response:
    """The user's unacked messages: those after its ack offset."""
    user = users.user_id_of(request)
    limit = limit_param(request)
    store = request.app[STORE]
    acked = (await store.read_inbox(user, 0, 1)).acked
    return json_response(users.inbox_out(await store.read_inbox(user, acked, limit), limit))


@routes.post("/notifications/offline/{user_id}/ack")
async def offline_ack(request: web.Request) -> web.Response:
    user = users.user_id_of(request)
    up_to = await users.read_ack(request)
    acked = await request.app[STORE].ack_inbox(user, up_to, now_us())
    return json_response(users.AckedOut(acked=acked))
