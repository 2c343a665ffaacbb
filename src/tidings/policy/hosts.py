"""How a webhook URL's host may be read, and which readings a webhook may never reach.

Owns turning the host of a URL into every way a client or resolver could read it, and
judging each reading without DNS:

- the host as aiohttp connects to it (yarl's parse: IDNA/UTS46-encoded, lower case), and
  as the standard library's `urlsplit` parses it (a different authority parser);
- percent-decoded, NFKC-case-folded, with the four IDNA dots read as `.` (what WHATWG URL
  parsers, curl and browsers do), so `%31%32%37.0.0.1` and 127.0.0.1 in fullwidth digits
  are 127.0.0.1;
- a skeleton: punycode labels decoded, marks and format characters dropped, any Unicode
  decimal digit read as its ASCII digit and look-alike letters (Cyrillic a, Greek omicron,
  ...) as the Latin ones, so 127.0.0.1 in Arabic-Indic digits and `localhost` with a
  Cyrillic o are what they look like.

Every reading has trailing dots removed. A reading that is an IP literal (including the
inet_aton forms `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) is judged by the address
policy in `tidings.policy.addresses`; a name is judged by what it names: `localhost` and
the loopback names of common /etc/hosts files are loopback, single-label names and the
special-use suffixes `.local`, `.localdomain`, `.internal` and `.home.arpa` only ever
resolve on a local network. The reading aiohttp connects to is the one that counts; a
reading that differs from it and spells an address or a special name makes the host
ambiguous, which is refused too (the user meant that address, or someone hopes a parser
will), as forbidden when that address or name is, else as bad input. So are an IPv4
address spelled other than as a plain dotted quad, a name ending in a number (WHATWG
parsers take it for IPv4) and a host yarl cannot parse.

Pure: never resolves a name or opens a socket. Resolving the names left over (`names`) and
refusing connections belong to `tidings.transports.ssrf`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from yarl import URL

from tidings.policy.addresses import Allow, IPAddress, host_literal, refused_reason

__all__ = ["HostRefusal", "HostVerdict", "judge_url", "name_reason", "readings", "skeleton"]

# Names that mean this host's loopback in RFC 6761 (`localhost`, `*.localhost`) and in the
# /etc/hosts files Debian, Ubuntu, Fedora and RHEL ship.
_LOOPBACK_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "localhost4",
        "localhost4.localdomain4",
        "localhost6",
        "localhost6.localdomain6",
        "ip6-localhost",
        "ip6-loopback",
    }
)
_LOOPBACK_SUFFIX = ".localhost"
# Names no public DNS answers for: mDNS (RFC 6762), home networks (RFC 8375), ICANN's
# private-use TLD and the traditional `localdomain`. A single label is resolved only by
# /etc/hosts, search domains, mDNS or LLMNR: never the public DNS either.
_LOCAL_SUFFIXES = (".local", ".localdomain", ".internal", ".home.arpa")
_LOCAL_NAME = "local network name"
# Cloud metadata services by name (the address, 169.254.169.254, is link-local anyway).
_METADATA_NAMES = frozenset({"metadata.goog", "metadata.google.internal"})

# U+3002, U+FF0E and U+FF61 separate labels like "." in IDNA (UTS 46 maps them to it).
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})

# Look-alikes of the Latin letters (after case folding), from Unicode's confusables data:
# enough to see a loopback name or an address in a host written in another script. Only
# ever compared with the names and literals above, so a false likeness costs nothing.
# Named rather than written out: a reviewer cannot tell the letters apart either.
_CONFUSABLE_NAMES: dict[str, tuple[str, ...]] = {
    "a": (
        "CYRILLIC SMALL LETTER A",
        "GREEK SMALL LETTER ALPHA",
        "LATIN SMALL LETTER ALPHA",
        "LATIN LETTER SMALL CAPITAL A",
    ),
    "b": (
        "CYRILLIC SMALL LETTER SOFT SIGN",
        "CYRILLIC SMALL LETTER VE",
        "GREEK SMALL LETTER BETA",
        "LATIN LETTER SMALL CAPITAL B",
    ),
    "c": (
        "CYRILLIC SMALL LETTER ES",
        "GREEK LUNATE SIGMA SYMBOL",
        "LATIN LETTER SMALL CAPITAL C",
    ),
    "d": (
        "CYRILLIC SMALL LETTER KOMI DE",
        "LATIN LETTER SMALL CAPITAL D",
        "LATIN SMALL LETTER D WITH STROKE",
    ),
    "e": (
        "CYRILLIC SMALL LETTER IE",
        "GREEK SMALL LETTER EPSILON",
        "GREEK LUNATE EPSILON SYMBOL",
        "LATIN LETTER SMALL CAPITAL E",
    ),
    "f": ("LATIN LETTER SMALL CAPITAL F",),
    "g": (
        "LATIN SMALL LETTER SCRIPT G",
        "LATIN LETTER SMALL CAPITAL G",
        "ARMENIAN SMALL LETTER CO",
    ),
    "h": (
        "CYRILLIC SMALL LETTER SHHA",
        "ARMENIAN SMALL LETTER HO",
        "LATIN LETTER SMALL CAPITAL H",
        "LATIN SMALL LETTER H WITH STROKE",
    ),
    "i": (
        "CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I",
        "GREEK SMALL LETTER IOTA",
        "LATIN SMALL LETTER DOTLESS I",
        "LATIN SMALL LETTER IOTA",
        "LATIN LETTER SMALL CAPITAL I",
    ),
    "j": (
        "CYRILLIC SMALL LETTER JE",
        "GREEK LETTER YOT",
        "LATIN SMALL LETTER DOTLESS J",
        "LATIN LETTER SMALL CAPITAL J",
    ),
    "k": (
        "CYRILLIC SMALL LETTER KA",
        "GREEK SMALL LETTER KAPPA",
        "LATIN LETTER SMALL CAPITAL K",
    ),
    "l": (
        "CYRILLIC SMALL LETTER PALOCHKA",
        "LATIN LETTER DENTAL CLICK",
        "LATIN LETTER SMALL CAPITAL L",
        "LATIN SMALL LETTER L WITH STROKE",
        "LATIN SMALL LETTER L WITH BAR",
        "ARMENIAN SMALL LETTER LIWN",
    ),
    "m": (
        "CYRILLIC SMALL LETTER EM",
        "LATIN LETTER SMALL CAPITAL M",
    ),
    "n": (
        "CYRILLIC SMALL LETTER PE",
        "GREEK SMALL LETTER ETA",
        "ARMENIAN SMALL LETTER VO",
        "LATIN LETTER SMALL CAPITAL N",
    ),
    "o": (
        "CYRILLIC SMALL LETTER O",
        "GREEK SMALL LETTER OMICRON",
        "ARMENIAN SMALL LETTER OH",
        "LATIN LETTER SMALL CAPITAL O",
        "LATIN SMALL LETTER O WITH STROKE",
        "GREEK SMALL LETTER SIGMA",
    ),
    "p": (
        "CYRILLIC SMALL LETTER ER",
        "GREEK SMALL LETTER RHO",
        "LATIN LETTER SMALL CAPITAL P",
    ),
    "q": (
        "CYRILLIC SMALL LETTER QA",
        "ARMENIAN SMALL LETTER ZA",
    ),
    "r": (
        "CYRILLIC SMALL LETTER GHE",
        "LATIN LETTER SMALL CAPITAL R",
    ),
    "s": (
        "CYRILLIC SMALL LETTER DZE",
        "LATIN LETTER SMALL CAPITAL S",
    ),
    "t": (
        "CYRILLIC SMALL LETTER TE",
        "GREEK SMALL LETTER TAU",
        "LATIN LETTER SMALL CAPITAL T",
    ),
    "u": (
        "GREEK SMALL LETTER UPSILON",
        "ARMENIAN SMALL LETTER SEH",
        "LATIN LETTER SMALL CAPITAL U",
    ),
    "v": (
        "GREEK SMALL LETTER NU",
        "LATIN LETTER SMALL CAPITAL V",
    ),
    "w": (
        "CYRILLIC SMALL LETTER WE",
        "GREEK SMALL LETTER OMEGA",
        "LATIN LETTER SMALL CAPITAL W",
    ),
    "x": (
        "CYRILLIC SMALL LETTER HA",
        "GREEK SMALL LETTER CHI",
    ),
    "y": (
        "CYRILLIC SMALL LETTER U",
        "GREEK SMALL LETTER GAMMA",
    ),
    "z": ("LATIN LETTER SMALL CAPITAL Z",),
    "3": ("CYRILLIC SMALL LETTER ZE",),
    "6": ("CYRILLIC SMALL LETTER BE",),
}
CONFUSABLES: dict[str, str] = {
    unicodedata.lookup(name): latin for latin, names in _CONFUSABLE_NAMES.items() for name in names
}
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf"})  # combining marks, format characters


@dataclass(frozen=True, slots=True)
class HostRefusal:
    """Why a URL's host may not be a webhook target.

    `clause` completes "url host {host} ...": "is 127.0.0.1 (loopback)", "reads as
    localhost, a loopback name, to other URL parsers or resolvers". `forbidden` is False for
    a host refused only because clients disagree on what it is, or Tidings' HTTP client
    cannot parse it (bad input rather than a forbidden target). `loopback` says whether
    TIDINGS_ALLOW_LOOPBACK_TARGETS would lift the refusal; `address` and `reason` are set
    when the host aiohttp connects to is a forbidden IP literal.
    """

    host: str
    clause: str
    forbidden: bool
    loopback: bool = False
    address: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class HostVerdict:
    """A URL host's judgement: a refusal, or the names still to resolve (each of whose
    addresses must be allowed). IP literals leave no names."""

    refusal: HostRefusal | None
    names: tuple[str, ...]


class _Special(NamedTuple):
    """A reading that spells an address, or a name with a `name_reason`."""

    target: str
    address: IPAddress | None
    reason: str | None


def _strip_dots(text: str) -> str:
    return text.rstrip(".")


def _fold(text: str) -> str:
    """NFKC case folding, the core of UTS 46's mapping, and the IDNA dots read as `.`."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return folded.translate(_DOTS)


