"""The receiving end of the e2e delivery tests, and the small helpers those tests share.

`Receiver` is a real aiohttp server on 127.0.0.1 (a random port) running in the test's
event loop. Each path has a `Behaviour` (answer 200, fail a deterministic share of
attempts, fail the first K attempts of each event, always fail, stall, 429 with
`Retry-After`, 410, fail chosen payloads), which a test may change at any time. Every
request is recorded as a `Hit`: path, arrival time (`time.monotonic`, the same clock the
tests use for publish times), `webhook-id`, `tidings-attempt`, the raw body and its
parsed `data`, the status answered, the client's port, and whether its signature
verified (with `standardwebhooks`) against the secrets the test registered for the path.
Per (path, lane key) it tracks requests in flight and the most ever seen at once.

`TidingsApi` is a thin client of the management API; `eventually` is the one bounded
wait every test uses: a condition polled until a deadline, failing with a clear message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.e2e.procs import API_KEY
from tidings import AsyncClient, Retries, TidingsError

Predicate = Callable[[Any], bool]


# ---------------------------------------------------------------------------- behaviour
@dataclass(frozen=True)
class Behaviour:
    """How one path answers. An attempt fails when any failure rule picks it."""

    status: int = 200  # the answer when no failure rule picks the attempt
    fail_status: int = 500
    fail_first: int = 0  # fail the first K requests of each webhook-id on this path
    fail_one_in: int = 0  # fail when sha256("id:attempt") % n == 0 ...
    fail_below_attempt: int = 1_000  # ... but only for tidings-attempt below this
    fail_when: Predicate | None = None  # fail when the event's data matches
    fail_headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (every request)
    body: str = "ok"

    def fails(self, webhook_id: str, attempt: int, seen_before: int, data: Any) -> bool:
        if self.status >= 300:
            return True
        if seen_before < self.fail_first:
            return True
        if self.fail_one_in and attempt < self.fail_below_attempt:
            digest = hashlib.sha256(f"{webhook_id}:{attempt}".encode()).digest()
            if int.from_bytes(digest[:8], "big") % self.fail_one_in == 0:
                return True
        return self.fail_when is not None and bool(self.fail_when(data))


def ok(delay_s: float = 0.0) -> Behaviour:
    return Behaviour(delay_s=delay_s)


def always(status: int, body: str = "") -> Behaviour:
    return Behaviour(status=status, fail_status=status, body=body or f"always {status}")


def flaky(one_in: int = 3, below_attempt: int = 6) -> Behaviour:
    """Fail about 1/`one_in` of attempts, deterministically per (webhook-id, attempt);
    attempts numbered `below_attempt` or later always succeed (no chance of a dead one)."""
    return Behaviour(fail_one_in=one_in, fail_below_attempt=below_attempt)


def fail_first(k: int, status: int = 500, headers: Mapping[str, str] | None = None) -> Behaviour:
    return Behaviour(fail_first=k, fail_status=status, fail_headers=dict(headers or {}))


def slow(seconds: float) -> Behaviour:
    return Behaviour(delay_s=seconds)


def gone() -> Behaviour:
    return always(410, "gone")


def poison(predicate: Predicate, status: int = 500) -> Behaviour:
    return Behaviour(fail_when=predicate, fail_status=status)


# ---------------------------------------------------------------------------- records
@dataclass
class Hit:
    path: str
    at: float  # time.monotonic() on arrival
    webhook_id: str
    attempt: int  # tidings-attempt (0 when missing)
    headers: dict[str, str]
    raw: bytes
    body: Any  # the parsed envelope, or None if it was not JSON
    peer_port: int | None
    verified: bool | None = None  # None: no secret registered for the path
    verify_error: str | None = None
    status: int | None = None  # None until answered (stays None if cancelled)
    done_at: float | None = None

    @property
    def data(self) -> Any:
        return self.body.get("data") if isinstance(self.body, dict) else None

    @property
    def lane(self) -> str:
        data = self.data
        return str(data.get("key", "")) if isinstance(data, dict) else ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Receiver:
    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.secrets: dict[str, list[str]] = {}
        self.hits: list[Hit] = []
        self.in_flight: dict[tuple[str, str], int] = {}
        self.max_in_flight: dict[tuple[str, str], int] = {}
        self.path_in_flight: dict[str, int] = {}
        self.max_path_in_flight: dict[str, int] = {}
        self._seen: dict[tuple[str, str], int] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -------------------------------------------------------------- set-up
    async def start(self) -> Receiver:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/{path:.*}", self._handle)
        # handler_cancellation: a request whose client gave up (a timeout, a killed
        # process) stops at once instead of finishing its sleep.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def set(self, path: str, behaviour: Behaviour, secret: str | None = None) -> None:
        self.behaviours[path] = behaviour
        if secret is not None:
            self.secrets[path] = [secret]

    def set_secrets(self, path: str, *secrets: str) -> None:
        """Every request to `path` must verify against each of these secrets."""
        self.secrets[path] = list(secrets)

    # -------------------------------------------------------------- the handler
    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        webhook_id = headers.get("webhook-id", "")
        try:
            attempt = int(headers.get("tidings-attempt", "0"))
        except ValueError:
            attempt = -1
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        peer = request.transport.get_extra_info("peername") if request.transport else None
        hit = Hit(
            path=path,
            at=time.monotonic(),
            webhook_id=webhook_id,
            attempt=attempt,
            headers=headers,
            raw=raw,
            body=body,
            peer_port=peer[1] if peer else None,
        )
        self._verify(hit)
        self.hits.append(hit)
        seen_key = (path, webhook_id)
        seen_before = self._seen.get(seen_key, 0)
        self._seen[seen_key] = seen_before + 1
        behaviour = self.behaviours.get(path, Behaviour(status=404, fail_status=404))
        lane = (path, hit.lane)
        self.in_flight[lane] = self.in_flight.get(lane, 0) + 1
        self.max_in_flight[lane] = max(self.max_in_flight.get(lane, 0), self.in_flight[lane])
        self.path_in_flight[path] = self.path_in_flight.get(path, 0) + 1
        self.max_path_in_flight[path] = max(
            self.max_path_in_flight.get(path, 0), self.path_in_flight[path]
        )
        try:
            if behaviour.delay_s:
                await asyncio.sleep(behaviour.delay_s)
            if behaviour.fails(webhook_id, attempt, seen_before, hit.data):
                status, extra = behaviour.fail_status, dict(behaviour.fail_headers)
            else:
                status, extra = behaviour.status, {}
            hit.status = status
            hit.done_at = time.monotonic()
            return web.Response(status=status, text=behaviour.body, headers=extra)
        finally:
            self.in_flight[lane] -= 1
            self.path_in_flight[path] -= 1

    def _verify(self, hit: Hit) -> None:
        secrets = self.secrets.get(hit.path)
        if not secrets:
            return
        hit.verified = True
        for secret in secrets:
            try:
                Webhook(secret).verify(hit.raw, hit.headers, json_parse=False)
            except WebhookVerificationError as exc:
                hit.verified = False
                hit.verify_error = f"{exc} (secret {secret[:12]}…)"
                return

    # -------------------------------------------------------------- queries
    def on(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    def successes(self, path: str) -> list[Hit]:
        """The first 2xx of each webhook-id on `path`, in arrival order."""
        seen: set[str] = set()
        out = []
        for h in sorted(self.on(path), key=lambda h: h.at):
            if h.ok and h.webhook_id not in seen:
                seen.add(h.webhook_id)
                out.append(h)
        return out

    def delivered_ids(self, path: str) -> set[str]:
        return {h.webhook_id for h in self.on(path) if h.ok}

    def verification_failures(self) -> list[str]:
        return [
            f"{h.path} {h.webhook_id} attempt {h.attempt}: {h.verify_error}"
            for h in self.hits
            if h.verified is False
        ]

    def max_path_concurrency(self, path: str) -> int:
        """The most requests to `path` this receiver ever had under way at once."""
        return self.max_path_in_flight.get(path, 0)

    def max_lane_concurrency(self, path: str) -> dict[str, int]:
        return {lane: n for (p, lane), n in self.max_in_flight.items() if p == path}


def order_violations(hits: list[Hit]) -> list[str]:
    """Lanes whose first successes are not in increasing `n` order (payload carries n)."""
    by_lane: dict[str, list[int]] = {}
    for h in hits:
        by_lane.setdefault(h.lane, []).append(int(h.data["n"]))
    return [
        f"lane {lane!r}: {ns[:40]}{'…' if len(ns) > 40 else ''}"
        for lane, ns in sorted(by_lane.items())
        if ns != sorted(ns)
    ]


def overtakes(hits: list[Hit]) -> list[str]:
    """Requests (any attempt) for event n of a lane that arrived before event n-1 of that
    lane had its first success: in a fifo lane the head blocks the rest while it retries.
    Assumes every event of the lane succeeded in the end."""
    first_ok: dict[tuple[str, int], float] = {}
    for h in hits:
        if h.ok:
            key = (h.lane, int(h.data["n"]))
            first_ok[key] = min(first_ok.get(key, h.at), h.at)
    out = []
    for h in hits:
        n = int(h.data["n"])
        if n == 0:
            continue
        before = first_ok.get((h.lane, n - 1))
        if before is None or h.at < before:
            out.append(f"lane {h.lane!r} n={n} attempt {h.attempt} came before n={n - 1} succeeded")
    return out


# ---------------------------------------------------------------------------- waiting
async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    within: float,
    message: str | Callable[[], str],
    interval: float = 0.05,
) -> float:
    """Poll `condition` until true; answer the seconds it took. Fails after `within` s."""
    started = time.monotonic()
    deadline = started + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {within:g} s: {text}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------------- the API
class TidingsApi:
    """A Tidings process through the SDK (`sdk`, a `tidings.AsyncClient`): helpers that
    answer the API's JSON (dicts, as the tests compare them), and `call` for raw
    protocol (status codes, byte-exact bodies). The SDK does not retry here: a test that
    kills a server sees the failed request as it happened (a `TidingsError`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sdk = AsyncClient(url, api_key=API_KEY, timeout=15, retries=Retries(max_retries=0))
        self.session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=aiohttp.ClientTimeout(total=15),
        )

    async def close(self) -> None:
        await self.sdk.aclose()
        await self.session.close()

    async def call(
        self, method: str, path: str, body: Any = None, data: bytes | None = None
    ) -> tuple[int, Any]:
        """A raw request: `body` goes out as JSON; `data` as raw bytes (for byte-exact
        payloads); answers (status, parsed body)."""
        kwargs: dict[str, Any] = {}
        if data is not None:
            kwargs["data"] = data
            kwargs["headers"] = {"content-type": "application/json"}
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.url + path, **kwargs) as r:
            text = await r.text()
            try:
                return r.status, (json.loads(text) if text else None)
            except ValueError:
                return r.status, text

    async def create_destination(self, **spec: Any) -> dict[str, Any]:
        spec = {"kind": "webhook", **spec}
        kind, topics = spec.pop("kind"), spec.pop("topics")
        return _json(await self.sdk.create_destination(kind, topics, extra=spec))

    async def publish(self, topic: str, key: str, payload: Any) -> dict[str, Any]:
        return _json(await self.sdk.publish(topic, payload, key=key))

    async def publish_batch(self, events: list[dict[str, Any]]) -> list[str]:
        return (await self.sdk.publish_batch(events)).ids

    async def destination(self, destination_id: str) -> dict[str, Any]:
        return _json(await self.sdk.get_destination(destination_id))

    async def delivery(self, delivery_id: str) -> dict[str, Any]:
        return _json(await self.sdk.get_delivery(delivery_id))

    async def deliveries(
        self, destination_id: str, state: str | None = None
    ) -> list[dict[str, Any]]:
        """Every delivery of a destination (all pages), optionally of one state."""
        found = self.sdk.iter_deliveries(destination_id=destination_id, state=state)
        return [_json(d) async for d in found]

    async def states(self, destination_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in await self.deliveries(destination_id):
            counts[d["state"]] = counts.get(d["state"], 0) + 1
        return counts


def _json(struct: Any) -> dict[str, Any]:
    """A Struct the SDK answered, as the API's JSON."""
    return dict(msgspec.to_builtins(struct))


# ---------------------------------------------------------------------------- publishing
@dataclass(frozen=True)
class Published:
    event_id: str
    key: str
    n: int  # the event's place in its key's sequence (also in the payload)
    sent_at: float  # time.monotonic() before the POST
    acked_at: float  # time.monotonic() when the 202 arrived


async def publish_lanes(
    api: TidingsApi,
    topic: str,
    keys: list[str],
    per_key: int,
    *,
    tolerate_errors: bool = False,
) -> dict[str, Published]:
    """One publisher per key, all at once; each awaits its 202 before the next event, so
    a key's publish order is its `n` order. Payloads are `{"key", "n"}`. With
    `tolerate_errors`, a publisher stops quietly at its first failed request (the server
    died): that event is unacknowledged and the answer lists only acknowledged ones."""
    out: dict[str, Published] = {}

    async def lane(key: str) -> None:
        for n in range(per_key):
            sent = time.monotonic()
            try:
                ack = await api.publish(topic, key, {"key": key, "n": n})
            except (TidingsError, aiohttp.ClientError, TimeoutError):
                if tolerate_errors:
                    return
                raise
            out[ack["id"]] = Published(ack["id"], key, n, sent, time.monotonic())

    await asyncio.gather(*(lane(k) for k in keys))
    return out
