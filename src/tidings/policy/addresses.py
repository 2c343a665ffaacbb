"""Which IP addresses a webhook may never reach, and recognising IP literals in URLs.

Owns the SSRF address policy: loopback, private (RFC 1918, CGNAT, unique-local),
link-local (including cloud metadata at 169.254.169.254), multicast, unspecified,
broadcast and reserved ranges, and the IPv6 forms that embed an IPv4 address
(IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16), which are judged by
the address they embed. `host_literal` also understands the legacy numeric IPv4 spellings
(`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) that the C resolver maps onto addresses.
`Allow` says how much of that policy a deployment lifts: nothing, loopback only
(TIDINGS_ALLOW_LOOPBACK_TARGETS) or all of it (TIDINGS_ALLOW_PRIVATE_TARGETS).

Pure: must never do I/O (no DNS, no sockets). Resolving names and refusing connections
belongs to `tidings.transports.ssrf`.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = [
    "Allow",
    "IPAddress",
    "forbidden_reason",
    "host_literal",
    "is_loopback",
    "refused_reason",
]


class Allow(enum.Enum):
    """How much of the address policy is lifted."""

    NOTHING = "nothing"  # the default: every forbidden address is refused
    LOOPBACK = "loopback"  # development: this host's loopback only, private ranges stay refused
    PRIVATE = "private"  # development and tests: nothing is refused

    @classmethod
    def of(cls, *, private: bool, loopback: bool) -> Allow:
        """The allowance the two settings ask for; private includes loopback."""
        if private:
            return cls.PRIVATE
        return cls.LOOPBACK if loopback else cls.NOTHING


# (network, prefix length, reason); the first match wins, so specific ranges come first.
_V4_RANGES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/32", "unspecified"),
    ("255.255.255.255/32", "broadcast"),
    ("0.0.0.0/8", "reserved"),  # "this network"; Linux connects 0.x to the local host
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "private"),  # carrier-grade NAT (RFC 6598)
    ("169.254.0.0/16", "link-local"),  # includes cloud metadata 169.254.169.254
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "reserved"),  # TEST-NET-1
    ("198.51.100.0/24", "reserved"),  # TEST-NET-2
    ("203.0.113.0/24", "reserved"),  # TEST-NET-3
    ("198.18.0.0/15", "reserved"),  # benchmarking
    ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
)

_V6_RANGES: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "private"),  # local-use NAT64 (RFC 8215)
    ("fc00::/7", "private"),  # unique local
    ("fec0::/10", "private"),  # deprecated site-local
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
    ("100::/64", "reserved"),  # discard-only
    ("2001::/23", "reserved"),  # IETF protocol assignments, incl. Teredo 2001::/32
    ("2001:db8::/32", "reserved"),  # documentation
    ("3fff::/20", "reserved"),  # documentation (RFC 9637)
)


def _compile(ranges: tuple[tuple[str, str], ...], version: int) -> tuple[tuple[int, int, str], ...]:
    out = []
    for text, reason in ranges:
        net = ipaddress.ip_network(text)
        assert net.version == version
        out.append((int(net.network_address), int(net.netmask), reason))
    return tuple(out)


_V4 = _compile(_V4_RANGES, 4)
_V6 = _compile(_V6_RANGES, 6)

_V6_MAPPED = int(ipaddress.IPv6Address("::ffff:0:0"))  # ::ffff:0:0/96
_V6_NAT64 = int(ipaddress.IPv6Address("64:ff9b::"))  # 64:ff9b::/96
_V6_6TO4 = 0x2002  # 2002::/16, the IPv4 address in bits 16..48
_LOW32 = 0xFFFF_FFFF
_GLOBAL_UNICAST_TOP3 = 0b001  # 2000::/3 is the only IPv6 range allocated for unicast


def _v4_reason(value: int) -> str | None:
    for net, mask, reason in _V4:
        if value & mask == net:
            return reason
    return None


def _v6_reason(value: int) -> str | None:
    high96 = value >> 32
    if high96 == _V6_MAPPED >> 32:
        return _v4_reason(value & _LOW32)
    if high96 == 0 and value > 1:
        # Deprecated IPv4-compatible form ::a.b.c.d: judge the embedded address, and
        # refuse it anyway since nothing legitimate routes it.
        return _v4_reason(value & _LOW32) or "reserved"
    if high96 == _V6_NAT64 >> 32:
        return _v4_reason(value & _LOW32)
    if value >> 112 == _V6_6TO4:
        return _v4_reason((value >> 80) & _LOW32)
    for net, mask, reason in _V6:
        if value & mask == net:
            return reason
    if value >> 125 != _GLOBAL_UNICAST_TOP3:
        return "reserved"
    return None


@lru_cache(maxsize=4096)
def _reason_for_text(text: str) -> str | None:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return "not an IP address"
    return forbidden_reason(addr)


def forbidden_reason(ip: str | IPAddress) -> str | None:
    """Why a webhook may never connect to `ip` ("loopback", "private", ...), or None.

    A string that is not an IP address is refused ("not an IP address"): callers pass
    resolved addresses, and anything else must not slip through as "fine".
    """
    if isinstance(ip, str):
        return _reason_for_text(ip)
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_reason(int(ip))
    return _v6_reason(int(ip))


# One part of a legacy inet_aton spelling: hex, octal (leading 0) or decimal.
_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """inet_aton's forms: a, a.b (b fills 24 bits), a.b.c (c fills 16 bits), a.b.c.d."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        if len(part) > 16 or not _PART.fullmatch(part):
            return None
        if part[:2] in ("0x", "0X"):
            values.append(int(part, 16))
        elif part.startswith("0"):
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    value = last
    for i, v in enumerate(head):
        value |= v << (24 - 8 * i)
    return ipaddress.IPv4Address(value)