def _decode_label(label: str) -> str:
    if label.startswith("xn--"):
        try:
            return label[4:].encode("ascii").decode("punycode")
        except (UnicodeError, ValueError):
            return label
    return label


def _skeleton_char(char: str) -> str:
    digit = unicodedata.decimal(char, None)
    if digit is not None:
        return str(digit)
    return CONFUSABLES.get(char, char)


def skeleton(host: str) -> str:
    """What `host` looks like: punycode decoded, folded, marks and format characters
    dropped, Unicode digits and look-alike letters read as ASCII ones."""
    # Look-alikes are read before folding too: NFKC turns some (the lunate sigma, which
    # looks like c) into letters that look like something else (sigma, like o).
    host = "".join(CONFUSABLES.get(c, c) for c in host)
    unicode = ".".join(_decode_label(label) for label in _fold(host).split("."))
    decomposed = unicodedata.normalize("NFD", _fold(unicode))
    kept = (c for c in decomposed if unicodedata.category(c) not in _DROPPED_CATEGORIES)
    return _strip_dots("".join(_skeleton_char(c) for c in kept))


def _raw_client_host(url: str) -> str | None:
    """The host aiohttp connects to (yarl's parse), as it is."""
    try:
        return URL(url).raw_host
    except (ValueError, TypeError):
        return None


