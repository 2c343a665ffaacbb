"""What the API answers: response shapes and their rendering from domain structs.

Times go out as ISO-8601 UTC strings. These structs also feed the OpenAPI components.
Must never do I/O.
"""

from __future__ import annotations

from typing import cast

import msgspec
from msgspec import Raw, Struct

from tidings.model import (
    Attempt,
    Delivery,
    Destination,
    DestinationBase,
    Event,
    GroupSpec,
    NatsSpec,
    RedisChannelSpec,
    RedisStreamSpec,
    Upload,
    UploadState,
    WebhookSpec,
)
from tidings.policy.redaction import mask_credentials
from tidings.timeutil import to_iso


class ErrorBody(Struct, frozen=True):
    code: str
    message: str
    field: str | None = None


class ErrorOut(Struct, frozen=True):
    error: ErrorBody


class AcceptedOut(Struct, frozen=True):
    id: str
    received_at: str
    deliveries: int


class BatchAcceptedOut(Struct, frozen=True):
    ids: list[str]
    deliveries: list[int]
    duplicates: int


class DestinationOutBase(DestinationBase, frozen=True):
    """A destination as answered: its spec (credentials in URLs masked), and what the
    server keeps beside it. A subclass per kind adds the kind's own fields."""

    id: str
    state: str
    paused_reason: str | None
    secret: str
    created_at: str
    updated_at: str


class WebhookOut(DestinationOutBase, frozen=True, tag="webhook"):
    url: str
    body: str  # envelope or data


class RedisStreamOut(DestinationOutBase, frozen=True, tag="redis_stream"):
    url: str  # credentials masked
    stream: str
    maxlen: int | None


class RedisChannelOut(DestinationOutBase, frozen=True, tag="redis_channel"):
    url: str  # credentials masked
    channel: str
    body: str


class NatsOut(DestinationOutBase, frozen=True, tag="nats"):
    url: str  # credentials masked
    subject: str
    body: str


class GroupOut(DestinationOutBase, frozen=True, tag="group"):
    lease_ms: int


DestinationOut = WebhookOut | RedisStreamOut | RedisChannelOut | NatsOut | GroupOut
_OUT: dict[type[DestinationBase], type[DestinationOutBase]] = {
    WebhookSpec: WebhookOut,
    RedisStreamSpec: RedisStreamOut,
    RedisChannelSpec: RedisChannelOut,
    NatsSpec: NatsOut,
    GroupSpec: GroupOut,
}


class AttemptOut(Struct, frozen=True, kw_only=True):
    at: str
    outcome: str
    status_code: int | None
    latency_ms: float
    error: str | None
    response_body: str | None


class DeliveryOut(Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    event_id: str
    destination_id: str
    key: str
    state: str
    attempt_count: int
    next_attempt_at: str | None
    last_error: str | None
    created_at: str
    updated_at: str
    attempts: list[AttemptOut] | None = None  # on GET /v1/deliveries/{id} only


class ReplayOut(Struct, frozen=True):
    replayed: int


class RetryManyOut(Struct, frozen=True):
    retried: int
    not_found: list[str]
    conflicts: list[str]


class EventOut(Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    topic: str
    key: str
    payload: Raw
    recipients: list[str]
    idempotency_key: str | None
    causation_id: str | None
    correlation_id: str | None
    received_at: str
    deliveries: list[DeliveryOut] | None = None


class DestinationList(Struct, frozen=True):
    items: list[DestinationOut]
    next: str | None


class EventList(Struct, frozen=True):
    items: list[EventOut]
    next: str | None


class ChainDeliveryOut(Struct, frozen=True, kw_only=True):
    """What became of an event at one destination: where a flow stopped, and why."""

    id: str
    destination_id: str
    destination_name: str | None  # None: the destination has no name (or is gone)
    state: str
    attempts: int
    last_error: str | None


class ChainNodeOut(Struct, frozen=True, kw_only=True):
    id: str
    topic: str
    key: str
    received_at: str
    causation_id: str | None
    correlation_id: str | None
    parent_id: str | None  # the causation_id when that event is in this tree
    depth: int  # 0 for a root
    deliveries: list[ChainDeliveryOut]  # the event's deliveries, oldest destination first


class ChainOut(Struct, frozen=True, kw_only=True):
    correlation_id: str
    items: list[ChainNodeOut]  # depth-first: each event, then what it caused, oldest first
    truncated: bool  # the correlation holds more events than `limit`; these are the oldest


class BadRowOut(Struct, frozen=True, kw_only=True):
    line: int
    reason: str


class UploadOut(Struct, frozen=True, kw_only=True):
    upload_id: str
    state: UploadState  # queued and reading: a large upload read in the background
    file: str
    format: str  # csv or jsonl
    bytes: int
    rows: int  # good rows read
    events: int  # events created
    duplicates: int  # rows already ingested (an earlier upload of the same content)
    bad_rows: int
    bad: list[BadRowOut]  # the first 100 bad rows
    last_line: int  # the last line read so far
    error: str | None
    created_at: str
    updated_at: str


class DeliveryList(Struct, frozen=True):
    items: list[DeliveryOut]
    next: str | None


def upload_out(u: Upload) -> UploadOut:
    return UploadOut(
        upload_id=u.id,
        state=u.state,
        file=u.file,
        format=u.format,
        bytes=u.bytes,
        rows=u.rows,
        events=u.events,
        duplicates=u.duplicates,
        bad_rows=u.bad_rows,
        bad=[BadRowOut(line=b.line, reason=b.reason) for b in u.bad],
        last_line=u.last_line,
        error=u.error,
        created_at=to_iso(u.created_at),
        updated_at=to_iso(u.updated_at or u.created_at),
    )


def destination_out(d: Destination) -> DestinationOut:
    spec = d.spec
    fields = {name: getattr(spec, name) for name in spec.__struct_fields__}
    if "url" in fields:  # a pull group has none
        fields["url"] = mask_credentials(fields["url"])
    out = _OUT[type(spec)](
        **fields,
        id=d.id,
        state=d.state,
        paused_reason=d.paused_reason,
        secret=d.secret,
        created_at=to_iso(d.created_at),
        updated_at=to_iso(d.updated_at),
    )
    return cast(DestinationOut, out)


def attempt_out(a: Attempt) -> AttemptOut:
    return AttemptOut(
        at=to_iso(a.at),
        outcome=a.outcome,
        status_code=a.status_code,
        latency_ms=round(a.latency_ms, 3),
        error=a.error,
        response_body=a.response_body,
    )


def delivery_out(d: Delivery, attempts: list[Attempt] | None = None) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        event_id=d.event_id,
        destination_id=d.destination_id,
        key=d.key,
        state=d.state,
        attempt_count=d.attempts,
        next_attempt_at=None if d.next_attempt_at is None else to_iso(d.next_attempt_at),
        last_error=d.last_error,
        created_at=to_iso(d.created_at),
        updated_at=to_iso(d.updated_at),
        attempts=None if attempts is None else [attempt_out(a) for a in attempts],
    )


def event_out(e: Event, deliveries: list[Delivery] | None = None) -> EventOut:
    return EventOut(
        id=e.id,
        topic=e.topic,
        key=e.key,
        payload=e.payload,
        recipients=e.recipients,
        idempotency_key=e.idempotency_key,
        causation_id=e.causation_id,
        correlation_id=e.correlation_id,
        received_at=to_iso(e.received_at),
        deliveries=None if deliveries is None else [delivery_out(d) for d in deliveries],
    )


encode = msgspec.json.Encoder().encode
