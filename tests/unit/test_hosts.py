"""Reading a webhook URL's host every way a client could, and judging it without DNS."""

from __future__ import annotations

import ipaddress
import string
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.policy.addresses import Allow, forbidden_reason, is_loopback
from tidings.policy.hosts import CONFUSABLES, HostVerdict, judge_url, name_reason, skeleton

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address

LOOPBACK_NAMES = [
    "localhost",
    "localhost.localdomain",
    "localhost4",
    "localhost4.localdomain4",
    "localhost6",
    "localhost6.localdomain6",
    "ip6-localhost",
    "ip6-loopback",
    "foo.localhost",
    "a.b.localhost",
]


def judge(host: str, allow: Allow = Allow.NOTHING, port: int = 8080) -> HostVerdict:
    return judge_url(f"http://{host}:{port}/hook", allow)


def forbidden(host: str, allow: Allow = Allow.NOTHING) -> bool:
    refusal = judge(host, allow).refusal
    return refusal is not None and refusal.forbidden


# -- the probes of issue 13 -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "clause"),
    [
        ("ip6-localhost", "is a loopback name"),
        ("localhost.localdomain", "is a loopback name"),
        ("LOCALHOST.", "is a loopback name"),
        ("localhost..", "is a loopback name"),
        ("%31%32%37.0.0.1", "reads as 127.0.0.1 (loopback) to other URL parsers or resolvers"),
        ("127.0.0.1%2e", "reads as 127.0.0.1 (loopback) to other URL parsers or resolvers"),
        ("loc%61lhost", "reads as localhost, a loopback name, to other URL parsers or resolvers"),
        ("\u0661\u0662\u0667.\u0660.\u0660.\u0661", "reads as 127.0.0.1 (loopback)"),
        ("\u0967\u0968\u096d.\u0966.\u0966.\u0967", "reads as 127.0.0.1 (loopback)"),  # Devanagari
        ("l\u043ecalhost", "reads as localhost, a loopback name,"),  # Cyrillic o
        ("loc\u0430lhost", "reads as localhost, a loopback name,"),  # Cyrillic a
        ("xn--lcalhost-nbh", "reads as localhost, a loopback name,"),  # the same, as punycode
        ("local\u00adhost", "reads as localhost, a loopback name,"),  # soft hyphen
        ("l\u00f3calhost", "reads as localhost, a loopback name,"),  # o with acute
        ("\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3", "is a loopback name"),  # circled
        ("2130706433", "is 127.0.0.1 (loopback)"),
        ("0177.0.0.1", "is 127.0.0.1 (loopback)"),
        ("0x7f.0.0.1", "is 127.0.0.1 (loopback)"),
        ("127.1", "is 127.0.0.1 (loopback)"),
        ("[::ffff:127.0.0.1]", "is ::ffff:7f00:1 (loopback)"),
        ("[0:0:0:0:0:ffff:7f00:1]", "is ::ffff:7f00:1 (loopback)"),
        ("\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11", "is 127.0.0.1 (loopback)"),
        ("127\u30020\u30020\u30021", "is 127.0.0.1 (loopback)"),  # ideographic full stops
        ("[::1]", "is ::1 (loopback)"),
        ("10.0.0.1", "is 10.0.0.1 (private)"),
        ("%31%30.0.0.1", "reads as 10.0.0.1 (private)"),
        ("192.168.1.1", "is 192.168.1.1 (private)"),
        ("169.254.169.254", "is 169.254.169.254 (link-local)"),
        ("[fe80::1%25eth0]", "is fe80::1%eth0 (link-local)"),
        ("[::ffff:169.254.169.254]", "(link-local)"),
        ("0", "is 0.0.0.0 (unspecified)"),
        ("receiver", "is a local network name"),
        ("printer.local", "is a local network name"),
        ("nas.home.arpa", "is a local network name"),
        ("db.internal", "is a local network name"),
        ("metadata.google.internal", "is a link-local name"),
        ("metadata.goog", "is a link-local name"),
    ],
)
def test_refused_without_dns(host: str, clause: str) -> None:
    verdict = judge(host)
    assert verdict.refusal is not None, host
    assert verdict.refusal.forbidden
    assert clause in verdict.refusal.clause, verdict.refusal.clause
    assert verdict.names == ()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("%31%32%37.0.0.1", True),
        ("[::ffff:127.0.0.1]", True),
        ("[::127.0.0.1]", False),  # IPv4-compatible: not this host's loopback
        ("[64:ff9b::7f00:1]", False),  # NAT64
        ("10.0.0.1", False),
        ("receiver", False),  # may resolve anywhere
    ],
)
def test_refusals_say_whether_the_loopback_switch_would_lift_them(
    host: str, loopback: bool
) -> None:
    refusal = judge(host).refusal
    assert refusal is not None
    assert refusal.loopback is loopback


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("2130706433", "2130706433"),
        ("\u0661\u0662\u0667.\u0660.\u0660.\u0661", "\u0661\u0662\u0667.\u0660.\u0660.\u0661"),
        ("LocalHost", "localhost"),
    ],
)
def test_refusals_show_the_host_as_the_url_spells_it(host: str, shown: str) -> None:
    refusal = judge(host).refusal
    assert refusal is not None
    assert refusal.host == shown


