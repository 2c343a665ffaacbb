"""Routes: destinations (create, list, show, patch, delete, rotate-secret)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from tidings.api.http import STORE, decode, json_response, not_found, page_params, read_body
from tidings.api.wire import DestinationList, destination_out
from tidings.model import Destination, DestinationSpec, spec_to_builtins
from tidings.policy.validation import FieldError, check_destination, from_msgspec
from tidings.signing import new_secret
from tidings.store.base import NotFound
from tidings.timeutil import US, now_us

routes = web.RouteTableDef()
_spec = msgspec.json.Decoder(DestinationSpec)
_object = msgspec.json.Decoder(dict[str, Any])
_SPEC_FIELDS = frozenset(DestinationSpec.__struct_fields__)
_READ_ONLY = frozenset({"id", "secret", "created_at", "updated_at", "state"})
ROTATION_GRACE_US = 24 * 3600 * US


async def _find(request: web.Request) -> Destination:
    ref = request.match_info["id"]
    destination = await request.app[STORE].get_destination(ref)
    if destination is None:
        raise not_found("destination", ref)
    return destination


@routes.post("/v1/destinations")
async def create(request: web.Request) -> web.Response:
    spec = decode(await read_body(request), _spec)
    check_destination(spec)
    destination = await request.app[STORE].create_destination(spec, new_secret())
    return json_response(destination_out(destination), status=201)


@routes.get("/v1/destinations")
async def list_all(request: web.Request) -> web.Response:
    limit, cursor = page_params(request)
    page = await request.app[STORE].list_destinations(limit, cursor)
    return json_response(
        DestinationList(items=[destination_out(d) for d in page.items], next=page.next)
    )


@routes.get("/v1/destinations/{id}")
async def show(request: web.Request) -> web.Response:
    return json_response(destination_out(await _find(request)))


def merge_patch(current: DestinationSpec, patch: dict[str, Any]) -> DestinationSpec:
    """Apply a JSON merge patch (RFC 7396 for `retry`, replacement elsewhere)."""
    for key in patch:
        if key in _READ_ONLY:
            raise FieldError(key, f"{key} cannot be changed")
        if key not in _SPEC_FIELDS:
            raise FieldError(key, f"unknown field {key!r}")
    merged = spec_to_builtins(current)
    for key, value in patch.items():
        if key == "retry" and isinstance(value, dict):
            merged["retry"] = {**merged["retry"], **value}
        else:
            merged[key] = value
    try:
        spec = msgspec.convert(merged, DestinationSpec)
    except msgspec.ValidationError as exc:
        raise from_msgspec(exc) from None
    check_destination(spec)
    return spec


@routes.patch("/v1/destinations/{id}")
async def patch(request: web.Request) -> web.Response:
    patch_body = decode(await read_body(request), _object)
    current = await _find(request)
    spec = merge_patch(current.spec, patch_body)
    try:
        updated = await request.app[STORE].update_destination(current.id, spec)
    except NotFound:
        raise not_found("destination", current.id) from None
    return json_response(destination_out(updated))


@routes.delete("/v1/destinations/{id}")
async def delete(request: web.Request) -> web.Response:
    current = await _find(request)
    if not await request.app[STORE].delete_destination(current.id):
        raise not_found("destination", current.id)
    return web.Response(status=204)


@routes.post("/v1/destinations/{id}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    current = await _find(request)
    try:
        updated = await request.app[STORE].rotate_secret(
            current.id, new_secret(), now_us() + ROTATION_GRACE_US
        )
    except NotFound:
        raise not_found("destination", current.id) from None
    return json_response(destination_out(updated))
