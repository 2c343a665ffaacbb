"""Routes: destinations (create, list, show, patch, delete, rotate-secret)."""

from __future__ import annotations

from typing import Any, Literal, cast

import msgspec
from aiohttp import web

from tidings.api.body import read_bytes
from tidings.api.http import (
    SETTINGS,
    STORE,
    decode,
    decode_or,
    json_response,
    not_found,
    page_params,
    read_body,
)
from tidings.api.keys import ENGINE, NOTICES
from tidings.api.wire import DestinationList, ReplayOut, destination_out
from tidings.model import (
    Destination,
    DestinationSpec,
    DestinationState,
    GroupSpec,
    WebhookSpec,
    spec_to_builtins,
    spec_url,
)
from tidings.policy.buses import forbidden_error
from tidings.policy.redaction import mask_credentials
from tidings.policy.validation import FieldError, check_destination, from_msgspec
from tidings.signing import new_secret
from tidings.store.base import NotFound, Store
from tidings.timeutil import US, now_us, parse_iso
from tidings.transports.ssrf import target_error

routes = web.RouteTableDef()
_spec: msgspec.json.Decoder[DestinationSpec] = msgspec.json.Decoder(DestinationSpec)
_object = msgspec.json.Decoder(dict[str, Any])
_READ_ONLY = frozenset({"id", "secret", "created_at", "updated_at", "state"})
ROTATION_GRACE_US = 24 * 3600 * US


async def _find(request: web.Request) -> Destination:
    ref = request.match_info["id"]
    destination = await request.app[STORE].get_destination(ref)
    if destination is None:
        raise not_found("destination", ref)
    return destination


class ReplayIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which deliveries of a destination to send again: by state, created in [since, until)."""

    state: Literal["dead", "delivered"] = "dead"
    since: str | None = None
    until: str | None = None


_replay = msgspec.json.Decoder(ReplayIn)
REPLAY_CHUNK = 1000  # deliveries re-queued per transaction


async def _check_targets(request: web.Request, spec: DestinationSpec) -> None:
    """The SSRF guard at create/patch time (checked again at every connect) for webhook
    and alert URLs; a bus URL must be one of TIDINGS_BUS_ALLOWED_URLS instead."""
    settings = request.app[SETTINGS]
    guarded: list[tuple[str, str | None]] = [("alert_url", spec.alert_url)]
    if isinstance(spec, WebhookSpec):
        guarded.insert(0, ("url", spec.url))
    elif not isinstance(spec, GroupSpec) and (
        refused := forbidden_error(spec.url, settings.bus_prefixes)
    ):
        raise FieldError("url", refused, code="forbidden_target")
    for field, url in guarded:
        if url is None:
            continue
        problem = await target_error(
            url,
            allow_private=settings.allow_private_targets,
            allow_loopback=settings.allow_loopback_targets,
            field=field,
        )
        if problem is not None:
            raise FieldError(field, problem.message, code=problem.code)


@routes.post("/v1/destinations")
async def create(request: web.Request) -> web.Response:
    spec = decode(await read_body(request), _spec)
    check_destination(spec)
    await _check_targets(request, spec)
    destination = await request.app[STORE].create_destination(spec, new_secret())
    request.app[ENGINE].destinations_changed()
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
    """Apply a JSON merge patch (RFC 7396 for `retry`, replacement elsewhere). The kind
    stays: its fields are not another kind's. A `url` sent back as answered (its
    credentials masked) keeps the stored one."""
    fields = current.__struct_fields__
    for key in patch:
        if key in _READ_ONLY:
            raise FieldError(key, f"{key} cannot be changed")
        if key == "kind":
            if patch[key] != current.kind:
                raise FieldError(
                    "kind", "kind cannot be changed; create a destination of the new kind"
                )
        elif key not in fields:
            raise FieldError(key, f"unknown field {key!r} for a {current.kind} destination")
    merged = spec_to_builtins(current)
    for key, value in patch.items():
        if key == "retry" and isinstance(value, dict):
            merged["retry"] = {**merged["retry"], **value}
        elif key == "url" and (url := spec_url(current)) and value == mask_credentials(url) != url:
            continue
        else:
            merged[key] = value
    try:
        spec = msgspec.convert(merged, type(current))  # the same kind
    except msgspec.ValidationError as exc:
        raise from_msgspec(exc) from None
    check_destination(spec)
    return spec


def _state_change(current: Destination, patch: dict[str, Any]) -> DestinationState | None:
    """The state a PATCH asks for: `state` itself, or `enabled: true` resuming a pause."""
    wanted = patch.pop("state", None)
    if wanted is not None and wanted not in ("active", "paused"):
        raise FieldError("state", "state must be active or paused")
    if wanted is None and patch.get("enabled") is True and current.state == "paused":
        wanted = "active"
    return cast("DestinationState | None", wanted)


@routes.patch("/v1/destinations/{id}")
async def patch(request: web.Request) -> web.Response:
    patch_body = decode(await read_body(request), _object)
    current = await _find(request)
    state = _state_change(current, patch_body)
    spec = merge_patch(current.spec, patch_body)
    if spec_url(spec) != spec_url(current.spec) or spec.alert_url != current.spec.alert_url:
        await _check_targets(request, spec)
    store = request.app[STORE]
    try:
        updated = await store.update_destination(current.id, spec)
        if state is not None and state != current.state:
            reason = "paused by PATCH" if state == "paused" else None
            updated = await store.set_destination_state(current.id, state, reason)
            request.app[NOTICES].state_set(current, updated, "PATCH")
    except NotFound:
        raise not_found("destination", current.id) from None
    request.app[ENGINE].destinations_changed()
    return json_response(destination_out(updated))


@routes.post("/v1/destinations/{id}/replay")
async def replay(request: web.Request) -> web.Response:
    body = await read_bytes(request)
    spec = decode_or(body, _replay, ReplayIn())
    since = _time_field(spec.since, "since")
    until = _time_field(spec.until, "until")
    current = await _find(request)
    total = await replay_all(request.app[STORE], current.id, spec.state, since, until)
    if total:
        request.app[ENGINE].wake()
    return json_response(ReplayOut(replayed=total), status=202)


async def replay_all(
    store: Store, destination_id: str, state: str, since: int | None, until: int | None
) -> int:
    """Replay a destination's deliveries in `state`, oldest first, a chunk per commit."""
    total = 0
    while True:
        n = await store.replay(destination_id, state, since, until, now_us(), REPLAY_CHUNK)
        total += n
        if n < REPLAY_CHUNK:
            return total


def _time_field(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise FieldError(field, f"{field} must be an ISO-8601 time") from None


@routes.delete("/v1/destinations/{id}")
async def delete(request: web.Request) -> web.Response:
    current = await _find(request)
    if not await request.app[STORE].delete_destination(current.id):
        raise not_found("destination", current.id)
    request.app[ENGINE].destinations_changed()
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
    request.app[ENGINE].destinations_changed()
    return json_response(destination_out(updated))