@lru_cache(maxsize=4096)
def host_literal(host: str) -> IPAddress | None:
    """The IP address `host` (a URL's host part) spells, or None if it is a name.

    Accepts bracketed or bare IPv6 (with a `%zone`, also URL-encoded as `%25zone`),
    dotted-quad IPv4 with at most one trailing dot, and the legacy numeric IPv4 forms.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if ":" not in text:
            return None
    if ":" in text:
        text = text.replace("%25", "%", 1)
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    if text.endswith("."):
        text = text[:-1]
    if not text:
        return None
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return _legacy_ipv4(text)


_V4_LOOPBACK = int(ipaddress.IPv4Address("127.0.0.0"))
_V6_LOOPBACK = 1


def is_loopback(ip: IPAddress) -> bool:
    """True for the addresses that reach this host's own loopback interface: 127.0.0.0/8,
    ::1, and 127.0.0.0/8 mapped into IPv6 (::ffff:127.0.0.0/104, which a dual-stack socket
    connects to as IPv4). Not the IPv4-compatible, NAT64 or 6to4 forms: those leave the host.
    """
    value = int(ip)
    if isinstance(ip, ipaddress.IPv4Address):
        return value >> 24 == _V4_LOOPBACK >> 24
    if value == _V6_LOOPBACK:
        return True
    return value >> 32 == _V6_MAPPED >> 32 and (value & _LOW32) >> 24 == _V4_LOOPBACK >> 24


def refused_reason(ip: str | IPAddress, allow: Allow) -> str | None:
    """`forbidden_reason` with `allow` lifted: why a webhook may not connect to `ip`, or None."""
    if allow is Allow.PRIVATE:
        return None
    if isinstance(ip, str):
        try:
            ip = ipaddress.ip_address(ip)
        except ValueError:
            return "not an IP address"
    reason = forbidden_reason(ip)
    if reason is not None and allow is Allow.LOOPBACK and is_loopback(ip):
        return None
    return reason
