"""`AsyncClient`: every call of the Tidings API, typed, for asyncio code.

Owns the calls (one method each) and running them: pooled connections (one
`httpx2.AsyncClient`), retries by `Retries`, answers decoded into the Structs of
`_models`, failures raised as `TidingsError`. `_sync_client.py` is generated from this
file by tools/gen_sync_client.py (`make sdk`): edit this one. Must never block the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import httpx2

from tidings.sdk._calls import (
    DEFAULT_TIMEOUT_S,
    LONG_POLL_MARGIN_S,
    PAGE_MOST,
    AsyncFetch,
    Call,
    Retries,
    check,
    decode,
    fields,
    new_idempotency_key,
    query,
    segment,
    settings,
    transport_error,
)
from tidings.sdk._context import stamped, stamps
from tidings.sdk._models import (
    Acked,
    Chain,
    Delivery,
    Destination,
    Event,
    EventIn,
    Health,
    Inbox,
    Leased,
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

T = TypeVar("T")


class AsyncClient:
    """A client of one Tidings server.

    `base_url` defaults to TIDINGS_URL (else http://127.0.0.1:8080), `api_key` to
    TIDINGS_API_KEY; `timeout` is per attempt, in seconds; `retries` says when a failed
    attempt goes again. Use it as `async with AsyncClient(...) as client:` or call
    `aclose()`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: Retries | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url, all_headers = settings(base_url, api_key, headers)
        self.timeout = timeout
        self.retries = retries or Retries()
        self._http = httpx2.AsyncClient(
            base_url=self.base_url, headers=all_headers, timeout=timeout, follow_redirects=False
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    async def _send(self, call: Call) -> httpx2.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, **call.request_args())
            except httpx2.TransportError as exc:
                delay = self.retries.after_failure(call, attempt, exc)
                if delay is None:
                    raise transport_error(
                        self.base_url, call.timeout_s or self.timeout, exc
                    ) from exc
            else:
                delay = None
                if not response.is_success:
                    delay = self.retries.after_status(
                        call, attempt, response.status_code, response.headers.get("Retry-After")
                    )
                if delay is None:
                    return check(response)
            attempt += 1
            await asyncio.sleep(delay)

    async def _call(self, call: Call, into: type[T]) -> T:
        return decode(await self._send(call), into, self.base_url)

    async def _every(self, fetch: AsyncFetch[Page[T]]) -> AsyncIterator[T]:
        """Every item of a paged list call, page after page, following `next`."""
        cursor: str | None = None
        while True:
            page = await fetch(cursor=cursor)
            for item in page.items:
                yield item
            if page.next is None:
                return
            cursor = page.next

    # Operations

    async def health(self) -> Health:
        """`GET /healthz`: the process is up (`status` "ok" and its `version`)."""
        return await self._call(Call("GET", "/healthz", replayable=True), Health)

    async def ready(self) -> Health:
        """`GET /readyz`: the store answers (`status` "ready"); a 503 raises at once."""
        return await self._call(Call("GET", "/readyz", retry=False), Health)

    # Destinations

    async def create_destination(
        self,
        kind: str,
        topics: Sequence[str],
        *,
        url: str | None = None,
        name: str | None = None,
        filter: Mapping[str, Any] | None = None,
        ordering: str | None = None,
        on_dead: str | None = None,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        timeout_ms: int | None = None,
        rate_limit_per_s: float | None = None,
        max_in_flight: int | None = None,
        alert_url: str | None = None,
        body: str | None = None,
        enabled: bool | None = None,
        stream: str | None = None,
        maxlen: int | None = None,
        channel: str | None = None,
        subject: str | None = None,
        lease_ms: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Destination:
        """`POST /v1/destinations`: a new destination (its `secret` included). Fields
        left None take the server's defaults; `extra` adds fields as they are."""
        spec = fields(
            {
                "kind": kind,
                "topics": list(topics),
                "url": url,
                "name": name,
                "filter": filter,
                "ordering": ordering,
                "on_dead": on_dead,
                "retry": retry,
                "timeout_ms": timeout_ms,
                "rate_limit_per_s": rate_limit_per_s,
                "max_in_flight": max_in_flight,
                "alert_url": alert_url,
                "body": body,
                "enabled": enabled,
                "stream": stream,
                "maxlen": maxlen,
                "channel": channel,
                "subject": subject,
                "lease_ms": lease_ms,
            },
            extra,
        )
        return await self._call(Call("POST", "/v1/destinations", json=spec), Destination)

    async def list_destinations(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Destination]:
        """`GET /v1/destinations`: one page, newest first."""
        params = query(limit=limit, cursor=cursor)
        return await self._call(
            Call("GET", "/v1/destinations", params, replayable=True), Page[Destination]
        )

    def iter_destinations(self, *, page_size: int = PAGE_MOST) -> AsyncIterator[Destination]:
        """Every destination, page after page."""
        return self._every(partial(self.list_destinations, limit=page_size))

    async def get_destination(self, ref: str) -> Destination:
        """`GET /v1/destinations/{id}`, by id or name."""
        path = f"/v1/destinations/{segment(ref)}"
        return await self._call(Call("GET", path, replayable=True), Destination)

    async def update_destination(
        self,
        ref: str,
        *,
        topics: Sequence[str] | None = None,
        url: str | None = None,
        name: str | None = None,
        filter: Mapping[str, Any] | None = None,
        ordering: str | None = None,
        on_dead: str | None = None,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        timeout_ms: int | None = None,
        rate_limit_per_s: float | None = None,
        max_in_flight: int | None = None,
        alert_url: str | None = None,
        body: str | None = None,
        enabled: bool | None = None,
        state: str | None = None,
        lease_ms: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Destination:
        """`PATCH /v1/destinations/{id}`: change the fields given (None: unchanged; to
        set one to null, put it in `extra`). `retry` merges field by field;
        `state="paused"` pauses, `"active"` resumes."""
        changes = fields(
            {
                "topics": None if topics is None else list(topics),
                "url": url,
                "name": name,
                "filter": filter,
                "ordering": ordering,
                "on_dead": on_dead,
                "retry": retry,
                "timeout_ms": timeout_ms,
                "rate_limit_per_s": rate_limit_per_s,
                "max_in_flight": max_in_flight,
                "alert_url": alert_url,
                "body": body,
                "enabled": enabled,
                "state": state,
                "lease_ms": lease_ms,
            },
            extra,
        )
        path = f"/v1/destinations/{segment(ref)}"
        return await self._call(Call("PATCH", path, json=changes, replayable=True), Destination)

    async def delete_destination(self, ref: str) -> None:
        """`DELETE /v1/destinations/{id}`: it and its deliveries."""
        await self._send(Call("DELETE", f"/v1/destinations/{segment(ref)}"))

    async def rotate_secret(self, ref: str) -> Destination:
        """`POST /v1/destinations/{id}/rotate-secret`: a new signing secret (the old one
        stays valid 24 hours)."""
        path = f"/v1/destinations/{segment(ref)}/rotate-secret"
        return await self._call(Call("POST", path), Destination)

    async def replay(
        self,
        ref: str,
        *,
        state: str = "dead",
        since: str | None = None,
        until: str | None = None,
    ) -> Replayed:
        """`POST /v1/destinations/{id}/replay`: send again its deliveries in `state`
        (dead or delivered), created in [since, until) when given (ISO-8601)."""
        path = f"/v1/destinations/{segment(ref)}/replay"
        spec = fields({"state": state, "since": since, "until": until})
        return await self._call(Call("POST", path, json=spec), Replayed)

    # Events

    async def publish(
        self,
        topic: str,
        payload: Any = None,
        *,
        key: str = "",
        recipients: Sequence[str] | None = None,
        idempotency_key: str | None = None,
        causation_id: str | None = None,
        correlation_id: str | None = None,
    ) -> Published:
        """`POST /v1/events`: publish one event. Always sent with an `Idempotency-Key`
        (`idempotency_key`, else one made here), so a retried publish never creates a
        second event; `duplicate` says the key had been used before. Inside a
        `Consumer` handler, `causation_id` and `correlation_id` default to the handled
        event and its correlation."""
        causation_id, correlation_id = stamps(causation_id, correlation_id)
        event = EventIn(
            topic=topic,
            key=key,
            payload=payload,
            recipients=None if recipients is None else list(recipients),
            causation_id=causation_id,
            correlation_id=correlation_id,
        )
        call = Call(
            "POST",
            "/v1/events",
            json=event,
            headers={"Idempotency-Key": idempotency_key or new_idempotency_key()},
            replayable=True,
        )
        response = await self._send(call)
        published = decode(response, Published, self.base_url)
        if response.status_code == 200:  # the key's first event, nothing created
            return Published(
                id=published.id,
                received_at=published.received_at,
                deliveries=published.deliveries,
                duplicate=True,
            )
        return published

    async def publish_batch(
        self,
        events: Sequence[EventIn | Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> PublishedBatch:
        """`POST /v1/events/batch`: 1 to 1000 events, all stored or none. The request
        is keyed (`idempotency_key`, else one made here), which keys each event that has
        no key of its own, so a retried batch creates nothing twice. Inside a
        `Consumer` handler each event's cause defaults as in `publish`."""
        call = Call(
            "POST",
            "/v1/events/batch",
            json={"events": stamped(events)},
            headers={"Idempotency-Key": idempotency_key or new_idempotency_key()},
            replayable=True,
        )
        return await self._call(call, PublishedBatch)

    async def list_events(
        self,
        *,
        topic: str | None = None,
        key: str | None = None,
        correlation_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Event]:
        """`GET /v1/events`: one page, newest first; `topic` may end in `*`, `key=""`
        asks for the events without a key."""
        params = query(
            topic=topic, key=key, correlation_id=correlation_id, limit=limit, cursor=cursor
        )
        return await self._call(Call("GET", "/v1/events", params, replayable=True), Page[Event])

    def iter_events(
        self,
        *,
        topic: str | None = None,
        key: str | None = None,
        correlation_id: str | None = None,
        page_size: int = PAGE_MOST,
    ) -> AsyncIterator[Event]:
        """Every event of `list_events`, page after page, newest first."""
        fetch = partial(
            self.list_events,
            topic=topic,
            key=key,
            correlation_id=correlation_id,
            limit=page_size,
        )
        return self._every(fetch)

    async def get_event(self, event_id: str) -> Event:
        """`GET /v1/events/{id}`: with its payload and its deliveries."""
        path = f"/v1/events/{segment(event_id)}"
        return await self._call(Call("GET", path, replayable=True), Event)

    async def get_chain(self, event_id: str, *, limit: int | None = None) -> Chain:
        """`GET /v1/events/{id}/chain`: the causation tree of its correlation."""
        path = f"/v1/events/{segment(event_id)}/chain"
        return await self._call(Call("GET", path, query(limit=limit), replayable=True), Chain)

    # Deliveries and dead letters

    async def list_deliveries(
        self,
        *,
        destination_id: str | None = None,
        event_id: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Delivery]:
        """`GET /v1/deliveries`: one page, newest first (`state="dead"`: the dead
        letters); `destination_id` takes an id or a name."""
        params = query(
            destination_id=destination_id,
            event_id=event_id,
            state=state,
            limit=limit,
            cursor=cursor,
        )
        return await self._call(
            Call("GET", "/v1/deliveries", params, replayable=True), Page[Delivery]
        )

    def iter_deliveries(
        self,
        *,
        destination_id: str | None = None,
        event_id: str | None = None,
        state: str | None = None,
        page_size: int = PAGE_MOST,
    ) -> AsyncIterator[Delivery]:
        """Every delivery of `list_deliveries`, page after page."""
        fetch = partial(
            self.list_deliveries,
            destination_id=destination_id,
            event_id=event_id,
            state=state,
            limit=page_size,
        )
        return self._every(fetch)

    async def get_delivery(self, delivery_id: str) -> Delivery:
        """`GET /v1/deliveries/{id}`: with its `attempts`."""
        path = f"/v1/deliveries/{segment(delivery_id)}"
        return await self._call(Call("GET", path, replayable=True), Delivery)

    async def retry_delivery(self, delivery_id: str) -> Delivery:
        """`POST /v1/deliveries/{id}/retry`: a fresh run of attempts, now (409
        `conflict` if it is pending or in flight)."""
        path = f"/v1/deliveries/{segment(delivery_id)}/retry"
        return await self._call(Call("POST", path), Delivery)

    async def retry_deliveries(self, ids: Sequence[str]) -> RetriedMany:
        """`POST /v1/deliveries/retry`: up to 1000 at once."""
        call = Call("POST", "/v1/deliveries/retry", json={"ids": list(ids)}, replayable=True)
        return await self._call(call, RetriedMany)

    async def purge_delivery(self, delivery_id: str) -> None:
        """`DELETE /v1/deliveries/{id}`: drop a dead delivery (409 if it is not dead)."""
        await self._send(Call("DELETE", f"/v1/deliveries/{segment(delivery_id)}"))

    # Uploads

    async def upload(
        self,
        data: bytes | AsyncIterable[bytes],
        *,
        name: str | None = None,
        message: str | None = None,
        format: str | None = None,
        content_length: int | None = None,
        timeout_s: float | None = None,
    ) -> Upload:
        """`POST /v1/uploads`: a CSV or JSON-lines file as the raw body (bytes, or
        chunks streamed as they come: give `content_length` so it is not chunked). A
        streamed body is sent once, never retried; `timeout_s` replaces the client's
        timeout for this call (a large file)."""
        headers = {"Content-Type": "application/octet-stream"}
        if content_length is not None:
            headers["Content-Length"] = str(content_length)
        call = Call(
            "POST",
            "/v1/uploads",
            query(name=name, message=message, format=format),
            content=data,
            headers=headers,
            replayable=isinstance(data, bytes),  # rows already read count as duplicates
            retry=isinstance(data, bytes),
            timeout_s=timeout_s,
        )
        return await self._call(call, Upload)

    async def get_upload(self, upload_id: str) -> Upload:
        """`GET /v1/uploads/{id}`: its progress and report."""
        path = f"/v1/uploads/{segment(upload_id)}"
        return await self._call(Call("GET", path, replayable=True), Upload)

    # Users, inboxes, presence

    async def inbox(
        self, user_id: str, *, after: int | None = None, limit: int | None = None
    ) -> Inbox:
        """`GET /v1/users/{user_id}/inbox`: messages after offset `after`, oldest first."""
        path = f"/v1/users/{segment(user_id)}/inbox"
        params = query(after=after, limit=limit)
        return await self._call(Call("GET", path, params, replayable=True), Inbox)

    async def ack_inbox(self, user_id: str, up_to: int) -> Acked:
        """`POST /v1/users/{user_id}/inbox/ack`: the user has the messages up to `up_to`."""
        path = f"/v1/users/{segment(user_id)}/inbox/ack"
        return await self._call(Call("POST", path, json={"up_to": up_to}, replayable=True), Acked)

    async def create_token(self, user_id: str, *, ttl_s: int | None = None) -> Token:
        """`POST /v1/users/{user_id}/token`: a token for the user's WebSocket."""
        path = f"/v1/users/{segment(user_id)}/token"
        spec = fields({"ttl_s": ttl_s})
        return await self._call(Call("POST", path, json=spec, replayable=True), Token)

    async def presence(self, user_id: str) -> Presence:
        """`GET /v1/presence`: the user's open sockets on every node."""
        params = query(user_id=user_id)
        return await self._call(Call("GET", "/v1/presence", params, replayable=True), Presence)

    # Pull groups

    async def lease(
        self,
        group: str,
        *,
        max: int = 10,
        lease_ms: int | None = None,
        wait_ms: int | None = None,
    ) -> Leased:
        """`POST /v1/groups/{name}/lease`: up to `max` deliveries held for this consumer,
        waiting up to `wait_ms` (0 to 30000) for some when none is ready."""
        path = f"/v1/groups/{segment(group)}/lease"
        spec = fields({"max": max, "lease_ms": lease_ms, "wait_ms": wait_ms})
        # The long poll's own timeout; not max(): `max` is the API's field here.
        long_poll_s = (wait_ms or 0) / 1000 + LONG_POLL_MARGIN_S
        call = Call(
            "POST",
            path,
            json=spec,
            timeout_s=long_poll_s if long_poll_s > self.timeout else self.timeout,
        )
        return await self._call(call, Leased)

    async def ack(self, group: str, ids: Sequence[str]) -> Settled:
        """`POST /v1/groups/{name}/ack`: these leases (`Lease.lease_id`) are done."""
        path = f"/v1/groups/{segment(group)}/ack"
        call = Call("POST", path, json={"ids": list(ids)}, replayable=True)
        return await self._call(call, Settled)

    async def nack(
        self,
        group: str,
        ids: Sequence[str],
        *,
        delay_ms: int | None = None,
        error: str | None = None,
    ) -> Settled:
        """`POST /v1/groups/{name}/nack`: these leases' attempts failed; retried on the
        group's backoff (or after `delay_ms`); `error` is recorded as the attempt's error."""
        path = f"/v1/groups/{segment(group)}/nack"
        spec = fields({"ids": list(ids), "delay_ms": delay_ms, "error": error})
        return await self._call(Call("POST", path, json=spec, replayable=True), Settled)

    async def extend(self, group: str, ids: Sequence[str], *, lease_ms: int) -> Settled:
        """`POST /v1/groups/{name}/extend`: hold these leases `lease_ms` longer from now."""
        path = f"/v1/groups/{segment(group)}/extend"
        spec = {"ids": list(ids), "lease_ms": lease_ms}
        return await self._call(Call("POST", path, json=spec, replayable=True), Settled)
