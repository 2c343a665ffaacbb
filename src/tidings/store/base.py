"""The store interface every backend implements, and its errors.

The domain speaks only to `Store`. An implementation must:
- make `append_events` atomic and durable before it returns: the events, their
  idempotency keys and every delivery fan-out creates commit together or not at all;
- hand out a strictly increasing per-store sequence (`Event.seq`) and `received_at`
  values that never decrease along it, so (received_at, seq) is the FIFO order;
- answer lists newest first with opaque cursors (`encode_cursor`/`decode_cursor`).
The shared contract tests in tests/store run against every implementation.
"""

from __future__ import annotations

import abc
import base64
import binascii
from collections.abc import Sequence

from tidings.model import Appended, Delivery, Destination, DestinationSpec, Event, EventIn, Page


class StoreError(Exception):
    pass


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    """A uniqueness rule was broken; `field` names the input field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class StoreUnavailable(StoreError):
    """The database cannot be reached or cannot write right now; retrying may succeed."""


class InvalidCursor(StoreError):
    pass


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("s"):
            raise ValueError(cursor)
        return int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor(cursor) from exc


class Store(abc.ABC):
    """Durable state of Tidings. All methods are coroutines safe to call concurrently."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a query."""

    # -- small key/value facts (the API key hash, ...)
    @abc.abstractmethod
    async def get_meta(self, key: str) -> str | None: ...

    @abc.abstractmethod
    async def set_meta_if_absent(self, key: str, value: str) -> str:
        """Store `value` unless `key` exists; answer the value now stored."""

    # -- ingest
    @abc.abstractmethod
    async def append_events(self, events: Sequence[EventIn]) -> list[Appended]:
        """Persist events with their fan-out, all or nothing; durable when this returns.

        An event whose idempotency_key is already stored (or repeats an earlier event of
        the same call) creates nothing and answers the first event, `duplicate=True`.
        """

    # -- destinations
    @abc.abstractmethod
    async def create_destination(self, spec: DestinationSpec, secret: str) -> Destination:
        """Raise Conflict("name") when the name is taken."""

    @abc.abstractmethod
    async def get_destination(self, ref: str) -> Destination | None:
        """By id, or by name when `ref` is not an id."""

    @abc.abstractmethod
    async def list_destinations(self, limit: int, cursor: str | None) -> Page[Destination]: ...

    @abc.abstractmethod
    async def update_destination(self, destination_id: str, spec: DestinationSpec) -> Destination:
        """Replace the spec; raise NotFound, or Conflict("name")."""

    @abc.abstractmethod
    async def delete_destination(self, destination_id: str) -> bool:
        """Delete it and its deliveries; False when there was none."""

    @abc.abstractmethod
    async def rotate_secret(
        self, destination_id: str, new_secret: str, grace_until: int
    ) -> Destination:
        """Make `new_secret` current; the old one stays valid until `grace_until` (µs)."""

    # -- reads
    @abc.abstractmethod
    async def get_event(self, event_id: str) -> Event | None: ...

    @abc.abstractmethod
    async def list_events(self, topic: str | None, limit: int, cursor: str | None) -> Page[Event]:
        """`topic` is exact, or a pattern ending in `*` (prefix match)."""

    @abc.abstractmethod
    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    @abc.abstractmethod
    async def list_deliveries(
        self,
        *,
        destination_id: str | None = None,
        state: str | None = None,
        event_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Delivery]: ...


def open_store(database_url: str) -> Store:
    """Build (not yet open) the store a database URL names."""
    if database_url.startswith("sqlite:///"):
        from tidings.store.sqlite import SQLiteStore

        return SQLiteStore(database_url.removeprefix("sqlite:///"))
    if database_url.startswith(("postgresql://", "postgres://")):
        raise StoreError("the PostgreSQL store is not available yet in this version")
    raise StoreError(
        f"unsupported database URL {database_url!r}: use sqlite:///PATH or postgresql://..."
    )
