"""The domain's data: events, destinations, deliveries and their policies.

Plain msgspec structs, used on the wire (decoded and validated by msgspec) and between
layers. Shape constraints (types, ranges, lengths) live here; rules that span fields or
need parsing (topic syntax, URLs, filters) live in `policy.validation`. Must never do I/O.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar, cast

import msgspec
from msgspec import Meta, Raw, Struct, field

MAX_BATCH = 1000
DeliveryState = Literal["pending", "in_flight", "scheduled", "delivered", "dead"]
DELIVERY_STATES: tuple[str, ...] = ("pending", "in_flight", "scheduled", "delivered", "dead")
DestinationKind = Literal["webhook", "redis_stream", "redis_channel", "nats", "group"]
Ordering = Literal["fifo", "none"]
BodyShape = Literal["envelope", "data"]
OnDead = Literal["skip", "block"]
DestinationState = Literal["active", "paused"]
AttemptOutcome = Literal[
    "delivered",
    "http_error",
    "rejected",
    "timeout",
    "connection_error",
    "refused",
    "lost",
    "nacked",
]
MAX_RESPONSE_BODY = 2048  # bytes of a receiver's answer kept with each attempt

ShortText = Annotated[str, Meta(min_length=1, max_length=255)]
MAX_KEY_LENGTH = 255
Key = Annotated[str, Meta(max_length=MAX_KEY_LENGTH)]
Url = Annotated[str, Meta(max_length=2048)]
BusName = Annotated[str, Meta(min_length=1, max_length=255)]  # a stream, channel, subject


class RetryPolicy(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Exponential backoff: attempt n waits min(max_ms, initial_ms * multiplier**(n-1)),
    spread by ±jitter; after max_attempts failures the delivery is dead."""

    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 8
    initial_ms: Annotated[int, Meta(ge=1, le=86_400_000)] = 500
    multiplier: Annotated[float, Meta(ge=1.0, le=10.0)] = 2.0
    max_ms: Annotated[int, Meta(ge=1, le=604_800_000)] = 600_000
    jitter: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.1


class DestinationBase(
    Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"
):
    """What every destination has, whatever its kind: the fields of POST /v1/destinations
    beside `kind` and the kind's own (a subclass per kind, tagged with it)."""

    topics: Annotated[list[str], Meta(min_length=1, max_length=100)]
    name: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    filter: dict[str, Any] | None = None
    ordering: Ordering = "fifo"
    on_dead: OnDead = "skip"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_ms: Annotated[int, Meta(ge=100, le=300_000)] = 10_000
    rate_limit_per_s: Annotated[float, Meta(gt=0, le=1_000_000)] | None = None
    max_in_flight: Annotated[int, Meta(ge=1, le=1000)] = 16
    alert_url: Url | None = None
    enabled: bool = True

    @property
    def kind(self) -> DestinationKind:
        """The tag: which transport sends to it."""
        return cast(DestinationKind, self.__struct_config__.tag)


class WebhookSpec(DestinationBase, frozen=True, tag="webhook"):
    """A signed HTTP POST per delivery (Standard Webhooks)."""

    url: Url
    # "envelope": {"type", "timestamp", "data"}; "data": the payload's bytes alone.
    body: BodyShape = "envelope"


class RedisStreamSpec(DestinationBase, frozen=True, tag="redis_stream"):
    """An XADD per delivery (fields id, topic, key, payload, received_at), to `stream`
    of the Redis server at `url`; trimmed to about `maxlen` entries when set."""

    url: Url
    stream: BusName
    maxlen: Annotated[int, Meta(ge=1, le=1 << 62)] | None = None


class RedisChannelSpec(DestinationBase, frozen=True, tag="redis_channel"):
    """A PUBLISH per delivery, to `channel` of the Redis server at `url`, of the body a
    webhook would carry."""

    url: Url
    channel: BusName
    body: BodyShape = "envelope"


class NatsSpec(DestinationBase, frozen=True, tag="nats"):
    """A JetStream publish per delivery, to `subject` (which may hold `{topic}` and
    `{key}`) on the NATS server at `url`, of the body a webhook would carry."""

    url: Url
    subject: BusName
    body: BodyShape = "envelope"


MAX_LEASE_MS = 3_600_000  # an hour: a handler holding one longer extends it


class GroupSpec(DestinationBase, frozen=True, tag="group"):
    """A pull group: its deliveries wait in the store until a consumer leases them
    (`POST /v1/groups/{name}/lease`) for `lease_ms`, then acks or nacks each. No URL:
    nothing is sent. `name` is required, it is the group's address."""

    name: Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")]
    lease_ms: Annotated[int, Meta(ge=1000, le=MAX_LEASE_MS)] = 30_000


# Every kind the API knows, a tagged union on `kind`: what POST /v1/destinations decodes
# and what the store keeps (as JSON) for each destination.
DestinationSpec = WebhookSpec | RedisStreamSpec | RedisChannelSpec | NatsSpec | GroupSpec


class Secret(Struct, frozen=True, kw_only=True):
    """A signing secret; `expires_at` (µs) is set on a rotated-out secret's grace period."""

    value: str
    expires_at: int | None = None


