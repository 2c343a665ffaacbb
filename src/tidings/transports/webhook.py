"""The webhook transport: one signed HTTP POST per attempt, over a shared connection pool.

`Webhooks` is the transport the engine knows (`transports.base.Transport`, registered as
kind `webhook`): it turns a claim into a `WebhookRequest` and hands it to a `Sender`, a
`WebhookTransport` here or a `senders.SenderPool` of sender processes; it also sends the
alerts of every kind of destination (an `alert_url` is always a webhook).
`WebhookTransport` owns the wire form of a webhook (the `{"type", "timestamp", "data"}`
envelope with the event's payload bytes spliced in verbatim, the Standard Webhooks
headers and signature) and turning what happened into an `AttemptResult` (the HTTP
status and the start of the answer as its `Answer`; a 410 as `gone`). Must never
re-encode the payload, follow redirects, read more than `MAX_RESPONSE_BODY` bytes of a
response, apply retry policy, or raise for a delivery failure (only programming errors
escape). Must never connect to a forbidden address unless built with
`allow_private=True` (or, for loopback addresses alone, `allow_loopback=True`; see
`ssrf`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from functools import lru_cache
from typing import Protocol

import aiohttp
import msgspec
from aiohttp.abc import AbstractResolver

from tidings import __version__
from tidings.model import MAX_RESPONSE_BODY, Answer, AttemptResult, Claim, Destination, WebhookSpec
from tidings.policy.addresses import Allow
from tidings.policy.backoff import parse_retry_after
from tidings.signing import signature_header
from tidings.timeutil import now_us
from tidings.transports.base import Alert
from tidings.transports.envelope import envelope as webhook_body
from tidings.transports.ssrf import GuardedResolver, TargetRefused, check_url_now

__all__ = ["Sender", "WebhookRequest", "WebhookTransport", "Webhooks", "webhook_body"]

_MAX_ERROR = 300  # characters of an exception's text kept in AttemptResult.error
_RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE = 410  # the receiver says it is gone for good: the destination is paused
GONE_REASON = "the receiver answered 410 Gone"
_encode = msgspec.json.encode


class WebhookRequest(msgspec.Struct, frozen=True, array_like=True):
    """One attempt to send (a msgspec struct: one is built per attempt, and it travels to
    a sender process inside an `Ask`)."""

    url: str
    event_id: str  # becomes webhook-id (the same on every attempt)
    topic: str
    received_at: int  # µs since epoch; rendered as ISO-8601
    payload: bytes  # the event's JSON bytes exactly as received; never re-encoded
    secrets: tuple[str, ...]  # live whsec_ secrets, current first (>1 during rotation)
    attempt: int  # tidings-attempt header, 1 for the first try
    timeout_s: float
    envelope: bool = True  # False: the body is the payload alone (a destination's "data")


class Sender(Protocol):
    """Anything that sends one attempt and reports it: a `WebhookTransport`, or a
    `senders.SenderPool` that hands attempts to sender processes."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def deliver(self, req: WebhookRequest) -> AttemptResult: ...


class Webhooks:
    """The `webhook` kind's transport: a claim becomes a `WebhookRequest` for `sender`."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    async def start(self) -> None:
        await self.sender.start()

    async def close(self) -> None:
        await self.sender.close()

    def deliver(self, claim: Claim, destination: Destination) -> Awaitable[AttemptResult]:
        # Not async: the sender's own coroutine is the attempt (no frame in between).
        spec = destination.spec
        if not isinstance(spec, WebhookSpec):  # the registry routes by kind: a bug
            raise TypeError(f"not a webhook destination: {destination.id}")
        return self.sender.deliver(
            WebhookRequest(
                url=spec.url,
                event_id=claim.event_id,
                topic=claim.topic,
                received_at=claim.received_at,
                payload=claim.payload,
                secrets=destination.live_secrets(now_us()),
                attempt=claim.attempt,
                timeout_s=spec.timeout_ms / 1000,
                envelope=spec.body == "envelope",
            )
        )

    async def send_alert(self, alert: Alert, destination: Destination) -> AttemptResult:
        url = destination.spec.alert_url
        if url is None:
            raise ValueError(f"destination {destination.id} has no alert_url")
        return await self.sender.deliver(
            WebhookRequest(
                url=url,
                event_id=alert.id,
                topic=alert.type,
                received_at=alert.at,
                payload=alert.data,
                secrets=destination.live_secrets(now_us()),
                attempt=alert.attempt,
                timeout_s=alert.timeout_s,
            )
        )


@lru_cache(maxsize=256)
def _timeout(total_s: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total_s)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"


def _refusal(exc: BaseException) -> TargetRefused | None:
    """The TargetRefused behind an aiohttp connector error, if the guard refused."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TargetRefused):
            return current
        seen.add(id(current))
        if isinstance(current, aiohttp.ClientConnectorError) and isinstance(
            current.os_error, TargetRefused
        ):
            return current.os_error
        current = current.__cause__ or current.__context__
    return None