def test_the_client_address_is_kept_for_send_time_messages() -> None:
    refusal = judge("2130706433").refusal
    assert refusal is not None
    assert (refusal.address, refusal.reason) == ("127.0.0.1", "loopback")
    refusal = judge("localhost").refusal
    assert refusal is not None
    assert (refusal.address, refusal.reason) == (None, "loopback")


# -- what is left to DNS, and what passes ------------------------------------------------


@pytest.mark.parametrize(
    ("host", "names"),
    [
        ("example.com", ("example.com",)),
        ("Hooks.Example.COM.", ("hooks.example.com",)),
        ("b\u00fccher.de", ("xn--bcher-kva.de",)),
        ("xn--bcher-kva.de", ("xn--bcher-kva.de",)),
        ("\u4f8b\u3048.jp", ("xn--r8jz45g.jp",)),
        ("no-such-host.invalid", ("no-such-host.invalid",)),
        ("8.8.8.8", ()),
        ("[2606:4700:4700::1111]", ()),
        ("[2606:4700:4700:0:0:0:0:1111]", ()),
        ("[::ffff:8.8.8.8]", ()),
    ],
)
def test_public_hosts_pass(host: str, names: tuple[str, ...]) -> None:
    assert judge(host) == HostVerdict(None, names)


@pytest.mark.parametrize(
    ("host", "clause"),
    [
        ("\u0661.\u0661.\u0661.\u0661", "reads as 1.1.1.1 to other URL parsers"),
        ("8.8.8.8%2e", "reads as 8.8.8.8 to other URL parsers"),
        ("134744072", "spells 8.8.8.8 in a form not every client reads alike"),
        ("0x8.0x8.0x8.0x8", "spells 8.8.8.8 in a form not every client reads alike"),
        ("8.8.8.8.", "spells 8.8.8.8 in a form not every client reads alike"),
        ("008.8.8.8", "ends in a number but is no IPv4 address"),
        ("a.b.c.d.e.f.1", "ends in a number but is no IPv4 address"),
        ("1.2.3.4.5", "ends in a number but is no IPv4 address"),
        ("example.0x", "ends in a number but is no IPv4 address"),
    ],
)
def test_public_addresses_spelled_ambiguously_are_bad_input(host: str, clause: str) -> None:
    refusal = judge(host).refusal
    assert refusal is not None
    assert not refusal.forbidden
    assert clause in refusal.clause, refusal.clause


def test_a_host_the_client_cannot_parse_is_bad_input() -> None:
    # yarl refuses the backslash; urllib reads 127.0.0.1 after the "@"
    refusal = judge_url("http://8.8.8.8\\@127.0.0.1/", Allow.NOTHING).refusal
    assert refusal is not None and refusal.forbidden and refusal.host == "127.0.0.1"
    refusal = judge_url("http://8.8.8.8\\@127.0.0.1/", Allow.LOOPBACK).refusal
    assert refusal is not None and not refusal.forbidden
    assert refusal.clause == "cannot be parsed by Tidings' HTTP client"


@pytest.mark.parametrize("url", ["not a url", "http://", "mailto:someone@example.com", ""])
def test_urls_without_a_host_are_left_to_validation(url: str) -> None:
    assert judge_url(url, Allow.NOTHING) == HostVerdict(None, ())


# -- the allowances --------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.255.255.254",
        "[::1]",
        "[::ffff:127.0.0.1]",
        *LOOPBACK_NAMES,
    ],
)
def test_allow_loopback_lifts_loopback(host: str) -> None:
    verdict = judge(host, Allow.LOOPBACK)
    assert verdict.refusal is None
    is_literal = host[0].isdigit() or host.startswith("[")
    assert verdict.names == (() if is_literal else (host,))


@pytest.mark.parametrize("host", ["receiver", "vm", "printer.local"])
def test_allow_loopback_leaves_local_network_names_to_dns(host: str) -> None:
    assert judge(host, Allow.LOOPBACK) == HostVerdict(None, (host,))


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "[::]",
        "[fc00::1]",
        "[fe80::1]",
        "[::127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
        "metadata.google.internal",
        "%31%30.0.0.1",
    ],
)
def test_allow_loopback_keeps_the_rest(host: str) -> None:
    refusal = judge(host, Allow.LOOPBACK).refusal
    assert refusal is not None and refusal.forbidden
    assert not refusal.loopback