def _client_host(url: str) -> str | None:
    host = _raw_client_host(url)
    return None if host is None else _strip_dots(host.lower())


def _canonical_ipv4(host: str) -> bool:
    """Dotted quad of decimal octets without leading zeros: the one IPv4 spelling every
    client reads alike (aiohttp refuses the decimal legacy forms, resolves the hex ones)."""
    parts = host.split(".")
    return len(parts) == 4 and all(
        p.isascii() and p.isdigit() and len(p) <= 3 and (p == "0" or p[0] != "0") and int(p) < 256
        for p in parts
    )


def _stdlib_host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname or None
    except ValueError:
        return None


def readings(url: str) -> tuple[str | None, tuple[str, ...]]:
    """The host aiohttp connects to (None if yarl cannot parse `url`), and every other
    reading of the URL's host, distinct and without the first."""
    client = _client_host(url)
    spelled = [host for host in (client, _stdlib_host(url)) if host]
    seen = {client}
    others: list[str] = []
    for host in spelled:
        decoded = unquote(host, errors="replace")
        for reading in (host, _fold(decoded), skeleton(decoded)):
            reading = _strip_dots(reading.lower())
            if reading and reading not in seen:
                seen.add(reading)
                others.append(reading)
    return client, tuple(others)


def name_reason(name: str) -> str | None:
    """What a host name (lower case, no trailing dot) names, when no public DNS answers
    for it or it means this host: `loopback`, `link-local` or `local network name`."""
    if name in _LOOPBACK_NAMES or name.endswith(_LOOPBACK_SUFFIX):
        return "loopback"
    if name in _METADATA_NAMES:
        return "link-local"
    if "." not in name or name.endswith(_LOCAL_SUFFIXES):
        return _LOCAL_NAME
    return None


def _special(reading: str) -> _Special | None:
    if not reading.isascii():
        return None  # no resolver is handed it; its folded readings are judged instead
    addr = host_literal(reading)
    if addr is not None:
        return _Special(str(addr), addr, None)
    reason = name_reason(reading)
    if reason is not None:
        return _Special(reading, None, reason)
    return None