class Destination(Struct, frozen=True, kw_only=True):
    id: str
    spec: DestinationSpec
    secrets: list[Secret]
    state: DestinationState
    created_at: int
    updated_at: int
    paused_reason: str | None = None

    @property
    def secret(self) -> str:
        return self.secrets[0].value

    def live_secrets(self, now: int) -> tuple[str, ...]:
        """The secrets to sign with: the current one, then any still in their grace period."""
        return tuple(s.value for s in self.secrets if s.expires_at is None or s.expires_at > now)

    @property
    def deliverable(self) -> bool:
        """May the engine send to it now (subscribed and not paused)?"""
        return self.spec.enabled and self.state == "active"


class EventIn(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of POST /v1/events (and each item of a batch)."""

    topic: str
    key: Key = ""
    payload: Raw = field(default_factory=lambda: Raw(b"null"))
    recipients: Annotated[list[ShortText], Meta(max_length=1000)] = field(default_factory=list)
    idempotency_key: ShortText | None = None
    causation_id: ShortText | None = None
    correlation_id: ShortText | None = None


class BatchIn(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    events: Annotated[list[EventIn], Meta(min_length=1, max_length=MAX_BATCH)]


class Appended(Struct, frozen=True, kw_only=True):
    """What the store answers for one ingested event."""

    id: str
    received_at: int
    deliveries: int
    duplicate: bool = False
    # (user_id, offset) of each inbox message this event wrote, one per recipient.
    inbox: tuple[tuple[str, int], ...] = ()


class InboxMessage(Struct, frozen=True, kw_only=True):
    """One message of a user's inbox: an event that named the user as a recipient."""

    offset: int
    id: str
    topic: str
    payload: Raw
    received_at: int


class InboxPage(Struct, frozen=True, kw_only=True):
    """Messages after an offset, oldest first, with the user's top and ack offsets."""

    messages: list[InboxMessage]
    top: int
    acked: int


class Event(Struct, frozen=True, kw_only=True):
    id: str
    seq: int
    topic: str
    key: str
    payload: Raw
    recipients: list[str]
    idempotency_key: str | None
    causation_id: str | None
    correlation_id: str | None
    received_at: int


class EventLink(Struct, frozen=True, kw_only=True):
    """An event without its payload: what a causation chain shows of it."""

    id: str
    seq: int
    topic: str
    key: str
    causation_id: str | None
    correlation_id: str | None
    received_at: int


class Delivery(Struct, frozen=True, kw_only=True):
    id: str
    seq: int
    event_id: str
    destination_id: str
    key: str
    state: DeliveryState
    attempts: int
    next_attempt_at: int | None
    last_error: str | None
    created_at: int
    updated_at: int


class Answer(Struct, frozen=True, array_like=True):
    """What the far end answered, in its own protocol's terms, as its transport read it:
    kept with the attempt and shown by the API as `status_code` and `response_body`.
    Nothing but the transport that wrote it reads meaning into it."""

    status_code: int | None = None  # a webhook's HTTP status; a bus has none
    # At most MAX_RESPONSE_BODY bytes, decoded leniently: the start of a webhook's
    # response; the id a bus gave the message (a stream entry id, a JetStream sequence).
    body: str | None = None


class AttemptResult(Struct, frozen=True, kw_only=True):
    """What one delivery attempt came to, as a transport reports it (no policy applied).

    `outcome` is `delivered` once the target acknowledged it (a webhook's 2xx, a bus's
    ack); `http_error` for a webhook's other status; `rejected` for a bus's error reply;
    `timeout`, `connection_error` (refused, reset, DNS), `refused` (Tidings would not
    connect: the SSRF guard, the bus allow-list), or `lost` (the worker holding the lease
    vanished mid-attempt). `gone` is the target saying it is gone for good (a webhook's
    410), in words for the operator: the destination is paused with it as the reason.
    """

    at: int  # µs, when the attempt started
    outcome: AttemptOutcome
    latency_ms: float = 0.0
    error: str | None = None
    answer: Answer | None = None
    retry_after_ms: int | None = None  # the target asked for this wait (a Retry-After)
    gone: str | None = None

    @property
    def status_code(self) -> int | None:
        return None if self.answer is None else self.answer.status_code

    @property
    def response_body(self) -> str | None:
        return None if self.answer is None else self.answer.body


class Attempt(Struct, frozen=True, kw_only=True):
    """One recorded attempt of a delivery (what `GET /v1/deliveries/{id}` lists)."""

    at: int
    outcome: str
    status_code: int | None
    latency_ms: float
    error: str | None
    response_body: str | None


class ClaimAsk(Struct, frozen=True, kw_only=True):
    """Claim at most `limit` due lane heads of one destination, leased for `lease_us`."""

    destination_id: str
    limit: int
    lease_us: int


class Claim(Struct, frozen=True, kw_only=True):
    """A delivery handed to one worker under a lease, with what it needs to send it."""

    delivery_id: str
    destination_id: str
    lane_key: str  # the event's key
    attempt: int  # this attempt's number, 1 for the first
    event_id: str
    topic: str
    payload: bytes
    received_at: int


class ClaimBatch(Struct, frozen=True, kw_only=True):
    claims: list[Claim]
    next_due: int | None  # earliest due time among the asked destinations' unclaimed heads


class LostLease(Struct, frozen=True, kw_only=True):
    """An in-flight delivery whose lease expired: its worker died or stalled."""

    delivery_id: str
    destination_id: str
    lane_key: str
    attempts: int
    owner: str
    event_id: str = ""


class LeaseRef(Struct, frozen=True, kw_only=True):
    """One consumer's hold on a delivery of a pull group: the delivery and the token of
    the lease call that handed it out. A later lease of the same delivery has another
    token, so an ack or nack naming this one after it moved on is told apart (`lost`)."""

    delivery_id: str
    token: str


class Lease(Struct, frozen=True, kw_only=True):
    """A delivery of a pull group handed to a consumer until `expires_at` (µs)."""

    ref: LeaseRef
    attempt: int  # this attempt's number, 1 for the first
    expires_at: int
    event: Event


class Leased(Struct, frozen=True, kw_only=True):
    leases: list[Lease]
    next_due: int | None  # earliest due time of the group's heads left unleased (µs)


class Settled(Struct, frozen=True, kw_only=True):
    """What an ack, nack, extend (or expiry) of leases did: `ok` were held and changed,
    `lost` were not (expired, or leased again since), `dead` the deliveries made dead."""

    ok: list[LeaseRef] = field(default_factory=list)
    lost: list[LeaseRef] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)


