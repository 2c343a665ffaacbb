"""Tidings: durable event fan-out.

This package's public surface is the SDK: `Client`, `AsyncClient`, `TidingsError` and
the Structs they answer (docs/sdk.md). Everything else (`tidings.api`, `tidings.store`,
...) is the server's and may change between releases; importing `tidings` loads none
of it.
"""

from tidings.sdk import (
    Acked,
    AsyncClient,
    Attempt,
    BadRow,
    Chain,
    ChainNode,
    Client,
    Delivery,
    Destination,
    Event,
    EventIn,
    Health,
    Inbox,
    InboxMessage,
    Lease,
    Leased,
    LeasedEvent,
    Page,
    Presence,
    Published,
    PublishedBatch,
    Replayed,
    RetriedMany,
    Retries,
    RetryPolicy,
    Settled,
    TidingsError,
    Token,
    Upload,
)

__version__ = "0.2.0"

__all__ = [
    "Acked",
    "AsyncClient",
    "Attempt",
    "BadRow",
    "Chain",
    "ChainNode",
    "Client",
    "Delivery",
    "Destination",
    "Event",
    "EventIn",
    "Health",
    "Inbox",
    "InboxMessage",
    "Lease",
    "Leased",
    "LeasedEvent",
    "Page",
    "Presence",
    "Published",
    "PublishedBatch",
    "Replayed",
    "RetriedMany",
    "Retries",
    "RetryPolicy",
    "Settled",
    "TidingsError",
    "Token",
    "Upload",
    "__version__",
]
