"""Routes: delivery reads."""

from __future__ import annotations

from aiohttp import web

from tidings.api.http import STORE, json_response, not_found, page_params
from tidings.api.wire import DeliveryList, delivery_out
from tidings.model import DELIVERY_STATES
from tidings.policy.validation import FieldError

routes = web.RouteTableDef()


@routes.get("/v1/deliveries")
async def list_all(request: web.Request) -> web.Response:
    limit, cursor = page_params(request)
    state = request.query.get("state") or None
    if state is not None and state not in DELIVERY_STATES:
        raise FieldError("state", f"state must be one of {', '.join(DELIVERY_STATES)}")
    page = await request.app[STORE].list_deliveries(
        destination_id=request.query.get("destination_id") or None,
        event_id=request.query.get("event_id") or None,
        state=state,
        limit=limit,
        cursor=cursor,
    )
    return json_response(DeliveryList(items=[delivery_out(d) for d in page.items], next=page.next))


@routes.get("/v1/deliveries/{id}")
async def show(request: web.Request) -> web.Response:
    delivery_id = request.match_info["id"]
    delivery = await request.app[STORE].get_delivery(delivery_id)
    if delivery is None:
        raise not_found("delivery", delivery_id)
    return json_response(delivery_out(delivery))