@pytest.mark.parametrize(
    "host", ["%31%32%37.0.0.1", "l\u043ecalhost", "127.1", "2130706433", "0x7f000001"]
)
def test_allow_loopback_still_refuses_ambiguous_loopback(host: str) -> None:
    refusal = judge(host, Allow.LOOPBACK).refusal
    assert refusal is not None
    assert not refusal.forbidden


@pytest.mark.parametrize(
    "host", ["10.0.0.1", "localhost", "%31%32%37.0.0.1", "receiver", "[fe80::1]", "127.1"]
)
def test_allow_private_lifts_everything(host: str) -> None:
    assert judge(host, Allow.PRIVATE) == HostVerdict(None, ())


def test_allow_of() -> None:
    assert Allow.of(private=False, loopback=False) is Allow.NOTHING
    assert Allow.of(private=False, loopback=True) is Allow.LOOPBACK
    assert Allow.of(private=True, loopback=False) is Allow.PRIVATE
    assert Allow.of(private=True, loopback=True) is Allow.PRIVATE


# -- properties ------------------------------------------------------------------------

ipv4s = st.integers(min_value=0, max_value=2**32 - 1).map(V4)
forbidden_ipv4s = ipv4s.filter(lambda ip: forbidden_reason(ip) is not None)
public_ipv4s = ipv4s.filter(lambda ip: forbidden_reason(ip) is None)
loopback_ipv4s = st.integers(min_value=0x7F00_0000, max_value=0x7FFF_FFFF).map(V4)


@st.composite
def inet_aton_spellings(draw: st.DrawFn, ip: V4) -> str:
    """`ip` in any of the forms inet_aton reads: 1 to 4 parts, each decimal, octal or hex."""
    value = int(ip)
    parts = draw(st.integers(min_value=1, max_value=4))
    numbers = [(value >> (24 - 8 * i)) & 0xFF for i in range(parts - 1)]
    numbers.append(value & ((1 << (8 * (5 - parts))) - 1))
    spelled = []
    for n in numbers:
        radix = draw(st.sampled_from(["dec", "oct", "hex", "HEX"]))
        if radix == "dec":
            spelled.append(str(n))
        elif radix == "oct":
            spelled.append("0" + format(n, "o"))
        else:
            spelled.append(("0x" if radix == "hex" else "0X") + format(n, "x"))
    return ".".join(spelled)


@given(st.data(), forbidden_ipv4s)
def test_any_inet_aton_spelling_of_a_forbidden_ipv4_is_refused(data: st.DataObject, ip: V4) -> None:
    host = data.draw(inet_aton_spellings(ip))
    refusal = judge(host).refusal
    assert refusal is not None and refusal.forbidden, host
    assert refusal.address == str(ip)


@given(st.data(), public_ipv4s)
def test_a_public_ipv4_passes_only_as_a_dotted_quad(data: st.DataObject, ip: V4) -> None:
    assert judge(str(ip)) == HostVerdict(None, ())
    host = data.draw(inet_aton_spellings(ip))
    verdict = judge(host)
    if host == str(ip):
        assert verdict == HostVerdict(None, ())
    else:
        assert verdict.refusal is not None and not verdict.refusal.forbidden, host


@given(st.data(), loopback_ipv4s)
def test_allow_loopback_takes_loopback_as_a_dotted_quad(data: st.DataObject, ip: V4) -> None:
    assert judge(str(ip), Allow.LOOPBACK) == HostVerdict(None, ())
    assert judge(f"[::ffff:{ip}]", Allow.LOOPBACK) == HostVerdict(None, ())
    assert forbidden(f"[::{ip}]", Allow.LOOPBACK)  # IPv4-compatible
    host = data.draw(inet_aton_spellings(ip))
    if host != str(ip):
        assert judge(host, Allow.LOOPBACK).refusal is not None


@given(forbidden_ipv4s)
def test_ipv4_mapped_and_compatible_forms_are_refused(ip: V4) -> None:
    for host in (f"[::ffff:{ip}]", f"[::ffff:{V6(0xFFFF_0000_0000 | int(ip)).compressed[7:]}]"):
        assert forbidden(host), host
    if int(ip) > 1:
        assert forbidden(f"[::{ip}]")


def _percent_encode(data: st.DataObject, text: str) -> str:
    mask = data.draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(
        f"%{ord(c):02{'x' if data.draw(st.booleans()) else 'X'}}" if m else c
        for c, m in zip(text, mask, strict=True)
    )


