"""Routes: pull groups (`/v1/groups/{name}/lease|ack|nack|extend`).

A consumer leases a batch of a group's due lane heads (long polling up to `wait_ms`),
then acks, nacks or extends each by its `lease_id`: the delivery id and the token of the
lease call that handed it out (`dlv_….<16 hex digits>`), so an answer for a lease that
expired or was handed out again is told apart and answered `lost`, changing nothing.
The store fences every step; `engine.groups` wakes long polls and reaps expired leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta, Raw, Struct

from tidings.api.body import read_bytes
from tidings.api.http import (
    SETTINGS,
    STORE,
    decode,
    decode_or,
    json_response,
    not_found,
    read_body,
)
from tidings.api.keys import ENGINE, GROUP_WAKER
from tidings.engine.groups import FALLBACK_S, failure_plan
from tidings.ids import DELIVERY_PREFIX
from tidings.metrics import ATTEMPTS, DELIVERIES, child
from tidings.model import MAX_BATCH, MAX_LEASE_MS, Destination, GroupSpec, Lease, LeaseRef
from tidings.policy.outcome import FailurePlan
from tidings.policy.validation import FieldError
from tidings.timeutil import now_us, to_iso

routes = web.RouteTableDef()
MAX_WAIT_MS = 30_000
MAX_ERROR = 4096  # characters of a nack's error kept with its attempt
LeaseMs = Annotated[int, Meta(ge=1000, le=MAX_LEASE_MS)]
Ids = Annotated[list[str], Meta(min_length=1, max_length=MAX_BATCH)]


class GroupLeaseIn(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max: Annotated[int, Meta(ge=1, le=MAX_BATCH)] = 10
    lease_ms: LeaseMs | None = None  # default: the group's
    wait_ms: Annotated[int, Meta(ge=0, le=MAX_WAIT_MS)] = 0


class GroupAckIn(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ids: Ids  # lease ids


class GroupNackIn(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ids: Ids
    delay_ms: Annotated[int, Meta(ge=0, le=604_800_000)] | None = None  # default: backoff
    error: Annotated[str, Meta(max_length=MAX_ERROR)] | None = None


class GroupExtendIn(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ids: Ids
    lease_ms: LeaseMs


class LeasedEventOut(Struct, frozen=True, kw_only=True):
    id: str
    topic: str
    key: str
    payload: Raw
    received_at: str
    causation_id: str | None
    correlation_id: str | None


class LeaseItemOut(Struct, frozen=True, kw_only=True):
    lease_id: str  # what ack, nack and extend take
    delivery_id: str
    attempt: int
    lease_expires_at: str
    event: LeasedEventOut


class GroupLeaseOut(Struct, frozen=True, kw_only=True):
    items: list[LeaseItemOut]


class GroupSettledOut(Struct, frozen=True, kw_only=True):
    ok: list[str]  # lease ids held and settled
    lost: list[str]  # lease ids that had expired or moved on: nothing changed


_lease = msgspec.json.Decoder(GroupLeaseIn)
_ack = msgspec.json.Decoder(GroupAckIn)
_nack = msgspec.json.Decoder(GroupNackIn)
_extend = msgspec.json.Decoder(GroupExtendIn)


def lease_id(ref: LeaseRef) -> str:
    return f"{ref.delivery_id}.{ref.token}"


def parse_lease_ids(ids: list[str]) -> list[LeaseRef]:
    """Lease ids (`delivery_id.token`: exactly that lease), or bare delivery ids
    (whichever lease holds the delivery now: a consumer that re-leased it may be acked
    for by a stale one, so prefer lease ids)."""
    refs = []
    for i, text in enumerate(ids):
        if text.startswith(DELIVERY_PREFIX) and "." not in text and len(text) <= 100:
            refs.append(LeaseRef(delivery_id=text, token=""))
            continue
        delivery_id, dot, token = text.rpartition(".")
        if not dot or not delivery_id or len(token) != 16 or not _is_hex(token):
            raise FieldError(
                f"ids[{i}]",
                f"ids[{i}] is not a lease id (the `lease_id` a lease answered) nor a delivery id",
            )
        refs.append(LeaseRef(delivery_id=delivery_id, token=token))
    return refs


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


GROUP_CACHE_S = 1.0  # how stale a group's policy may be after another node changed it
# name -> (read at, the waker's generation then, the group): filled by `_group`.
GROUP_CACHE = web.AppKey("group_cache", dict[str, tuple[float, int, Destination]])


async def _group(request: web.Request) -> tuple[Destination, GroupSpec]:
    """The group named in the path, read at most once a second per name (a lease or an
    ack is a few hundred microseconds of work: a read of its destination each time would
    be a good part of it); a change made through this process is seen at once."""
    name = request.match_info["name"]
    cache = request.app[GROUP_CACHE]
    generation = request.app[GROUP_WAKER].generation
    now = time.monotonic()
    hit = cache.get(name)
    if hit is not None and hit[1] == generation and now - hit[0] < GROUP_CACHE_S:
        d: Destination | None = hit[2]
    else:
        d = await request.app[STORE].get_destination(name)
        if d is not None and isinstance(d.spec, GroupSpec):
            if len(cache) > 10_000:  # names that come and go: never grow without bound
                cache.clear()
            cache[name] = (now, generation, d)
        else:
            cache.pop(name, None)
    if d is None or not isinstance(d.spec, GroupSpec):
        raise not_found("group", name)
    return d, d.spec


def _item(lease: Lease) -> LeaseItemOut:
    e = lease.event
    return LeaseItemOut(
        lease_id=lease_id(lease.ref),
        delivery_id=lease.ref.delivery_id,
        attempt=lease.attempt,
        lease_expires_at=to_iso(lease.expires_at),
        event=LeasedEventOut(
            id=e.id,
            topic=e.topic,
            key=e.key,
            payload=e.payload,
            received_at=to_iso(e.received_at),
            causation_id=e.causation_id,
            correlation_id=e.correlation_id,
        ),
    )


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@routes.post("/v1/groups/{name}/lease")
async def lease(request: web.Request) -> web.Response:
    """Lease up to `max` due lane heads; with none due, wait up to `wait_ms` for some.
    An empty body takes every default."""
    raw = await read_bytes(request)
    body = decode_or(raw, _lease, GroupLeaseIn())
    d, spec = await _group(request)
    store, waker = request.app[STORE], request.app[GROUP_WAKER]
    lease_us = (body.lease_ms or spec.lease_ms) * 1000
    fallback = max(0.25, min(FALLBACK_S, request.app[SETTINGS].poll_interval_ms / 1000))
    deadline = time.monotonic() + body.wait_ms / 1000
    while True:
        wake = waker.waiter()  # before looking: a wake meanwhile is not missed
        next_due = None
        if _gone(request):  # the consumer left (stopped): lease nothing to nobody
            return json_response(GroupLeaseOut(items=[]))
        if d.deliverable:
            got = await store.lease_group(d.id, body.max, lease_us, now_us())
            if got.leases:
                return json_response(GroupLeaseOut(items=[_item(x) for x in got.leases]))
            next_due = got.next_due
        left = deadline - time.monotonic()
        if left <= 0 or waker.closing:
            return json_response(GroupLeaseOut(items=[]))
        timeout = min(left, fallback)
        if next_due is not None:
            timeout = min(timeout, max(0.001, (next_due - now_us()) / 1e6))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)
        d, spec = await _group(request)  # it may have been changed (paused) meanwhile


def _settled_out(
    asked: list[LeaseRef], refs_ok: list[LeaseRef], refs_lost: list[LeaseRef]
) -> web.Response:
    """Each id answered as it was asked: a lease id, or a bare delivery id."""
    bare = {r.delivery_id for r in asked if not r.token}

    def named(r: LeaseRef) -> str:
        return r.delivery_id if r.delivery_id in bare else lease_id(r)

    return json_response(
        GroupSettledOut(ok=[named(r) for r in refs_ok], lost=[named(r) for r in refs_lost])
    )


@routes.post("/v1/groups/{name}/ack")
async def ack(request: web.Request) -> web.Response:
    body = decode(await read_body(request), _ack)
    refs = parse_lease_ids(body.ids)
    d, _ = await _group(request)
    done = await request.app[STORE].ack_leases(d.id, refs, now_us())
    if done.ok:
        child(ATTEMPTS, d.id, "delivered").inc(len(done.ok))
        child(DELIVERIES, d.id, "delivered").inc(len(done.ok))
        request.app[ENGINE].wake()  # a lane may have moved on: its next head is due
    return _settled_out(refs, done.ok, done.lost)


@routes.post("/v1/groups/{name}/nack")
async def nack(request: web.Request) -> web.Response:
    body = decode(await read_body(request), _nack)
    refs = parse_lease_ids(body.ids)
    d, spec = await _group(request)
    plan: FailurePlan = failure_plan(spec)
    if body.delay_ms is not None:
        plan = FailurePlan(retry=spec.retry, on_dead=spec.on_dead, delay_ms=body.delay_ms)
    done = await request.app[STORE].nack_leases(d.id, refs, plan, body.error, now_us())
    if done.ok:
        child(ATTEMPTS, d.id, "nacked").inc(len(done.ok))
        if done.dead:
            child(DELIVERIES, d.id, "dead").inc(len(done.dead))
        request.app[ENGINE].wake()
    return _settled_out(refs, done.ok, done.lost)


@routes.post("/v1/groups/{name}/extend")
async def extend(request: web.Request) -> web.Response:
    body = decode(await read_body(request), _extend)
    refs = parse_lease_ids(body.ids)
    d, _ = await _group(request)
    done = await request.app[STORE].extend_leases(d.id, refs, body.lease_ms * 1000, now_us())
    return _settled_out(refs, done.ok, done.lost)
