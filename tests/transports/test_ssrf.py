"""The SSRF guard: create-time `target_error`, request-time `check_url_now`, connect-time
`GuardedResolver`, and the transport refusing before anything is sent."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from tidings.policy.addresses import Allow
from tidings.transports.ssrf import (
    GuardedResolver,
    TargetProblem,
    TargetRefused,
    check_url_now,
    target_error,
)
from tidings.transports.webhook import WebhookTransport

from .conftest import Receiver
from .test_webhook import deliver, request

HINT = "TIDINGS_ALLOW_PRIVATE_TARGETS=1"


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


@pytest.mark.parametrize("host", ["localhost", "ip6-localhost", "localhost.localdomain"])
async def test_loopback_names_refused_before_resolving(
    guarded: WebhookTransport, receiver: Receiver, host: str
) -> None:
    result = await deliver(guarded, request(receiver.url("/ok", host=host)))
    assert result.outcome == "refused", result
    assert result.error == (
        f"refusing to connect to {host}: it is a loopback name; set "
        "TIDINGS_ALLOW_LOOPBACK_TARGETS=1 (loopback only) or TIDINGS_ALLOW_PRIVATE_TARGETS=1 "
        "to allow"
    )
    assert receiver.seen == []


async def test_a_name_that_rebinds_to_loopback_is_refused_at_connect_time(
    receiver: Receiver,
) -> None:
    """The create-time check cannot see what a name resolves to later: the connect-time
    resolver does (the name resolves to the receiver's own address here)."""
    url = receiver.url("/ok", host="rebind.example")
    assert check_url_now(url) is None  # a public-looking name: only the resolver can judge it
    async with WebhookTransport(allow_private=False, resolver=FixedResolver("127.0.0.1")) as t:
        result = await deliver(t, request(url))
    assert result.outcome == "refused", result
    assert result.error is not None
    assert "refusing to connect to 127.0.0.1 (loopback)" in result.error, result.error
    assert receiver.seen == []


async def test_refusal_is_not_cached_as_success(receiver: Receiver) -> None:
    url = receiver.url("/ok", host="rebind.example")
    async with WebhookTransport(allow_private=False, resolver=FixedResolver("127.0.0.1")) as t:
        for _ in range(3):
            assert (await deliver(t, request(url))).outcome == "refused"
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
        ("http://localhost/", "localhost: it is a loopback name"),
        ("http://ip6-localhost:81/", "ip6-localhost: it is a loopback name"),
        ("http://%31%32%37.0.0.1/", "reads as 127.0.0.1 (loopback) to other URL parsers"),
        ("http://\u0661\u0662\u0667.\u0660.\u0660.\u0661/", "reads as 127.0.0.1 (loopback)"),
        ("http://l\u043ecalhost/", "reads as localhost, a loopback name,"),
        ("http://receiver:8080/", "receiver: it is a local network name"),
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
        "https://example.com/hook",  # public-looking names are the resolver's job
        "https://b\u00fccher.de/",
        "not a url at all",
        "http://",
    ],
)
def test_check_url_now_passes(url: str) -> None:
    assert check_url_now(url) is None


# -- GuardedResolver --------------------------------------------------------------------


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


# -- the transport with TIDINGS_ALLOW_LOOPBACK_TARGETS ----------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_allow_loopback_reaches_local_receivers(receiver: Receiver, host: str) -> None:
    async with WebhookTransport(allow_private=False, allow_loopback=True) as t:
        result = await deliver(t, request(receiver.url("/ok", host=host)))
    assert result.outcome == "delivered", result
    assert len(receiver.seen) == 1


async def test_allow_loopback_follows_a_name_to_loopback(receiver: Receiver) -> None:
    url = receiver.url("/ok", host="dev.example")
    resolver = FixedResolver("127.0.0.1")
    async with WebhookTransport(allow_private=False, allow_loopback=True, resolver=resolver) as t:
        result = await deliver(t, request(url))
    assert result.outcome == "delivered", result
    assert len(receiver.seen) == 1


