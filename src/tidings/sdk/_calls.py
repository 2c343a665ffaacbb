"""What the sync and async clients share: how a call is described, when a failed
attempt is tried again and after how long, and how answers decode.

Owns the retry rules (see `Retries`) and request building; the clients only run the
I/O. Must never do I/O itself (sleeping included): delays are returned, not slept.
"""

from __future__ import annotations

import email.utils
import os
import random
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx2
import msgspec

from tidings.sdk._errors import TidingsError, error_of

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 30.0
PAGE_MOST = 1000  # the API's largest page: what the iterators ask for
LONG_POLL_MARGIN_S = 10.0  # a lease's wait_ms plus this, so the long poll is never cut

# A list call with every argument but `cursor` bound (functools.partial), as the clients'
# iter_* methods hand it to their `_every`; the sync client's is the blocking shape.
AsyncFetch = Callable[..., Awaitable[T]]
Fetch = Callable[..., T]

_encode = msgspec.json.Encoder().encode
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def decode(response: httpx2.Response, into: type[T], base_url: str) -> T:
    """The answer as `into`. An answer that is not JSON raises `not_json`, JSON without
    the fields of the API `unexpected_answer` (a server that is not Tidings, or another
    version)."""
    decoder = _decoders.get(into)
    if decoder is None:
        # float_hook: a payload's floats as Python's json reads them, so that one the
        # server keeps but a double cannot hold (1e400) reads as inf, not as an error.
        decoder = _decoders[into] = msgspec.json.Decoder(into, float_hook=float)
    try:
        return decoder.decode(response.content)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        code, message = (
            "unexpected_answer",
            f"unexpected answer from {base_url} ({exc})",
        )
    except msgspec.DecodeError:
        code, message = "not_json", f"the answer of {response.request.url} is not JSON"
    raise TidingsError(code, message, status=response.status_code)


def segment(ref: str) -> str:
    """An id or a name as one path segment."""
    return urllib.parse.quote(ref, safe="")


def new_idempotency_key() -> str:
    """A key no other publish uses: what a retried publish repeats so it never duplicates."""
    return f"sdk_{uuid.uuid4().hex}"


def fields(given: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A JSON body of the fields given (None: not sent), then `extra` as it is (where a
    None is sent as null)."""
    body = {name: value for name, value in given.items() if value is not None}
    body.update(extra or {})
    return body


def query(**params: Any) -> dict[str, str]:
    return {name: str(value) for name, value in params.items() if value is not None}


@dataclass(frozen=True)
class Call:
    """One API call as the clients send it. `replayable`: sending it twice does what
    sending it once does (a GET, an idempotent change, a keyed publish), so an attempt
    whose answer was lost may be sent again; `retry`: 503/429 and connection failures
    are tried again at all (not for a readiness probe, nor a streamed body)."""

    method: str
    path: str
    params: dict[str, str] | None = None
    json: Any = None
    content: Any = None  # raw bytes or a stream (uploads)
    headers: dict[str, str] = field(default_factory=dict)
    replayable: bool = False
    retry: bool = True
    timeout_s: float | None = None

    def request_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"params": self.params, "headers": self.headers}
        if self.json is not None:
            args["content"] = _encode(self.json)
            args["headers"] = {"Content-Type": "application/json", **self.headers}
        elif self.content is not None:
            args["content"] = self.content
        if self.timeout_s is not None:
            args["timeout"] = self.timeout_s
        return args


# Failures where the request never reached the server: safe to send again, whatever it is.
_NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)


@dataclass(frozen=True)
class Retries:
    """When to send a failed call again: a 503 or 429 (after its `Retry-After`, at most
    `max_retry_after_s`, else the backoff), a connection that could not be made, and,
    for a replayable call, one that broke before the answer came. At most `max_retries`
    times; the backoff is full jitter, uniform in [0, min(max_backoff_s,
    backoff_s * 2**n)] before retry n+1 (n from 0)."""

    max_retries: int = 3
    backoff_s: float = 0.25
    max_backoff_s: float = 5.0
    max_retry_after_s: float = 30.0

    def backoff(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.max_backoff_s, self.backoff_s * 2**attempt))

    def after_failure(self, call: Call, attempt: int, exc: httpx2.TransportError) -> float | None:
        """The delay before sending again after `exc` on attempt `attempt` (0: the
        first), or None: give up."""
        if not call.retry or attempt >= self.max_retries:
            return None
        if isinstance(exc, _NOT_SENT) or call.replayable:
            return self.backoff(attempt)
        return None

    def after_status(
        self, call: Call, attempt: int, status: int, retry_after: str | None
    ) -> float | None:
        if not call.retry or attempt >= self.max_retries or status not in (429, 503):
            return None
        wait = parse_retry_after(retry_after)
        if wait is None:
            return self.backoff(attempt)
        return min(wait, self.max_retry_after_s)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delay-seconds or an HTTP date (RFC 9110
    §10.2.3); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def transport_error(base_url: str, timeout_s: float, exc: httpx2.TransportError) -> TidingsError:
    """The error of a call that got no answer at all: `timeout`, or `connection_error`
    naming the system's reason (`connection refused`) when there is one."""
    if isinstance(exc, httpx2.TimeoutException):
        return TidingsError(
            "timeout", f"no answer from Tidings at {base_url} within {timeout_s:g} s"
        )
    return TidingsError("connection_error", f"cannot reach Tidings at {base_url} ({_reason(exc)})")


def _reason(exc: BaseException) -> str:
    """The OS's words for a failure (`connection refused`), found down the chain of
    causes httpx2 wraps around it, else the exception's own text."""
    seen: BaseException | None = exc
    for _ in range(10):  # a chain of causes is short; never loop on a cycle
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def check(response: httpx2.Response) -> httpx2.Response:
    if response.is_success:
        return response
    raise error_of(response.status_code, response.content)


def settings(
    base_url: str | None, api_key: str | None, headers: Mapping[str, str] | None
) -> tuple[str, dict[str, str]]:
    """The base URL (default TIDINGS_URL, else http://127.0.0.1:8080) and the headers of
    every call (the key defaults to TIDINGS_API_KEY)."""
    url = (base_url or os.environ.get("TIDINGS_URL") or DEFAULT_URL).rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url {url!r} is not an http(s) URL like {DEFAULT_URL}")
    key = api_key if api_key is not None else os.environ.get("TIDINGS_API_KEY")
    all_headers = {"Accept": "application/json", "User-Agent": "tidings-python"}
    if key:
        all_headers["Authorization"] = f"Bearer {key}"
    all_headers.update(headers or {})
    return url, all_headers
