"""The Python SDK of Tidings: `Client` (blocking) and `AsyncClient` (asyncio), the
Structs they answer, and `TidingsError`. Re-exported by `tidings`; import from there.

Must never import the server (aiohttp, the store, the engine): `import tidings` stays light.
"""

from tidings.sdk._async_client import AsyncClient
from tidings.sdk._calls import Retries
from tidings.sdk._consumer import Consumer
from tidings.sdk._errors import TidingsError
from tidings.sdk._models import (
    Acked,
    Attempt,
    BadRow,
    Chain,
    ChainNode,
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
    RetryPolicy,
    Settled,
    Token,
    Upload,
)
from tidings.sdk._sync_client import Client

__all__ = [
    "Acked",
    "AsyncClient",
    "Attempt",
    "BadRow",
    "Chain",
    "ChainNode",
    "Client",
    "Consumer",
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
]