@pytest.mark.parametrize(
    ("host", "addresses", "fragment"),
    [
        ("10.0.0.1", (), "refusing to connect to 10.0.0.1 (private)"),
        ("192.168.1.1", (), "refusing to connect to 192.168.1.1 (private)"),
        ("169.254.169.254", (), "(link-local)"),
        ("[::127.0.0.1]", (), "(loopback)"),  # IPv4-compatible: leaves the host
        ("rebind.example", ("10.0.0.1",), "refusing to connect to 10.0.0.1 (private)"),
        ("rebind.example", ("192.168.1.1", "172.16.0.1"), "192.168.1.1 (private)"),
        ("%31%32%37.0.0.1", (), "write the host the way every client reads it"),
        ("127.1", (), "it spells 127.0.0.1 in a form not every client reads alike"),
        ("2130706433", (), "it spells 127.0.0.1 in a form not every client reads alike"),
    ],
)
async def test_allow_loopback_still_refuses_the_rest(
    receiver: Receiver, host: str, addresses: tuple[str, ...], fragment: str
) -> None:
    resolver = FixedResolver(*addresses)
    async with WebhookTransport(allow_private=False, allow_loopback=True, resolver=resolver) as t:
        result = await deliver(t, request(receiver.url("/ok", host=host)))
    assert result.outcome == "refused", result
    assert result.error is not None and fragment in result.error, result.error
    assert "TIDINGS_ALLOW_LOOPBACK_TARGETS" not in result.error  # it would not help
    assert receiver.seen == []


async def test_allow_loopback_resolver_keeps_only_loopback() -> None:
    inner = FixedResolver("10.0.0.1", "127.0.0.1", "::1", "fe80::1%eth0", "8.8.8.8")
    resolver = GuardedResolver(inner, allow=Allow.LOOPBACK)
    kept = await resolver.resolve("mixed.example", 443)
    assert [r["host"] for r in kept] == ["127.0.0.1", "::1", "8.8.8.8"]


# -- target_error (create time) ---------------------------------------------------------

LOOPBACK_HINT = (
    "set TIDINGS_ALLOW_LOOPBACK_TARGETS=1 (loopback only) or TIDINGS_ALLOW_PRIVATE_TARGETS=1 "
    "for development"
)
PRIVATE_HINT = "set TIDINGS_ALLOW_PRIVATE_TARGETS=1 for development"


