"""The webhook transport against real aiohttp receivers on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from email.utils import formatdate

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tidings import __version__
from tidings.model import MAX_RESPONSE_BODY, AttemptResult
from tidings.signing import new_secret
from tidings.timeutil import now_us, to_iso
from tidings.transports.webhook import WebhookRequest, WebhookTransport, webhook_body

from .conftest import Receiver

RECEIVED_AT = 1_700_000_000_123_456
PAYLOAD = b'{"a":  1, "nested": {"b" : [1,2 ,3]},"s":"\\u00e9"}'
SECRET = new_secret()


def request(url: str, **overrides: object) -> WebhookRequest:
    fields: dict[str, object] = {
        "url": url,
        "event_id": "evt_01HXYZ",
        "topic": "orders.created",
        "received_at": RECEIVED_AT,
        "payload": PAYLOAD,
        "secrets": (SECRET,),
        "attempt": 1,
        "timeout_s": 5.0,
    }
    fields.update(overrides)
    return WebhookRequest(**fields)  # type: ignore[arg-type]


async def deliver(t: WebhookTransport, req: WebhookRequest, bound: float = 15.0) -> AttemptResult:
    return await asyncio.wait_for(t.deliver(req), bound)


# -- the body ---------------------------------------------------------------------------


def test_webhook_body_exact_bytes() -> None:
    body = webhook_body("orders.created", RECEIVED_AT, b'{"a":  1}')
    assert body == (
        b'{"type":"orders.created","timestamp":"2023-11-14T22:13:20.123456Z","data":{"a":  1}}'
    )


@pytest.mark.parametrize("topic", ['we"ird\\topic', "caf\u00e9.\u00fcber", "a\nb"])
def test_webhook_body_escapes_topic(topic: str) -> None:
    body = webhook_body(topic, RECEIVED_AT, b"[]")
    assert json.loads(body) == {"type": topic, "timestamp": to_iso(RECEIVED_AT), "data": []}


async def test_body_arrives_with_payload_spliced_verbatim(
    transport: WebhookTransport, receiver: Receiver
) -> None:
    result = await deliver(transport, request(receiver.url("/ok")))
    assert result.outcome == "delivered"
    (seen,) = receiver.seen
    assert seen.body == webhook_body("orders.created", RECEIVED_AT, PAYLOAD)
    assert seen.body.endswith(b',"data":' + PAYLOAD + b"}")
    assert json.loads(seen.body) == {
        "type": "orders.created",
        "timestamp": "2023-11-14T22:13:20.123456Z",
        "data": json.loads(PAYLOAD),
    }


async def test_a_data_body_is_the_payload_alone_and_signed(
    transport: WebhookTransport, receiver: Receiver
) -> None:
    result = await deliver(transport, request(receiver.url("/ok"), envelope=False))
    assert result.outcome == "delivered"
    (seen,) = receiver.seen
    assert seen.body == PAYLOAD
    headers = {k.lower(): v for k, v in seen.headers.items()}
    verified = Webhook(SECRET).verify(seen.body, headers)
    assert verified == json.loads(PAYLOAD)


async def test_headers(transport: WebhookTransport, receiver: Receiver) -> None:
    before = int(time.time())
    result = await deliver(transport, request(receiver.url("/ok"), attempt=3))
    after = int(time.time())
    assert result.outcome == "delivered"
    headers = {k.lower(): v for k, v in receiver.seen[0].headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "evt_01HXYZ"
    assert before <= int(headers["webhook-timestamp"]) <= after
    assert headers["webhook-signature"].startswith("v1,")
    assert " " not in headers["webhook-signature"]
    assert headers["tidings-attempt"] == "3"
    assert headers["user-agent"] == f"Tidings/{__version__}"
    assert "cookie" not in headers


async def test_custom_user_agent(receiver: Receiver) -> None:
    t = WebhookTransport(allow_private=True, user_agent="Acme/2")
    await t.start()
    try:
        await deliver(t, request(receiver.url("/ok")))
    finally:
        await t.close()
    assert receiver.seen[0].headers["User-Agent"] == "Acme/2"


async def test_same_webhook_id_on_every_attempt(
    transport: WebhookTransport, receiver: Receiver
) -> None:
    for attempt in (1, 2, 3):
        await deliver(transport, request(receiver.url("/ok"), attempt=attempt))
    assert [s.headers["webhook-id"] for s in receiver.seen] == ["evt_01HXYZ"] * 3
    assert [s.headers["tidings-attempt"] for s in receiver.seen] == ["1", "2", "3"]


# -- signatures -------------------------------------------------------------------------


async def test_signature_verifies_with_standardwebhooks(
    transport: WebhookTransport, receiver: Receiver
) -> None:
    await deliver(transport, request(receiver.url("/ok")))
    seen = receiver.seen[0]
    assert Webhook(SECRET).verify(seen.body, seen.headers) == json.loads(seen.body)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(seen.body, seen.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(seen.body.replace(b"  1", b" 1"), seen.headers)


async def test_rotation_either_secret_verifies(
    transport: WebhookTransport, receiver: Receiver
) -> None:
    current, previous = new_secret(), new_secret()
    await deliver(transport, request(receiver.url("/ok"), secrets=(current, previous)))
    seen = receiver.seen[0]
    assert len(seen.headers["webhook-signature"].split(" ")) == 2
    Webhook(current).verify(seen.body, seen.headers)
    Webhook(previous).verify(seen.body, seen.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(seen.body, seen.headers)


# -- outcomes ---------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "status", "body"), [("/ok", 200, "ok"), ("/empty", 204, None)])
async def test_2xx_delivered(
    transport: WebhookTransport, receiver: Receiver, path: str, status: int, body: str | None
) -> None:
    start = now_us()
    result = await deliver(transport, request(receiver.url(path)))
    assert result.outcome == "delivered"
    assert result.status_code == status
    assert result.response_body == body
    assert result.error is None
    assert result.retry_after_ms is None
    assert start <= result.at <= now_us()
    assert 0 < result.latency_ms < 5000


@pytest.mark.parametrize("status", [201, 202, 299])
async def test_other_2xx_delivered(
    transport: WebhookTransport, receiver: Receiver, status: int
) -> None:
    result = await deliver(transport, request(receiver.url(f"/status/{status}")))
    assert (result.outcome, result.status_code) == ("delivered", status)


async def test_echo_body_captured(transport: WebhookTransport, receiver: Receiver) -> None:
    result = await deliver(transport, request(receiver.url("/echo")))
    assert result.outcome == "delivered"
    assert result.response_body == receiver.seen[0].body.decode()


async def test_500_http_error_with_truncated_body(
    transport: WebhookTransport, receiver: Receiver
) -> None:
    result = await deliver(transport, request(receiver.url("/status/500?size=10240")))
    assert result.outcome == "http_error"
    assert result.status_code == 500
    assert result.error == "HTTP 500"
    assert result.response_body == "x" * MAX_RESPONSE_BODY
    assert result.retry_after_ms is None


async def test_truncation_mid_character_is_replaced(
    transport: WebhookTransport, receiver: Receiver
) -> None:
    # 2048 bytes of 3-byte characters end two bytes into the 683rd.
    result = await deliver(transport, request(receiver.url("/status/400?size=5000&char=€")))
    assert result.status_code == 400
    assert result.response_body == "€" * 682 + "\ufffd"


async def test_reads_only_a_prefix_of_a_huge_body(
    transport: WebhookTransport, receiver: Receiver
) -> None:
    started = time.monotonic()
    result = await deliver(transport, request(receiver.url("/stream")))
    assert result.outcome == "delivered"
    assert result.response_body == "y" * MAX_RESPONSE_BODY
    assert time.monotonic() - started < 3.0  # 640 MB were on offer


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds(
    transport: WebhookTransport, receiver: Receiver, status: int
) -> None:
    result = await deliver(transport, request(receiver.url(f"/status/{status}?retry_after=3")))
    assert (result.outcome, result.status_code) == ("http_error", status)
    assert result.retry_after_ms == 3000


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_http_date(
    transport: WebhookTransport, receiver: Receiver, status: int
) -> None:
    when = formatdate(time.time() + 10, usegmt=True)
    result = await deliver(transport, request(receiver.url(f"/status/{status}?retry_after={when}")))
    assert result.status_code == status
    assert result.retry_after_ms is not None
    assert 8000 <= result.retry_after_ms <= 10000


@pytest.mark.parametrize("path", ["/status/500?retry_after=3", "/status/429", "/status/503"])
async def test_retry_after_ignored_or_absent(
    transport: WebhookTransport, receiver: Receiver, path: str
) -> None:
    result = await deliver(transport, request(receiver.url(path)))
    assert result.outcome == "http_error"
    assert result.retry_after_ms is None


async def test_redirect_not_followed(transport: WebhookTransport, receiver: Receiver) -> None:
    result = await deliver(transport, request(receiver.url("/redirect")))
    assert (result.outcome, result.status_code, result.error) == ("http_error", 301, "HTTP 301")
    assert [s.path for s in receiver.seen] == ["/redirect"]


async def test_slow_receiver_times_out(transport: WebhookTransport, receiver: Receiver) -> None:
    started = time.monotonic()
    result = await deliver(transport, request(receiver.url("/slow"), timeout_s=1.0))
    elapsed = time.monotonic() - started
    assert result.outcome == "timeout"
    assert result.status_code is None
    assert result.error == "timed out after 1 s"
    assert 0.9 <= elapsed <= 1.5
    assert 900 <= result.latency_ms <= 1500


async def test_stalled_body_after_2xx_still_delivered(
    transport: WebhookTransport, receiver: Receiver
) -> None:
    # The status decides the outcome; a body that stalls keeps what arrived.
    started = time.monotonic()
    result = await deliver(transport, request(receiver.url("/trickle"), timeout_s=1.0))
    assert time.monotonic() - started <= 1.5
    assert (result.outcome, result.status_code) == ("delivered", 200)
    assert result.response_body == "partial"
    # The task was not left cancelled: the transport keeps working.
    assert (await deliver(transport, request(receiver.url("/ok")))).outcome == "delivered"


async def test_closed_port_is_connection_error(transport: WebhookTransport) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await deliver(transport, request(f"http://127.0.0.1:{port}/ok"))
    assert result.outcome == "connection_error"
    assert result.status_code is None
    assert result.error is not None and result.error.startswith("connection refused")


@pytest.mark.parametrize(
    "url", ["http://", "ftp://example.com/x", "http://exa mple.com/", "http://127.1:1/"]
)
async def test_bad_urls_never_raise(transport: WebhookTransport, url: str) -> None:
    result = await deliver(transport, request(url))
    assert result.outcome == "connection_error"
    assert result.error


async def test_unresolvable_host_is_connection_error(transport: WebhookTransport) -> None:
    result = await deliver(transport, request("http://does-not-exist.invalid/"))
    assert result.outcome == "connection_error"


async def test_connections_are_pooled(transport: WebhookTransport, receiver: Receiver) -> None:
    for _ in range(3):
        assert (await deliver(transport, request(receiver.url("/ok")))).outcome == "delivered"
    assert len({s.peer for s in receiver.seen}) == 1


async def test_concurrent_deliveries(transport: WebhookTransport, receiver: Receiver) -> None:
    reqs = [request(receiver.url("/ok"), event_id=f"evt_{i}") for i in range(50)]
    results = await asyncio.wait_for(asyncio.gather(*(transport.deliver(r) for r in reqs)), 15)
    assert {r.outcome for r in results} == {"delivered"}
    assert sorted(s.headers["webhook-id"] for s in receiver.seen) == sorted(
        r.event_id for r in reqs
    )


async def test_deliver_before_start_is_a_programming_error() -> None:
    t = WebhookTransport(allow_private=True)
    with pytest.raises(RuntimeError):
        await t.deliver(request("http://127.0.0.1:1/"))


async def test_start_and_close_are_idempotent(receiver: Receiver) -> None:
    t = WebhookTransport(allow_private=False)
    async with t:
        await t.start()
    await t.close()
    await t.close()
