"""The SSRF address policy: which addresses webhooks may never reach, and IP literals."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.policy.addresses import forbidden_reason, host_literal

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address

ipv4s = st.integers(min_value=0, max_value=2**32 - 1).map(V4)
ipv6s = st.integers(min_value=0, max_value=2**128 - 1).map(V6)


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        # unspecified / this network / broadcast
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "reserved"),
        ("255.255.255.255", "broadcast"),
        # loopback
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("127.1.2.3", "loopback"),
        # RFC 1918 and CGNAT
        ("10.0.0.0", "private"),
        ("10.1.2.3", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("192.168.255.255", "private"),
        ("100.64.0.1", "private"),
        ("100.127.255.255", "private"),
        # link-local, including cloud metadata
        ("169.254.169.254", "link-local"),
        ("169.254.0.1", "link-local"),
        # multicast and reserved
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.254", "reserved"),
        ("192.0.0.8", "reserved"),
        ("192.0.2.1", "reserved"),
        ("198.51.100.7", "reserved"),
        ("203.0.113.9", "reserved"),
        ("198.18.0.1", "reserved"),
        ("198.19.255.255", "reserved"),
        ("192.88.99.1", "reserved"),
        # IPv6 basics
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fc00::1", "private"),
        ("fd12:3456:789a::1", "private"),
        ("fec0::1", "private"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("febf:ffff::1", "link-local"),
        ("ff02::1", "multicast"),
        ("ff05::1:3", "multicast"),
        ("64:ff9b:1::1", "private"),
        ("100::1", "reserved"),
        ("2001::1", "reserved"),
        ("2001:db8::1", "reserved"),
        ("3fff::1", "reserved"),
        ("4000::1", "reserved"),
        ("1::", "reserved"),
        ("::ffff:0:7f00:1", "reserved"),  # SIIT "IPv4-translated", in ::/8
        # IPv4-mapped IPv6 takes the embedded address's reason
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:7f00:1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("::ffff:224.0.0.1", "multicast"),
        # IPv4-compatible (deprecated): embedded reason, else reserved
        ("::127.0.0.1", "loopback"),
        ("::10.0.0.1", "private"),
        ("::8.8.8.8", "reserved"),
        # NAT64 and 6to4 take the embedded address's reason
        ("64:ff9b::127.0.0.1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("2002:7f00:1::", "loopback"),
        ("2002:a00:1::1", "private"),
        ("2002:c0a8:101::", "private"),
    ],
)
def test_forbidden(ip: str, reason: str) -> None:
    assert forbidden_reason(ip) == reason
    assert forbidden_reason(ipaddress.ip_address(ip)) == reason


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "172.15.255.255",  # just below 172.16/12
        "172.32.0.0",  # just above
        "100.63.255.255",  # just below CGNAT
        "100.128.0.0",  # just above
        "169.253.255.255",
        "169.255.0.0",
        "11.0.0.0",
        "9.255.255.255",
        "126.255.255.255",
        "128.0.0.0",
        "192.167.255.255",
        "192.169.0.0",
        "223.255.255.255",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "2a00:1450:4001:81c::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::8.8.8.8",
        "2002:808:808::1",
        "3fff:1000::1",  # just outside 3fff::/20
    ],
)
def test_allowed(ip: str) -> None:
    assert forbidden_reason(ip) is None
    assert forbidden_reason(ipaddress.ip_address(ip)) is None


@pytest.mark.parametrize("text", ["", "localhost", "example.com", "1.2.3", "[::1]", "::g"])
def test_non_addresses_are_refused(text: str) -> None:
    assert forbidden_reason(text) == "not an IP address"


@given(ipv4s)
def test_mapped_ipv6_matches_ipv4(ip: V4) -> None:
    assert forbidden_reason(V6(f"::ffff:{ip}")) == forbidden_reason(ip)
    assert forbidden_reason(V6((0x2002 << 112) | (int(ip) << 80))) == forbidden_reason(ip)
    assert forbidden_reason(V6(f"64:ff9b::{ip}")) == forbidden_reason(ip)


@given(ipv4s)
def test_compatible_ipv6_is_never_allowed(ip: V4) -> None:
    if int(ip) > 1:
        assert forbidden_reason(V6(int(ip))) is not None


def _python_says_special(ip: V4 | V6) -> bool:
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or (isinstance(ip, V6) and ip.is_site_local)
        or (isinstance(ip, V4) and ip in ipaddress.ip_network("100.64.0.0/10"))
    )


@given(ipv4s)
def test_ipv4_at_least_as_strict_as_the_stdlib(ip: V4) -> None:
    if _python_says_special(ip):
        assert forbidden_reason(ip) is not None


_EMBEDDING = [ipaddress.ip_network(n) for n in ("::ffff:0:0/96", "64:ff9b::/96", "2002::/16")]


@given(ipv6s)
def test_ipv6_at_least_as_strict_as_the_stdlib(ip: V6) -> None:
    # The stdlib calls all of ::ffff:0:0/96 private and all of ::/8 (incl. NAT64)
    # reserved; we judge those by the IPv4 address they embed instead.
    if any(ip in net for net in _EMBEDDING):
        return
    if _python_says_special(ip):
        assert forbidden_reason(ip) is not None


@given(st.one_of(ipv4s, ipv6s))
def test_reason_is_short_or_none(ip: V4 | V6) -> None:
    reason = forbidden_reason(ip)
    assert reason is None or (0 < len(reason) <= 20)
    assert forbidden_reason(str(ip)) == reason


# -- host_literal ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("8.8.8.8", "8.8.8.8"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),
        ("[fe80::1%25eth0]", "fe80::1%eth0"),
        ("fe80::1%25eth0", "fe80::1%eth0"),
        ("[2001:db8::1]", "2001:db8::1"),
        # legacy numeric IPv4 forms the C resolver accepts
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.000.0.1", "127.0.0.1"),
        ("10.1.515", "10.1.2.3"),
        ("0", "0.0.0.0"),
        ("0xA9FEA9FE", "169.254.169.254"),
    ],
)
def test_host_literal(host: str, expected: str) -> None:
    assert host_literal(host) == ipaddress.ip_address(expected)


@pytest.mark.parametrize(
    "host",
    [
        "",
        "localhost",
        "example.com",
        "127.0.0.1.example.com",
        "1.2.3.4.5",
        "256.0.0.1",
        "1.2.3.256",
        "1.2.65536",
        "4294967296",
        "08",
        "0x",
        "0x1g",
        "1..2",
        ".",
        "[]",
        "[127.0.0.1]",
        "[::g]",
        "::g",
        "xn--bcher-kva.de",
    ],
)
def test_host_literal_rejects_names(host: str) -> None:
    assert host_literal(host) is None


_NUMERIC = st.text(alphabet="0123456789xXabcdefABCDEF.", min_size=1, max_size=20)


@given(_NUMERIC)
def test_legacy_forms_agree_with_the_c_library(host: str) -> None:
    try:
        expected: V4 | None = V4(socket.inet_aton(host))
    except OSError:
        expected = None
    if host.endswith(".") and expected is None:
        # inet_aton refuses a trailing dot; host names may carry one.
        stripped = host[:-1]
        try:
            expected = V4(socket.inet_aton(stripped)) if stripped else None
        except OSError:
            expected = None
    assert host_literal(host) == expected


@given(ipv4s)
def test_host_literal_round_trips_ipv4(ip: V4) -> None:
    assert host_literal(str(ip)) == ip
    assert host_literal(str(int(ip))) == ip
    assert host_literal(hex(int(ip))) == ip


@given(ipv6s)
def test_host_literal_round_trips_ipv6(ip: V6) -> None:
    assert host_literal(f"[{ip}]") == ip
    assert host_literal(ip.exploded) == ip