CompletionState = Literal["delivered", "scheduled", "dead"]


class Completion(Struct, frozen=True, kw_only=True):
    """The end of one attempt, to be written only if `owner` still holds the lease."""

    delivery_id: str
    destination_id: str
    lane_key: str
    owner: str
    attempt: AttemptResult
    state: CompletionState
    next_attempt_at: int | None
    release_lane: bool  # the lane may move on (delivered, or dead and skipped)
    failed: bool  # counts toward the destination's run of consecutive failures
    # The target is gone for good (the attempt's `gone`, why): the write that records
    # this completion pauses the destination, with this as the reason.
    gone: str | None = None
    # Nothing was sent (a claim given back unused): the attempt the claim counted is
    # given back too, and no attempt is recorded.
    unsent: bool = False
    # What the operator's log line names (the store does not need them).
    event_id: str = ""
    attempt_number: int = 0  # this attempt's number, 1 for the first


class Completed(Struct, frozen=True, kw_only=True):
    applied: int  # completions written (the others had lost their lease)
    # Destinations this write paused (a run of failures, or a target gone), as stored
    # after it: their `paused_reason` says which.
    paused: list[Destination]
    dead: list[str] = field(default_factory=list)  # deliveries this write made dead


UploadState = Literal["receiving", "queued", "reading", "done", "failed"]


class UploadBadRow(Struct, frozen=True):
    line: int
    reason: str


class Upload(Struct, frozen=True, kw_only=True):
    """An uploaded file and how far its reading got (the store keeps it whole)."""

    id: str
    file: str
    state: UploadState
    format: str = "csv"
    message: str = ""  # for rows without one
    bytes: int = 0
    rows: int = 0  # good rows read and stored
    events: int = 0
    duplicates: int = 0
    bad_rows: int = 0
    bad: list[UploadBadRow] = field(default_factory=list)  # the first 100
    last_line: int = 0
    error: str | None = None
    created_at: int = 0
    updated_at: int = 0


class Retried(Struct, frozen=True, kw_only=True):
    """What a retry of many deliveries did."""

    retried: int
    not_found: list[str]
    conflicts: list[str]  # pending or in flight already


class Swept(Struct, frozen=True, kw_only=True):
    """What one retention chunk did: `deleted` events went, `kept` were looked at and
    stay (something still holds them); `upto` is the last seq it looked at (the next
    chunk of the pass starts after it), None when no event received before the cutoff is
    left after it (the pass is over)."""

    deleted: int
    upto: int | None
    kept: int = 0


class Activity(Struct, frozen=True, kw_only=True):
    """The store's tops (last event and attempt seq) and what came after given tops: the
    dashboard turns two of these into rates (issue 17)."""

    event_seq: int
    attempt_seq: int
    events: int  # events with seq above the `after_event_seq` asked (0 when none asked)
    outcomes: dict[str, int]  # attempts above `after_attempt_seq`, by outcome


class AttemptSample(Struct, frozen=True, array_like=True):
    """One recent attempt, for a destination's health: success rate and latency."""

    destination_id: str
    outcome: str
    latency_ms: float


class Backlog(Struct, frozen=True, kw_only=True):
    destination_id: str
    pending: int
    scheduled: int
    in_flight: int
    oldest_created_at: int | None


T = TypeVar("T")


class Page(Struct, Generic[T], frozen=True):
    items: list[T]
    next: str | None


def spec_url(spec: DestinationSpec) -> str | None:
    """The URL a destination sends to; None for a pull group (nothing is sent)."""
    return None if isinstance(spec, GroupSpec) else spec.url


def spec_to_builtins(spec: DestinationSpec) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(spec)
    return out
