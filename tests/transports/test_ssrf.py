"""The SSRF guard: create-time `target_error`, request-time `check_url_now`, connect-time
`GuardedResolver`, and the transport refusing before anything is sent."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from tidings.transports.ssrf import GuardedResolver, TargetRefused, check_url_now, target_error
from tidings.transports.webhook import WebhookTransport

from .conftest import Receiver
from .test_webhook import deliver, request

HINT = "TIDINGS_ALLOW_PRIVATE_TARGETS=1"

# -- the transport ----------------------------------------------------------------------


async def test_ip_literal_refused_before_sending(
    guarded: WebhookTransport, receiver: Receiver
) -> None:
    result = await deliver(guarded, request(receiver.url("/ok")))
    assert result.outcome == "refused"
    assert result.status_code is None
    assert result.error is not None
    assert "127.0.0.1 (loopback)" in result.error and HINT in result.error
    assert receiver.seen == []


@pytest.mark.parametrize(
    "host", ["[::1]", "[::ffff:127.0.0.1]", "2130706433", "0x7f.1", "127.1", "0177.0.0.1"]
)
async def test_other_loopback_literals_refused(
    guarded: WebhookTransport, receiver: Receiver, host: str
) -> None:
    result = await deliver(guarded, request(receiver.url("/ok", host=host)))
    assert result.outcome == "refused", result
    assert receiver.seen == []


async def test_localhost_refused_by_the_resolver(
    guarded: WebhookTransport, receiver: Receiver
) -> None:
    url = receiver.url("/ok", host="localhost")
    assert check_url_now(url) is None  # a name: only the resolver can judge it
    result = await deliver(guarded, request(url))
    assert result.outcome == "refused", result
    assert result.error is not None
    assert "(loopback)" in result.error and HINT in result.error
    assert receiver.seen == []


async def test_refusal_is_not_cached_as_success(
    guarded: WebhookTransport, receiver: Receiver
) -> None:
    url = receiver.url("/ok", host="localhost")
    for _ in range(3):
        assert (await deliver(guarded, request(url))).outcome == "refused"
    assert receiver.seen == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_allow_private_reaches_local_receivers(
    transport: WebhookTransport, receiver: Receiver, host: str
) -> None:
    result = await deliver(transport, request(receiver.url("/ok", host=host)))
    assert result.outcome == "delivered", result
    assert len(receiver.seen) == 1


# -- check_url_now ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1/", "127.0.0.1 (loopback)"),
        ("https://10.1.2.3:8443/x", "10.1.2.3 (private)"),
        ("http://[::1]:80/", "::1 (loopback)"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 (link-local)"),
        ("http://[fe80::1%25eth0]/", "(link-local)"),
        ("http://[::ffff:10.0.0.1]/", "(private)"),
        ("http://0.0.0.0:80/", "0.0.0.0 (unspecified)"),
        ("http://2130706433/", "127.0.0.1 (loopback)"),
        ("http://127.0.0.1./", "127.0.0.1 (loopback)"),
    ],
)
def test_check_url_now_refuses(url: str, fragment: str) -> None:
    message = check_url_now(url)
    assert message is not None
    assert message.startswith("refusing to connect to ")
    assert fragment in message and HINT in message


@pytest.mark.parametrize(
    "url",
    [
        "http://8.8.8.8/",
        "https://[2606:4700:4700::1111]/",
        "http://localhost/",  # names are the resolver's job
        "https://example.com/hook",
        "not a url at all",
        "http://",
    ],
)
def test_check_url_now_passes(url: str) -> None:
    assert check_url_now(url) is None


# -- GuardedResolver --------------------------------------------------------------------


class FixedResolver(AbstractResolver):
    """Answers every name with the given addresses (a real resolver, not a mock)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def test_resolver_drops_forbidden_addresses() -> None:
    inner = FixedResolver("10.0.0.1", "93.184.216.34", "::1", "2606:4700::1", "fe80::1%eth0")
    resolver = GuardedResolver(inner)
    kept = await resolver.resolve("rebind.example", 443)
    assert [r["host"] for r in kept] == ["93.184.216.34", "2606:4700::1"]
    await resolver.close()
    assert inner.closed


@pytest.mark.parametrize(
    ("addresses", "fragment"),
    [
        (("127.0.0.1",), "refusing to connect to 127.0.0.1 (loopback)"),
        (("169.254.169.254", "10.0.0.1"), "169.254.169.254 (link-local)"),
        (("::ffff:192.168.1.1",), "(private)"),
        ((), "resolves to no addresses"),
    ],
)
async def test_resolver_refuses_when_nothing_is_left(
    addresses: tuple[str, ...], fragment: str
) -> None:
    resolver = GuardedResolver(FixedResolver(*addresses))
    with pytest.raises(TargetRefused) as info:
        await resolver.resolve("internal.example", 80)
    assert isinstance(info.value, OSError)
    assert fragment in str(info.value)
    assert HINT in str(info.value)


async def test_default_resolver_refuses_localhost() -> None:
    resolver = GuardedResolver()
    with pytest.raises(TargetRefused):
        await asyncio.wait_for(resolver.resolve("localhost", 80, socket.AF_UNSPEC), 5)
    await resolver.close()


# -- target_error (create time) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1 (loopback)"),
        ("https://10.1.2.3/hook", "10.1.2.3 (private)"),
        ("http://[::1]/hook", "::1 (loopback)"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 (link-local)"),
        ("http://localhost:9000/hook", "url host localhost resolves to 127.0.0.1 (loopback)"),
        ("http://LocalHost./hook", "(loopback)"),
        ("http://foo.localhost/hook", "url host foo.localhost resolves to"),
        ("http://2130706433/", "127.0.0.1 (loopback)"),
        ("http://100.64.1.1/", "(private)"),
    ],
)
async def test_target_error_refuses(url: str, fragment: str) -> None:
    message = await asyncio.wait_for(target_error(url, allow_private=False), 5)
    assert message is not None
    assert fragment in message
    assert "which webhooks may not target" in message
    assert "set TIDINGS_ALLOW_PRIVATE_TARGETS=1 for development" in message


@pytest.mark.parametrize("url", ["http://8.8.8.8/hook", "https://[2606:4700:4700::1111]/"])
async def test_target_error_accepts_public_literals(url: str) -> None:
    assert await asyncio.wait_for(target_error(url, allow_private=False), 5) is None


async def test_target_error_accepts_unresolvable_names() -> None:
    started = time.monotonic()
    result = await asyncio.wait_for(
        target_error("https://no-such-host.invalid/hook", allow_private=False, timeout_s=1.0), 5
    )
    assert result is None
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.1.2.3/",
        "http://[::1]/",
        "http://169.254.169.254/",
        "http://localhost/",
        "http://foo.localhost/",
        "http://8.8.8.8/",
        "http://no-such-host.invalid/",
    ],
)
async def test_target_error_allow_private_accepts_all(url: str) -> None:
    assert await asyncio.wait_for(target_error(url, allow_private=True), 5) is None