def _connection_error_text(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return _short(f"dns lookup failed for {exc.host}: {exc.os_error}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, ConnectionRefusedError):
            return _short(f"connection refused: {exc.host}:{exc.port}")
        return _short(f"cannot connect to {exc.host}:{exc.port}: {cause or exc}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected before responding"
    if isinstance(exc, aiohttp.InvalidURL):
        return _short(f"invalid url: {exc}")
    text = str(exc)
    return _short(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


class WebhookTransport:
    """Delivers webhooks over one pooled aiohttp session for the whole process."""

    def __init__(
        self,
        *,
        allow_private: bool,
        allow_loopback: bool = False,
        max_connections: int = 1024,
        user_agent: str = f"Tidings/{__version__}",
        resolver: AbstractResolver | None = None,
    ) -> None:
        """`resolver` answers the guard's DNS questions (default: aiohttp's
        ThreadedResolver, i.e. getaddrinfo); tests hand it names that rebind."""
        self.allow_private = allow_private
        self.allow_loopback = allow_loopback
        self._allow = Allow.of(private=allow_private, loopback=allow_loopback)
        self.max_connections = max_connections
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._inner_resolver = resolver
        self._resolver: AbstractResolver | None = None
        self._static_headers = {"content-type": "application/json", "user-agent": user_agent}

    async def start(self) -> None:
        if self._session is not None:
            return
        if self._allow is Allow.PRIVATE:
            self._resolver = self._inner_resolver
        else:
            self._resolver = GuardedResolver(self._inner_resolver, allow=self._allow)
        connector = aiohttp.TCPConnector(
            limit=self.max_connections,
            limit_per_host=0,
            ttl_dns_cache=10,
            resolver=self._resolver,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
            trust_env=False,  # an env proxy would bypass the guarded resolver
            raise_for_status=False,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        resolver, self._resolver = self._resolver, None
        if session is not None:
            await session.close()
        if resolver is not None:  # the connector only closes resolvers it created
            await resolver.close()

    async def __aenter__(self) -> WebhookTransport:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def deliver(self, req: WebhookRequest) -> AttemptResult:
        """POST one attempt and report what happened; never raises for a failure."""
        session = self._session
        if session is None:
            raise RuntimeError("WebhookTransport.deliver called before start()")
        at = now_us()
        started = time.perf_counter()
        if self._allow is not Allow.PRIVATE:
            refusal = check_url_now(req.url, allow=self._allow)
            if refusal is not None:
                return AttemptResult(
                    at=at, outcome="refused", latency_ms=_ms_since(started), error=refusal
                )
        body = (
            webhook_body(req.topic, req.received_at, req.payload) if req.envelope else req.payload
        )
        timestamp = int(time.time())
        headers = {
            **self._static_headers,
            "webhook-id": req.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(list(req.secrets), req.event_id, timestamp, body),
            "tidings-attempt": str(req.attempt),
        }
        try:
            async with session.post(
                req.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=_timeout(req.timeout_s),
            ) as resp:
                status = resp.status
                retry_after = (
                    resp.headers.get("Retry-After") if status in _RETRY_AFTER_STATUSES else None
                )
                text = await _read_prefix(resp)
        except TimeoutError:  # includes aiohttp.ServerTimeoutError
            return AttemptResult(
                at=at,
                outcome="timeout",
                latency_ms=_ms_since(started),
                error=f"timed out after {req.timeout_s:g} s",
            )
        except (aiohttp.ClientError, OSError) as exc:
            refused = _refusal(exc)
            if refused is not None:
                return AttemptResult(
                    at=at, outcome="refused", latency_ms=_ms_since(started), error=str(refused)
                )
            return AttemptResult(
                at=at,
                outcome="connection_error",
                latency_ms=_ms_since(started),
                error=_connection_error_text(exc),
            )
        latency_ms = _ms_since(started)
        if 200 <= status < 300:
            return AttemptResult(
                at=at, outcome="delivered", latency_ms=latency_ms, answer=Answer(status, text)
            )
        return AttemptResult(
            at=at,
            outcome="http_error",
            latency_ms=latency_ms,
            error=f"HTTP {status}",
            answer=Answer(status, text),
            retry_after_ms=(
                parse_retry_after(retry_after, time.time()) if retry_after is not None else None
            ),
            gone=GONE_REASON if status == GONE else None,
        )


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


async def _read_prefix(resp: aiohttp.ClientResponse) -> str | None:
    """At most MAX_RESPONSE_BODY bytes of the body, decoded leniently; never the rest.

    The status already decides the outcome, so a body that breaks off or stalls keeps
    whatever arrived instead of turning a delivered attempt into a failure.
    """
    chunks: list[bytes] = []
    remaining = MAX_RESPONSE_BODY
    try:
        while remaining > 0:
            chunk = await resp.content.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except (aiohttp.ClientError, OSError):  # TimeoutError is an OSError
        pass
    if not chunks:
        return None
    return b"".join(chunks).decode("utf-8", errors="replace")