async def refused(url: str, **kwargs: object) -> TargetProblem:
    problem = await asyncio.wait_for(target_error(url, allow_private=False, **kwargs), 5)  # type: ignore[arg-type]
    assert problem is not None, url
    return problem


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:8080/hook", "url host 127.0.0.1 is 127.0.0.1 (loopback)"),
        ("http://[::1]/hook", "url host ::1 is ::1 (loopback)"),
        ("http://localhost:9000/hook", "url host localhost is a loopback name"),
        ("http://LocalHost./hook", "url host localhost. is a loopback name"),
        ("http://foo.localhost/hook", "url host foo.localhost is a loopback name"),
        ("http://ip6-localhost:9000/", "url host ip6-localhost is a loopback name"),
        ("http://localhost.localdomain:9/", "url host localhost.localdomain is a loopback name"),
        ("http://2130706433/", "url host 2130706433 is 127.0.0.1 (loopback)"),
        ("http://0177.0.0.1/", "url host 0177.0.0.1 is 127.0.0.1 (loopback)"),
        ("http://0x7f.0.0.1/", "url host 0x7f.0.0.1 is 127.0.0.1 (loopback)"),
        ("http://127.1/", "url host 127.1 is 127.0.0.1 (loopback)"),
        ("http://[::ffff:127.0.0.1]/", "url host ::ffff:127.0.0.1 is ::ffff:7f00:1 (loopback)"),
        (
            "http://%31%32%37.0.0.1:9/",
            "url host %31%32%37.0.0.1 reads as 127.0.0.1 (loopback) to other URL parsers or "
            "resolvers",
        ),
        (
            "http://\u0661\u0662\u0667.\u0660.\u0660.\u0661:9/",
            "url host \u0661\u0662\u0667.\u0660.\u0660.\u0661 reads as 127.0.0.1 (loopback)",
        ),
        (
            "http://l\u043ecalhost:9/",
            "url host l\u043ecalhost reads as localhost, a loopback name, to other URL parsers",
        ),
    ],
)
async def test_target_error_refuses_loopback(url: str, message: str) -> None:
    problem = await refused(url)
    assert problem.code == "forbidden_target"
    assert problem.message.startswith(message), problem.message
    assert problem.message.endswith(f", which webhooks may not target; {LOOPBACK_HINT}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://10.1.2.3/hook", "url host 10.1.2.3 is 10.1.2.3 (private)"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "url host 169.254.169.254 is 169.254.169.254 (link-local)",
        ),
        ("http://0xa9fea9fe/", "url host 0xa9fea9fe is 169.254.169.254 (link-local)"),
        ("http://100.64.1.1/", "url host 100.64.1.1 is 100.64.1.1 (private)"),
        ("http://[::127.0.0.1]/", "url host ::127.0.0.1 is ::7f00:1 (loopback)"),
        ("http://0.0.0.0:80/", "url host 0.0.0.0 is 0.0.0.0 (unspecified)"),
        ("http://receiver:8080/", "url host receiver is a local network name"),
        ("http://printer.local/", "url host printer.local is a local network name"),
        ("http://api.home.arpa/", "url host api.home.arpa is a local network name"),
        ("http://metadata.google.internal/", "url host metadata.google.internal is a link-local"),
        ("http://%31%30.0.0.1/", "url host %31%30.0.0.1 reads as 10.0.0.1 (private)"),
    ],
)
async def test_target_error_refuses_the_rest(url: str, message: str) -> None:
    problem = await refused(url)
    assert problem.code == "forbidden_target"
    assert problem.message.startswith(message), problem.message
    assert problem.message.endswith(f", which webhooks may not target; {PRIVATE_HINT}")


@pytest.mark.parametrize(
    ("addresses", "message"),
    [
        (("10.0.0.1",), "url host hooks.example.com resolves to 10.0.0.1 (private)"),
        (("93.184.216.34", "169.254.169.254"), "resolves to 169.254.169.254 (link-local)"),
        (("2606:4700::1", "::1"), "resolves to ::1 (loopback)"),
    ],
)
async def test_target_error_refuses_names_with_any_forbidden_address(
    addresses: tuple[str, ...], message: str
) -> None:
    problem = await refused("https://hooks.example.com/x", resolver=FixedResolver(*addresses))
    assert problem.code == "forbidden_target"
    assert message in problem.message


async def test_target_error_accepts_names_with_only_public_addresses() -> None:
    resolver = FixedResolver("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    assert (
        await target_error("https://hooks.example.com/", allow_private=False, resolver=resolver)
        is None
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://8.8.8.8/hook",
        "https://[2606:4700:4700::1111]/",
        "https://[2606:4700:4700:0:0:0:0:1111]/",  # another spelling of the same address
    ],
)
async def test_target_error_accepts_public_literals(url: str) -> None:
    assert await asyncio.wait_for(target_error(url, allow_private=False), 5) is None


async def test_target_error_accepts_unresolvable_names() -> None:
    started = time.monotonic()
    result = await asyncio.wait_for(
        target_error("https://no-such-host.invalid/hook", allow_private=False, timeout_s=1.0), 5
    )
    assert result is None
    assert time.monotonic() - started < 1.5


class StuckResolver(FixedResolver):
    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        await asyncio.sleep(60)
        raise AssertionError("unreachable")


