"""Routes: ingest (`POST /v1/events`, `/v1/events/batch`) and event reads."""

from __future__ import annotations

import hashlib

import msgspec
from aiohttp import web

from tidings.api.http import (
    SETTINGS,
    STORE,
    decode,
    json_response,
    limit_param,
    not_found,
    page_params,
    read_body,
)
from tidings.api.keys import ENGINE
from tidings.api.wire import (
    AcceptedOut,
    BatchAcceptedOut,
    ChainDeliveryOut,
    ChainNodeOut,
    ChainOut,
    EventList,
    event_out,
)
from tidings.api.ws import push_live
from tidings.metrics import EVENTS_INGESTED
from tidings.model import MAX_BATCH, MAX_KEY_LENGTH, BatchIn, EventIn, EventLink
from tidings.policy.chains import causation_tree, correlation_of
from tidings.policy.jsontext import text_problem
from tidings.policy.topics import pattern_error
from tidings.policy.validation import FieldError, check_event
from tidings.store.base import Store
from tidings.timeutil import to_iso

routes = web.RouteTableDef()
_event = msgspec.json.Decoder(EventIn)
_batch = msgspec.json.Decoder(BatchIn)


def _header_key(request: web.Request) -> str | None:
    header = request.headers.get("Idempotency-Key")
    if header is None:
        return None
    if not 1 <= len(header) <= 255:
        raise FieldError("Idempotency-Key", "Idempotency-Key must be 1 to 255 characters")
    # Header bytes that are not UTF-8 arrive as lone surrogates (aiohttp decodes them with
    # surrogateescape): no store can keep those.
    if problem := text_problem(header):
        raise FieldError("Idempotency-Key", f"Idempotency-Key {problem}")
    return header


def _with_header_key(request: web.Request, event: EventIn) -> EventIn:
    header = _header_key(request)
    if header is None:
        return event
    if event.idempotency_key is not None and event.idempotency_key != header:
        raise FieldError(
            "idempotency_key", "the Idempotency-Key header and idempotency_key field differ"
        )
    return msgspec.structs.replace(event, idempotency_key=header)


@routes.post("/v1/events")
async def publish(request: web.Request) -> web.Response:
    app = request.app  # a property that walks the match info: once, not per use
    event = _with_header_key(request, decode(await read_body(request), _event))
    check_event(event, app[SETTINGS].max_payload_bytes)
    (appended,) = await app[STORE].append_events([event])
    if appended.inbox:
        push_live(app, [event], [appended])  # inboxes (issue 15)
    if not appended.duplicate:
        EVENTS_INGESTED.inc()
        if appended.deliveries:
            app[ENGINE].wake()
    return json_response(
        AcceptedOut(
            id=appended.id,
            received_at=to_iso(appended.received_at),
            deliveries=appended.deliveries,
        ),
        status=200 if appended.duplicate else 202,
    )


@routes.post("/v1/events/batch")
async def publish_batch(request: web.Request) -> web.Response:
    body = await read_body(request)
    batch = decode(body, _batch)
    limit = request.app[SETTINGS].max_payload_bytes
    for i, event in enumerate(batch.events):
        check_event(event, limit, field_prefix=f"events[{i}].")
    events = _with_batch_key(_header_key(request), batch.events)
    appended = await request.app[STORE].append_events(events)
    push_live(request.app, events, appended)  # inboxes (issue 15)
    EVENTS_INGESTED.inc(sum(not a.duplicate for a in appended))
    if any(a.deliveries and not a.duplicate for a in appended):
        request.app[ENGINE].wake()
    return json_response(
        BatchAcceptedOut(
            ids=[a.id for a in appended],
            deliveries=[a.deliveries for a in appended],
            duplicates=sum(a.duplicate for a in appended),
        ),
        # Always 202, as API.md promises for a batch (`duplicates` counts the repeats).
        status=202,
    )


def batch_member_key(header: str, i: int) -> str:
    """The idempotency key of event i of a batch sent with `Idempotency-Key: header`.

    Hashed, so that it cannot meet a key a client writes by accident (`req-1#0` as a
    plain key, or an event of the same batch keyed so), and stays short whatever the
    header's length."""
    return f"batch:{hashlib.sha256(header.encode()).hexdigest()[:32]}#{i}"


