"""Bus destinations' rules: their URLs, the operator's allow-list, NATS subject templates.

A bus URL (`redis://`, `rediss://`, `nats://`, `tls://`) names the operator's own server,
so the SSRF guard does not judge it; instead it must match an entry of
`TIDINGS_BUS_ALLOWED_URLS` (comma-separated `scheme://host:port` prefixes: the same
scheme, host and port, and the entry's path, if any, a prefix of the URL's). With the
setting unset every bus URL is refused. Hosts are read the way the bus clients read them
(`urllib.parse`), and only plain ASCII hosts are accepted, so the reading that is checked
is the one that connects. Credentials (`redis://:password@host`, `nats://user:pass@host`)
may be in a URL; they never take part in matching, and callers mask them
(`policy.redaction.mask_credentials`) wherever a URL is shown.

A NATS subject may hold `{topic}` and `{key}`: the topic goes in as it is (its dots make
subject tokens), the key as one token, with every character but letters, digits, `_` and
`-` percent-encoded (`%2E` for a dot) and an empty key as `_`.

Pure: never resolves a name or opens a socket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "ALLOWED_SETTING",
    "BusPrefix",
    "bus_url_error",
    "forbidden_error",
    "name_error",
    "parse_allowed",
    "render_subject",
    "subject_error",
]

ALLOWED_SETTING = "TIDINGS_BUS_ALLOWED_URLS"
# The schemes each kind's client speaks, and the port it uses when a URL names none.
SCHEMES: dict[str, dict[str, int]] = {
    "redis_stream": {"redis": 6379, "rediss": 6379},
    "redis_channel": {"redis": 6379, "rediss": 6379},
    "nats": {"nats": 4222, "tls": 4222},
}
DEFAULT_PORTS = {scheme: port for ports in SCHEMES.values() for scheme, port in ports.items()}
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.?)+$|^\[[0-9A-Fa-f:.]+\]$")
_REDIS_DB = re.compile(r"^/?(?:\d{1,5})?$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PLACEHOLDERS = frozenset({"topic", "key"})
_KEY_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_EMPTY_KEY = "_"


@dataclass(frozen=True, slots=True)
class BusPrefix:
    """One entry of the allow-list."""

    scheme: str
    host: str  # lower case; an IPv6 literal without brackets
    port: int
    path: str  # "" or the path the URL's must start with

    def admits(self, parts: SplitResult) -> bool:
        scheme = parts.scheme.lower()
        if scheme != self.scheme or (parts.hostname or "") != self.host:
            return False
        if (parts.port or DEFAULT_PORTS.get(scheme)) != self.port:
            return False
        path = parts.path.rstrip("/")
        return not self.path or path == self.path or path.startswith(self.path + "/")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def _split(url: str) -> SplitResult | str:
    """The parts of `url`, or why it cannot be a bus URL at all."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        return f"is not a valid URL: {exc}"
    if not parts.hostname:
        return "must name a host"
    netloc_host = parts.netloc.rpartition("@")[2]
    if netloc_host.startswith("["):
        netloc_host = netloc_host[: netloc_host.find("]") + 1]
    else:
        netloc_host = netloc_host.partition(":")[0]
    if not netloc_host.isascii() or not _HOST.match(netloc_host):
        return "must name its host in plain ASCII (a name or an IP address)"
    return parts


def bus_url_error(url: str, kind: str) -> str | None:
    """Why `url` cannot be the URL of a `kind` destination (its syntax), or None."""
    schemes = SCHEMES[kind]
    parts = _split(url)
    if isinstance(parts, str):
        return parts
    if parts.scheme.lower() not in schemes:
        return "must be a " + " or ".join(f"{s}://" for s in schemes) + " URL"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a ?query or #fragment (put a password in the user-info)"
    if kind.startswith("redis_"):
        if not _REDIS_DB.match(parts.path):
            return "may only have a database number as its path (redis://host:6379/0)"
    elif parts.path not in ("", "/"):
        return "must not have a path"
    return None


def parse_allowed(text: str | None) -> tuple[BusPrefix, ...]:
    """The entries of `TIDINGS_BUS_ALLOWED_URLS`; ValueError names a bad one."""
    prefixes = []
    for raw in (text or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        parts = _split(entry)
        if isinstance(parts, str):
            raise ValueError(f"{entry!r} {parts}")
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"{entry!r} must start with one of {', '.join(DEFAULT_PORTS)}://")
        if parts.username or parts.password:
            raise ValueError("an entry must not carry credentials (scheme://host:port)")
        if parts.query or parts.fragment:
            raise ValueError(f"{entry!r} must be scheme://host:port, without ?query or #fragment")
        path = parts.path.rstrip("/")
        prefixes.append(
            BusPrefix(
                scheme=scheme,
                host=parts.hostname or "",
                port=parts.port or DEFAULT_PORTS[scheme],
                path=path,
            )
        )
    return tuple(prefixes)


def forbidden_error(url: str, allowed: tuple[BusPrefix, ...]) -> str | None:
    """Why the operator's allow-list refuses `url` (never showing its credentials), or
    None when an entry admits it. `url` passed `bus_url_error` already."""
    if not allowed:
        return (
            f"bus destinations are refused: {ALLOWED_SETTING} is not set (set it to the "
            "scheme://host:port of your own servers, comma-separated)"
        )
    parts = _split(url)
    if isinstance(parts, str):
        return f"url {parts}"
    if any(prefix.admits(parts) for prefix in allowed):
        return None
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    return (
        f"url {parts.scheme.lower()}://{host}:{port} is not in {ALLOWED_SETTING} "
        f"({', '.join(str(p) for p in allowed)})"
    )


def name_error(name: str) -> str | None:
    """Why `name` cannot be a Redis stream or channel name, or None."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "must not hold control characters"
    return None


def subject_error(template: str) -> str | None:
    """Why `template` cannot be a NATS subject to publish to, or None."""
    for m in _PLACEHOLDER.finditer(template):
        if m[1] not in _PLACEHOLDERS:
            return f"may only use the placeholders {{topic}} and {{key}}, not {m[0]}"
    bare = _PLACEHOLDER.sub("x", template)
    if "{" in bare or "}" in bare:
        return "has an unmatched { or }"
    if any(c.isspace() for c in bare):
        return "must not hold whitespace"
    tokens = bare.split(".")
    if any(not t for t in tokens):
        return "must be non-empty tokens separated by single dots"
    if any(t in ("*", ">") or "*" in t or ">" in t for t in tokens):
        return "must not hold the wildcards * or > (a publish names one subject)"
    return None


def _key_token(key: str) -> str:
    if not key:
        return _EMPTY_KEY
    if all(c in _KEY_SAFE for c in key):
        return key
    return "".join(c if c in _KEY_SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in key)


def render_subject(template: str, topic: str, key: str) -> str:
    """The subject to publish an event of `topic` and `key` to; `template` passed
    `subject_error`."""
    if "{" not in template:
        return template
    return _PLACEHOLDER.sub(lambda m: topic if m[1] == "topic" else _key_token(key), template)