def _refused(special: _Special, allow: Allow) -> str | None:
    """The reason `allow` does not lift for a special reading, or None."""
    if special.address is not None:
        return refused_reason(special.address, allow)
    if allow is Allow.PRIVATE or (allow is Allow.LOOPBACK and special.reason == "loopback"):
        return None
    if allow is Allow.LOOPBACK and special.reason == _LOCAL_NAME:
        return None  # resolved: what it resolves to decides
    return special.reason


def _what(special: _Special, reason: str) -> str:
    if special.address is not None:
        return f"{special.target} ({reason})"
    return "a local network name" if reason == _LOCAL_NAME else f"a {reason} name"


_ELSEWHERE = "to other URL parsers or resolvers"


def _refusal(host: str, reading: str | None, special: _Special, allow: Allow) -> HostRefusal:
    """Refuse `host` for `special`, the reading aiohttp connects to (`reading` None) or
    another one."""
    reason = _refused(special, allow)
    if reason is None and reading is None:
        return HostRefusal(host, "cannot be parsed by Tidings' HTTP client", forbidden=False)
    if reason is None:  # allowed, but not what Tidings' client would connect to
        clause = f"reads as {reading} {_ELSEWHERE} but not to Tidings' HTTP client"
        return HostRefusal(host, clause, forbidden=False)
    what = _what(special, reason)
    loopback = allow is Allow.NOTHING and _refused(special, Allow.LOOPBACK) is None
    # A local network name may resolve anywhere: only the private switch is sure to help.
    loopback = loopback and special.reason != _LOCAL_NAME
    if reading is None:
        address = None if special.address is None else special.target
        return HostRefusal(host, f"is {what}", True, loopback, address, reason)
    if special.address is not None and reading == special.target:
        clause = f"reads as {what} {_ELSEWHERE}"
    elif special.address is not None:
        clause = f"reads as {reading}, which is {what}, {_ELSEWHERE}"
    else:
        clause = f"reads as {reading}, {what}, {_ELSEWHERE}"
    return HostRefusal(host, clause, True, loopback)


def _misspelled(url: str, client: str, special: _Special | None) -> str | None:
    """Why the host aiohttp connects to is spelled so that other clients may read it
    otherwise, or None: an IPv4 address other than as a plain dotted quad (aiohttp itself
    refuses the decimal legacy forms and resolves the hex ones), or a name ending in a
    number (which WHATWG URL parsers read as IPv4, and fail on)."""
    if special is not None and isinstance(special.address, IPv4Address):
        if not _canonical_ipv4(_raw_client_host(url) or ""):
            return f"spells {special.target} in a form not every client reads alike"
    elif special is None and _NUMERIC_LABEL.fullmatch(client.rsplit(".", 1)[-1]):
        return "ends in a number but is no IPv4 address"
    return None


@lru_cache(maxsize=4096)
def judge_url(url: str, allow: Allow) -> HostVerdict:
    """Judge the host of `url` without DNS (see the module docstring).

    The order of the refusals: a forbidden address or name the host aiohttp connects to
    is; a forbidden address or name another reading is; a local network name (which says
    less); an ambiguity (another reading spells an allowed address or name, or the host
    is misspelled). A host Tidings' HTTP client (yarl) cannot parse is refused too.
    """
    if allow is Allow.PRIVATE:
        return HostVerdict(None, ())
    client, others = readings(url)
    shown = _stdlib_host(url) or client
    if shown is None:
        return HostVerdict(None, ())  # no host at all: validation's to refuse
    special = _special(client) if client else None
    fallback: HostRefusal | None = None  # a refusal a more specific reading may replace
    if special is not None and _refused(special, allow) is not None:
        refusal = _refusal(shown, None, special, allow)
        if refusal.reason != _LOCAL_NAME:
            return HostVerdict(refusal, ())
        fallback = refusal
    for reading in others:
        other = _special(reading)
        if other is None or (special is not None and other.target == special.target):
            continue  # not special, or the same address or name as the client's reading
        direct = client is None and reading == shown
        refusal = _refusal(shown, None if direct else reading, other, allow)
        if refusal.forbidden and _refused(other, allow) != _LOCAL_NAME:
            return HostVerdict(refusal, ())
        fallback = fallback or refusal
    if fallback is None and client is None:
        fallback = _refusal(shown, None, _Special(shown, None, None), allow)
    if fallback is None and client is not None:
        clause = _misspelled(url, client, special)
        if clause is not None:
            fallback = HostRefusal(shown, clause, forbidden=False)
    if fallback is not None:
        return HostVerdict(fallback, ())
    if client is None or (special is not None and special.address is not None):
        return HostVerdict(None, ())  # an allowed IP literal: nothing to resolve
    return HostVerdict(None, (client,))
