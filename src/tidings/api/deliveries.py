"""Routes: deliveries (reads, retry, purge) and the dead-letter operations on them."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from tidings.api.http import STORE, decode, json_response, not_found, page_params, read_body
from tidings.api.keys import ENGINE
from tidings.api.wire import DeliveryList, RetryManyOut, delivery_out
from tidings.model import DELIVERY_STATES, MAX_BATCH
from tidings.policy.validation import FieldError
from tidings.store.base import NotFound
from tidings.timeutil import now_us

routes = web.RouteTableDef()
_ONE = "/v1/deliveries/{id:(?!retry$)[^/]+}"


class RetryManyIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ids: Annotated[list[str], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


_retry_many = msgspec.json.Decoder(RetryManyIn)


@routes.get("/v1/deliveries")
async def list_all(request: web.Request) -> web.Response:
    limit, cursor = page_params(request)
    state = request.query.get("state")
    if state is not None and state not in DELIVERY_STATES:
        raise FieldError("state", f"state must be one of {', '.join(DELIVERY_STATES)}")
    store = request.app[STORE]
    destination_id = request.query.get("destination_id")
    event_id = request.query.get("event_id")
    for name, value in (("destination_id", destination_id), ("event_id", event_id)):
        if value == "":
            raise FieldError(name, f"{name} must not be empty")
    if destination_id is not None:
        # A name works wherever an id does; an unknown one is a 404, not an empty page
        # that reads as "nothing was sent there".
        destination = await store.get_destination(destination_id)
        if destination is None:
            raise not_found("destination", destination_id)
        destination_id = destination.id
    page = await store.list_deliveries(
        destination_id=destination_id,
        event_id=event_id,
        state=state,
        limit=limit,
        cursor=cursor,
    )
    return json_response(DeliveryList(items=[delivery_out(d) for d in page.items], next=page.next))


# Not "retry": GET /v1/deliveries/retry is a 405 naming POST, not a 404 for a delivery.
@routes.get(_ONE)
async def show(request: web.Request) -> web.Response:
    delivery_id = request.match_info["id"]
    store = request.app[STORE]
    delivery = await store.get_delivery(delivery_id)
    if delivery is None:
        raise not_found("delivery", delivery_id)
    return json_response(delivery_out(delivery, await store.list_attempts(delivery_id)))


@routes.post("/v1/deliveries/{id}/retry")
async def retry(request: web.Request) -> web.Response:
    """A dead (or delivered, or scheduled) delivery gets a fresh run of attempts now."""
    delivery_id = request.match_info["id"]
    try:
        delivery = await request.app[STORE].retry_delivery(delivery_id, now_us())
    except NotFound:
        raise not_found("delivery", delivery_id) from None
    request.app[ENGINE].wake()
    return json_response(delivery_out(delivery), status=202)


@routes.post("/v1/deliveries/retry")
async def retry_many(request: web.Request) -> web.Response:
    """Retry up to 1000 deliveries by id, oldest event first whatever their order; unknown
    ids and ones already pending are listed."""
    body = decode(await read_body(request), _retry_many)
    done = await request.app[STORE].retry_deliveries(body.ids, now_us())
    if done.retried:
        request.app[ENGINE].wake()
    return json_response(
        RetryManyOut(retried=done.retried, not_found=done.not_found, conflicts=done.conflicts),
        status=202,
    )


@routes.delete(_ONE)
async def purge(request: web.Request) -> web.Response:
    """Purge a dead delivery: it is gone, and a lane it blocked moves on."""
    delivery_id = request.match_info["id"]
    if not await request.app[STORE].purge_delivery(delivery_id):
        raise not_found("delivery", delivery_id)
    request.app[ENGINE].wake()
    return web.Response(status=204)