@given(st.data(), forbidden_ipv4s)
def test_percent_encoding_hides_no_forbidden_ipv4(data: st.DataObject, ip: V4) -> None:
    host = _percent_encode(data, str(ip))
    assert forbidden(host), host


@given(st.data(), st.sampled_from(LOOPBACK_NAMES))
def test_percent_encoding_hides_no_loopback_name(data: st.DataObject, name: str) -> None:
    host = _percent_encode(data, name)
    assert forbidden(host), host


# Every Unicode decimal digit, grouped by script: the digit zero of each script, then +n.
_ZEROS = [
    chr(c)
    for c in range(0x110000)
    if unicodedata.category(chr(c)) == "Nd" and unicodedata.decimal(chr(c)) == 0
]


@given(st.data(), forbidden_ipv4s)
def test_unicode_digits_hide_no_forbidden_ipv4(data: st.DataObject, ip: V4) -> None:
    def digit(c: str) -> str:
        if not c.isdigit() or not data.draw(st.booleans()):
            return c
        return chr(ord(data.draw(st.sampled_from(_ZEROS))) + int(c))

    host = "".join(digit(c) for c in str(ip))
    assert forbidden(host), ascii(host)


_LOOK_ALIKES: dict[str, list[str]] = {}
for _alike, _latin in CONFUSABLES.items():
    _LOOK_ALIKES.setdefault(_latin, []).append(_alike)


@given(st.data(), st.sampled_from(LOOPBACK_NAMES))
def test_look_alike_letters_hide_no_loopback_name(data: st.DataObject, name: str) -> None:
    def letter(c: str) -> str:
        choice = data.draw(st.sampled_from(["same", "upper", "alike"]))
        if choice == "upper":
            return c.upper()
        if choice == "alike" and c in _LOOK_ALIKES:
            return data.draw(st.sampled_from(_LOOK_ALIKES[c]))
        return c

    host = "".join(letter(c) for c in name) + "." * data.draw(st.integers(0, 2))
    assert forbidden(host), ascii(host)


_LABEL = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=12)
_TLD = st.text(alphabet=string.ascii_lowercase, min_size=2, max_size=6).filter(
    lambda tld: tld not in ("local", "localhost", "localdomain", "internal", "arpa", "goog")
)


@given(st.lists(_LABEL, min_size=1, max_size=3), _TLD)
def test_public_looking_names_are_left_to_dns(labels: list[str], tld: str) -> None:
    host = ".".join([*labels, tld])
    assert judge(host) == HostVerdict(None, (host,))


@given(st.sampled_from([Allow.NOTHING, Allow.LOOPBACK]), st.text(max_size=30))
def test_judging_never_raises(allow: Allow, host: str) -> None:
    verdict = judge_url(f"http://{host}/", allow)
    assert isinstance(verdict, HostVerdict)


# -- the parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", "localhost"),
        ("LOCALHOST..", "localhost"),
        ("l\u043ec\u0430lh\u043est", "localhost"),
        ("xn--lcalhost-nbh", "localhost"),
        ("\u0661\u0662\u0667.\u0660.\u0660.\u0661", "127.0.0.1"),
        ("\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11", "127.0.0.1"),
        ("b\u00fccher.de", "bucher.de"),
        ("e\u200bxample.com", "example.com"),
        ("example.com", "example.com"),
    ],
)
def test_skeleton(host: str, expected: str) -> None:
    assert skeleton(host) == expected


def test_confusables_map_only_non_ascii_onto_ascii() -> None:
    assert all(not alike.isascii() and latin.isascii() for alike, latin in CONFUSABLES.items())


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        *((n, "loopback") for n in LOOPBACK_NAMES),
        ("metadata.goog", "link-local"),
        ("receiver", "local network name"),
        ("x.local", "local network name"),
        ("x.localdomain", "local network name"),
        ("x.internal", "local network name"),
        ("x.home.arpa", "local network name"),
        ("example.com", None),
        ("local.example.com", None),
        ("localhost.example.com", None),
        ("internal.example", None),
    ],
)
def test_name_reason(name: str, reason: str | None) -> None:
    assert name_reason(name) == reason


@given(st.integers(min_value=0, max_value=2**32 - 1).map(V4))
def test_is_loopback_ipv4(ip: V4) -> None:
    assert is_loopback(ip) == (ip in ipaddress.ip_network("127.0.0.0/8"))
    assert is_loopback(V6(f"::ffff:{ip}")) == is_loopback(ip)
    assert not is_loopback(V6(f"64:ff9b::{ip}"))


@given(st.integers(min_value=0, max_value=2**128 - 1).map(V6))
def test_is_loopback_ipv6(ip: V6) -> None:
    mapped = ip.ipv4_mapped
    expected = ip == V6("::1") or (mapped is not None and mapped.is_loopback)
    assert is_loopback(ip) == expected