def _with_batch_key(header: str | None, events: list[EventIn]) -> list[EventIn]:
    """The header keys the whole request: event i without a key of its own is keyed
    `batch_member_key(header, i)`, so a retried batch creates nothing again and answers
    the first ids."""
    if header is None:
        return events
    return [
        e
        if e.idempotency_key is not None
        else msgspec.structs.replace(e, idempotency_key=batch_member_key(header, i))
        for i, e in enumerate(events)
    ]


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    limit, cursor = page_params(request)
    # A filter given is a filter, even empty: `?topic=` is a 400, `?key=` the keyless
    # events, never "no filter" (which would answer every event).
    query = request.query
    topic = query.get("topic")
    if topic is not None and (problem := pattern_error(topic)):
        raise FieldError("topic", f"topic {problem}")
    key = query.get("key")
    if key is not None and len(key) > MAX_KEY_LENGTH:
        raise FieldError("key", f"key must be at most {MAX_KEY_LENGTH} characters")
    correlation_id = query.get("correlation_id")
    if correlation_id == "":
        raise FieldError("correlation_id", "correlation_id must not be empty")
    page = await request.app[STORE].list_events(
        topic, limit, cursor, key=key, correlation_id=correlation_id
    )
    return json_response(EventList(items=[event_out(e) for e in page.items], next=page.next))


CHAIN_DEFAULT = 1000
CHAIN_MOST = 10_000  # links only (no payloads): ~2 MB of JSON at most


@routes.get("/v1/events/{id}/chain")
async def event_chain(request: web.Request) -> web.Response:
    if "cursor" in request.query:
        raise FieldError(
            "cursor",
            f"a chain is not paged: it holds the oldest `limit` events (at most {CHAIN_MOST}) "
            "of the correlation, and the asked event with its line of causes",
        )
    limit = limit_param(request, default=CHAIN_DEFAULT, most=CHAIN_MOST)
    store = request.app[STORE]
    event_id = request.match_info["id"]
    asked = await store.event_link(event_id)
    if asked is None:
        raise not_found("event", event_id)
    correlation = correlation_of(asked)
    events = await store.correlated_events(correlation, limit + 1)
    truncated = len(events) > limit
    del events[limit:]
    if truncated:
        events += await _line_of_causes(store, asked, correlation, {e.id for e in events})
    # Every outcome of the chain with one query, and the destinations' names with another.
    outcomes: dict[str, list[ChainDeliveryOut]] = {}
    found = await store.deliveries_of_events([e.id for e in events])
    if found:
        names = {d.id: d.spec.name for d in await store.all_destinations()}
        for d in found:
            outcomes.setdefault(d.event_id, []).append(
                ChainDeliveryOut(
                    id=d.id,
                    destination_id=d.destination_id,
                    destination_name=names.get(d.destination_id),
                    state=d.state,
                    attempts=d.attempts,
                    last_error=d.last_error,
                )
            )
    return json_response(
        ChainOut(
            correlation_id=correlation,
            items=[
                ChainNodeOut(
                    id=n.event.id,
                    topic=n.event.topic,
                    key=n.event.key,
                    received_at=to_iso(n.event.received_at),
                    causation_id=n.event.causation_id,
                    correlation_id=n.event.correlation_id,
                    parent_id=n.parent_id,
                    depth=n.depth,
                    deliveries=outcomes.get(n.event.id, []),
                )
                for n in causation_tree(events)
            ],
            truncated=truncated,
        )
    )


async def _line_of_causes(
    store: Store, asked: EventLink, correlation: str, known: set[str]
) -> list[EventLink]:
    """The asked event and its causes up to one already `known` (or the correlation's
    edge), for a chain cut by its limit: whoever asks about an event sees it, and how it
    hangs from the part shown."""
    line: list[EventLink] = []
    at: EventLink | None = asked
    while at is not None and at.id not in known and len(line) < CHAIN_DEFAULT:
        if at.id != correlation and at.correlation_id != correlation:
            break  # a cause outside the correlation is not part of its tree
        line.append(at)
        known.add(at.id)
        at = await store.event_link(at.causation_id) if at.causation_id else None
    return line


# Not "batch": GET /v1/events/batch is a 405 naming POST, not a 404 for an event "batch".
@routes.get("/v1/events/{id:(?!batch$)[^/]+}")
async def get_event(request: web.Request) -> web.Response:
    store = request.app[STORE]
    event_id = request.match_info["id"]
    event = await store.get_event(event_id)
    if event is None:
        raise not_found("event", event_id)
    deliveries = await store.list_deliveries(event_id=event_id, limit=MAX_BATCH)
    return json_response(event_out(event, list(reversed(deliveries.items))))