async def test_target_error_gives_up_on_a_slow_resolver() -> None:
    started = time.monotonic()
    result = await asyncio.wait_for(
        target_error(
            "https://slow.example/", allow_private=False, timeout_s=0.2, resolver=StuckResolver()
        ),
        5,
    )
    assert result is None  # accepted: the connect-time resolver still guards it
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    "url",
    [
        "http://\u0661.\u0661.\u0661.\u0661/",  # 1.1.1.1 in Arabic-Indic digits: xn--... to yarl
        "http://8.8.8.8%2e/",
    ],
)
async def test_target_error_refuses_hosts_clients_read_differently(url: str) -> None:
    problem = await refused(url)
    assert problem.code == "invalid_field"
    assert "to other URL parsers or resolvers but not to Tidings' HTTP client" in problem.message
    assert problem.message.endswith("write the host the way every client reads it")


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://134744072/", "8.8.8.8"),
        ("http://0x8.0x8.0x8.0x8/", "8.8.8.8"),
        ("http://8.8.2056/", "8.8.8.8"),
        ("http://010.010.010.010/", "8.8.8.8"),
        ("http://8.8.8.8./", "8.8.8.8"),
    ],
)
async def test_target_error_refuses_public_addresses_in_legacy_forms(
    url: str, address: str
) -> None:
    problem = await refused(url)
    assert problem.code == "invalid_field"
    assert f"spells {address} in a form not every client reads alike" in problem.message


# -- target_error with TIDINGS_ALLOW_LOOPBACK_TARGETS -----------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://127.9.9.9/",
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost:9/",  # resolved through /etc/hosts: every address is loopback
        "http://ip6-localhost/",
        "http://localhost.localdomain/",
        "http://foo.localhost/",
        "http://8.8.8.8/",
    ],
)
async def test_target_error_allow_loopback_accepts_loopback(url: str) -> None:
    assert await target_error(url, allow_private=False, allow_loopback=True) is None


async def test_target_error_allow_loopback_follows_names() -> None:
    to_loopback = FixedResolver("127.0.0.1", "::1")
    assert (
        await target_error(
            "http://receiver:9/", allow_private=False, allow_loopback=True, resolver=to_loopback
        )
        is None
    )
    to_private = FixedResolver("127.0.0.1", "10.0.0.7")
    problem = await refused("http://receiver:9/", allow_loopback=True, resolver=to_private)
    assert problem.code == "forbidden_target"
    assert problem.message == (
        "url host receiver resolves to 10.0.0.7 (private), which webhooks may not target; "
        f"{PRIVATE_HINT}"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://10.0.0.1/", "url host 10.0.0.1 is 10.0.0.1 (private)"),
        ("http://192.168.1.1:8080/", "url host 192.168.1.1 is 192.168.1.1 (private)"),
        ("http://169.254.169.254/", "(link-local)"),
        ("http://[fe80::1%25eth0]/", "(link-local)"),
        ("http://[::127.0.0.1]/", "::7f00:1 (loopback)"),  # IPv4-compatible: not this host's
        ("http://[64:ff9b::127.0.0.1]/", "(loopback)"),  # NAT64: not this host's either
        ("http://0.0.0.0/", "(unspecified)"),
        ("http://metadata.google.internal/", "a link-local name"),
    ],
)
async def test_target_error_allow_loopback_refuses_the_rest(url: str, message: str) -> None:
    problem = await refused(url, allow_loopback=True)
    assert problem.code == "forbidden_target"
    assert message in problem.message
    assert problem.message.endswith(PRIVATE_HINT)


@pytest.mark.parametrize(
    "url",
    [
        "http://%31%32%37.0.0.1/",
        "http://l\u043ecalhost/",
        "http://\u0661\u0662\u0667.0.0.1/",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://127.1/",
    ],
)
async def test_target_error_allow_loopback_refuses_ambiguous_loopback(url: str) -> None:
    problem = await refused(url, allow_loopback=True)
    assert problem.code == "invalid_field"


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
        "http://%31%32%37.0.0.1/",
    ],
)
async def test_target_error_allow_private_accepts_all(url: str) -> None:
    assert await asyncio.wait_for(target_error(url, allow_private=True), 5) is None
