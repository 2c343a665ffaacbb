"""What must never reach a log line, and how it is blotted out of any text.

`redact` replaces signing secrets (`whsec_…`), API keys (`tdk_…`), the credentials of
Authorization headers (Bearer, Basic, or any scheme after `Authorization:`), and the
user-info, query and fragment of any URL (`scheme://user:pass@host/path?token=…`: any of
those may carry a token) with `***`. The log formatters run every line through it, so a
secret that reaches a message, an extra field or a traceback is still never written.
Text without any trigger costs one regex search. `mask_credentials` masks only a URL's
user-info (a bus URL's password or token), for answers that must show the rest of the
URL. Must never do I/O.
"""

from __future__ import annotations

import re

MASK = "***"

# Anything that may start a secret; text without one is returned as is.
_TRIGGER = re.compile(r"whsec_|tdk_|://|authorization|bearer|basic\s", re.IGNORECASE)
_SECRET = re.compile(r"(whsec|tdk)_[A-Za-z0-9+/=_.\-]+")
_AUTH_HEADER = re.compile(
    r"((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)"  # the header name and separator
    r"(?:[A-Za-z][\w.\-]*\s+)?"  # a scheme, if any (Bearer, Basic, Token, ...)
    r"[^\s'\",;}]+",  # the credentials
    re.IGNORECASE,
)
_AUTH_SCHEME = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9+/=_.~\-]{4,}", re.IGNORECASE)
# scheme://[userinfo@]host[:port][/path][?query][#fragment], up to a quote, a space or a
# backslash, except a JSON \uXXXX escape (so an escaped character neither splits a URL
# nor ends it early, leaving the rest of a token behind).
_U = r"\\u[0-9a-fA-F]{4}"
_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)"
    rf"(?:(?:[^\s/?#@'\"<>\\]|{_U})*@)?"  # userinfo: dropped
    rf"(?P<host>(?:[^\s/?#'\"<>\\]|{_U})*)"
    rf"(?P<path>/(?:[^\s?#'\"<>\\]|{_U})*)?"
    rf"(?P<rest>[?#](?:[^\s'\"<>\\]|{_U})*)?"
)


def _url(m: re.Match[str]) -> str:
    out = m["scheme"] + m["host"] + (m["path"] or "")
    if m["rest"]:
        out += m["rest"][0] + MASK
    return out


def redact(text: str) -> str:
    """`text` with every secret, key, credential and URL token replaced by `***`."""
    if not _TRIGGER.search(text):
        return text
    text = _SECRET.sub(lambda m: f"{m[1]}_{MASK}", text)
    text = _AUTH_HEADER.sub(lambda m: m[1] + MASK, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m[1]} {MASK}", text)
    return _URL.sub(_url, text)


_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#@]*@")


def mask_credentials(url: str) -> str:
    """`url` with its user-info, if any, replaced by `***`: `redis://:pw@h:6379/0` ->
    `redis://***@h:6379/0` (a user name may be a token, so it goes too)."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", url, count=1)
