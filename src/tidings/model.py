"""The domain's data: events, destinations, deliveries and their policies.

Plain msgspec structs, used on the wire (decoded and validated by msgspec) and between
layers. Shape constraints (types, ranges, lengths) live here; rules that span fields or
need parsing (topic syntax, URLs, filters) live in `policy.validation`. Must never do I/O.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta, Raw, Struct, field

MAX_BATCH = 1000
DeliveryState = Literal["pending", "in_flight", "scheduled", "delivered", "dead"]
DELIVERY_STATES: tuple[str, ...] = ("pending", "in_flight", "scheduled", "delivered", "dead")
DestinationKind = Literal["webhook"]
Ordering = Literal["fifo", "none"]
OnDead = Literal["skip", "block"]
DestinationState = Literal["active", "paused"]

ShortText = Annotated[str, Meta(min_length=1, max_length=255)]
Key = Annotated[str, Meta(max_length=255)]


class RetryPolicy(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Exponential backoff: attempt n waits min(max_ms, initial_ms * multiplier**(n-1)),
    spread by ±jitter; after max_attempts failures the delivery is dead."""

    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 8
    initial_ms: Annotated[int, Meta(ge=1, le=86_400_000)] = 500
    multiplier: Annotated[float, Meta(ge=1.0, le=10.0)] = 2.0
    max_ms: Annotated[int, Meta(ge=1, le=604_800_000)] = 600_000
    jitter: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.1


class DestinationSpec(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a user sets on a destination: the body of POST /v1/destinations."""

    kind: DestinationKind
    topics: Annotated[list[str], Meta(min_length=1, max_length=100)]
    name: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    url: Annotated[str, Meta(max_length=2048)] | None = None
    filter: dict[str, Any] | None = None
    ordering: Ordering = "fifo"
    on_dead: OnDead = "skip"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_ms: Annotated[int, Meta(ge=100, le=300_000)] = 10_000
    rate_limit_per_s: Annotated[float, Meta(gt=0, le=1_000_000)] | None = None
    enabled: bool = True


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

    @property
    def secret(self) -> str:
        return self.secrets[0].value


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


T = TypeVar("T")


class Page(Struct, Generic[T], frozen=True):
    items: list[T]
    next: str | None


def spec_to_builtins(spec: DestinationSpec) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(spec)
    return out
