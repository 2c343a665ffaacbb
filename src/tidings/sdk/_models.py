"""What the SDK's calls answer and take: msgspec Structs mirroring the API's JSON.

Owns the shapes only. Responses decode leniently (a field a newer server adds is
ignored, so an older SDK keeps working); times stay the ISO-8601 strings the server
sent, and payloads stay whatever JSON they were (`Any`). Kind-specific destination
fields and fields only some calls answer default to None and are left out when turned
back into JSON (`msgspec.to_builtins`), so a Struct re-encodes as the server's answer.
Must never do I/O, and never import the server's modules (`import tidings` stays light).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from msgspec import Struct

T = TypeVar("T")


class _Model(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Every answer: immutable, keyword-built, defaults left out when encoded (each
    subclass repeats `frozen` and `kw_only`: msgspec applies kw_only per class)."""


class RetryPolicy(Struct, frozen=True, kw_only=True):
    """A destination's backoff: attempt n waits min(max_ms, initial_ms * multiplier**(n-1)),
    spread by ±jitter; dead after `max_attempts` sends. Every field is always encoded
    (the server's defaults are these, and its answers name them all)."""

    max_attempts: int = 8
    initial_ms: int = 500
    multiplier: float = 2.0
    max_ms: int = 600_000
    jitter: float = 0.1


class Destination(_Model, frozen=True, kw_only=True):
    """A destination as the API answers it, whatever its `kind` (`webhook`,
    `redis_stream`, `redis_channel`, `nats`, `group`): the fields of other kinds are None."""

    kind: str
    id: str
    state: str  # active or paused
    paused_reason: str | None
    secret: str
    created_at: str
    updated_at: str
    url: str | None = None  # credentials in a bus URL come back as ***
    body: str | None = None  # envelope or data
    stream: str | None = None
    maxlen: int | None = None
    channel: str | None = None
    subject: str | None = None
    lease_ms: int | None = None  # group
    topics: list[str]
    name: str | None
    filter: dict[str, Any] | None
    ordering: str
    on_dead: str
    retry: RetryPolicy
    timeout_ms: int
    rate_limit_per_s: float | None
    max_in_flight: int
    alert_url: str | None
    enabled: bool


class Attempt(_Model, frozen=True, kw_only=True):
    """One send of a delivery."""

    at: str
    outcome: str  # delivered, http_error, rejected, timeout, connection_error, refused, lost
    status_code: int | None
    latency_ms: float
    error: str | None
    response_body: str | None


class Delivery(_Model, frozen=True, kw_only=True):
    """One (event, destination) pair; `attempts` only from `get_delivery`."""

    id: str
    event_id: str
    destination_id: str
    key: str
    state: str  # pending, in_flight, scheduled, delivered, dead
    attempt_count: int
    next_attempt_at: str | None
    last_error: str | None
    created_at: str
    updated_at: str
    attempts: list[Attempt] | None = None


class Event(_Model, frozen=True, kw_only=True):
    """A stored event; `deliveries` only from `get_event`."""

    id: str
    topic: str
    key: str
    payload: Any
    recipients: list[str]
    idempotency_key: str | None
    causation_id: str | None
    correlation_id: str | None
    received_at: str
    deliveries: list[Delivery] | None = None


class EventIn(_Model, frozen=True, kw_only=True):
    """One event of `publish_batch` (only `topic` is required)."""

    topic: str
    key: str = ""
    payload: Any = None
    recipients: list[str] | None = None
    idempotency_key: str | None = None
    causation_id: str | None = None
    correlation_id: str | None = None


class Published(_Model, frozen=True, kw_only=True):
    """`publish`'s answer; `duplicate` is True when the idempotency key had been used:
    `id` is then the first event's and nothing was created."""

    id: str
    received_at: str
    deliveries: int
    duplicate: bool = False


class PublishedBatch(_Model, frozen=True, kw_only=True):
    """`publish_batch`'s answer: per event in order, its id (a repeat's is the first
    event's) and its deliveries; `duplicates` counts the repeats."""

    ids: list[str]
    deliveries: list[int]
    duplicates: int


class Page(_Model, Generic[T], frozen=True, kw_only=True):
    """One page of a list; `next` is the cursor of the next page (None: the last)."""

    items: list[T]
    next: str | None


class ChainNode(_Model, frozen=True, kw_only=True):
    """One event of a causation tree, without its payload."""

    id: str
    topic: str
    key: str
    received_at: str
    causation_id: str | None
    correlation_id: str | None
    parent_id: str | None  # its cause when that event is in the tree
    depth: int  # 0 for a root


class Chain(_Model, frozen=True, kw_only=True):
    """The causation tree of a correlation, depth first."""

    correlation_id: str
    items: list[ChainNode]
    truncated: bool


class Replayed(_Model, frozen=True, kw_only=True):
    replayed: int


class RetriedMany(_Model, frozen=True, kw_only=True):
    retried: int
    not_found: list[str]
    conflicts: list[str]


class BadRow(_Model, frozen=True, kw_only=True):
    line: int
    reason: str


class Upload(_Model, frozen=True, kw_only=True):
    """An uploaded file's report; `state` is receiving, queued, reading, done or failed."""

    upload_id: str
    state: str
    file: str
    format: str
    bytes: int
    rows: int
    events: int
    duplicates: int
    bad_rows: int
    bad: list[BadRow]
    last_line: int
    error: str | None
    created_at: str
    updated_at: str


class InboxMessage(_Model, frozen=True, kw_only=True):
    offset: int
    id: str
    topic: str
    payload: Any
    received_at: str


class Inbox(_Model, frozen=True, kw_only=True):
    """Messages after an offset; `next` is the `after` of the next page (None at the
    top), `top` the user's last offset."""

    messages: list[InboxMessage]
    next: int | None
    top: int


class Acked(_Model, frozen=True, kw_only=True):
    acked: int


class Token(_Model, frozen=True, kw_only=True):
    token: str
    expires_at: str


class Presence(_Model, frozen=True, kw_only=True):
    user_id: str
    online: bool
    connections: int


class Health(_Model, frozen=True, kw_only=True):
    """`/healthz` (`status` "ok", with the server's version) or `/readyz` ("ready")."""

    status: str
    version: str | None = None


class LeasedEvent(_Model, frozen=True, kw_only=True):
    id: str
    topic: str
    key: str
    payload: Any
    received_at: str
    causation_id: str | None
    correlation_id: str | None


class Lease(_Model, frozen=True, kw_only=True):
    """One delivery of a pull group held by this consumer until `lease_expires_at`;
    `lease_id` is what `ack`, `nack` and `extend` take (it names this lease, not the
    delivery: a lease that expired and went to another consumer has a new one)."""

    lease_id: str
    delivery_id: str
    attempt: int
    lease_expires_at: str
    event: LeasedEvent


class Leased(_Model, frozen=True, kw_only=True):
    items: list[Lease]


class Settled(_Model, frozen=True, kw_only=True):
    """The answer of ack, nack and extend: the lease ids done, and those whose lease had
    already expired or moved on (nothing changed for them)."""

    ok: list[str]
    lost: list[str]
