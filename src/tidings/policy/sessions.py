"""Dashboard sessions and CSRF tokens (issue 17): signing and checking, no I/O.

A session token is `expires.nonce.keytag.mac`: `mac` is an HMAC-SHA256 of the rest under
a secret the store keeps (so every API process sharing a database accepts it), and
`keytag` an HMAC of the digest of the API key that signed in, so a key taken out of
service ends its sessions. The CSRF token is derived from the session token: a form or a
script of the dashboard's own page knows it, another site's page does not. Owns only
that arithmetic; must never see a plain API key or read a clock (callers pass `now`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class Session:
    token: str
    nonce: str
    key_tag: str
    expires_at: int  # seconds since the epoch


def _mac(secret: bytes, text: str) -> str:
    raw = hmac.new(secret, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def key_tag(secret: bytes, key_digest: str) -> str:
    """A short tag naming an API key (by its digest) without revealing the digest."""
    return _mac(secret, "key:" + key_digest)[:22]


def sign_session(secret: bytes, tag: str, nonce: str, expires_at: int) -> str:
    body = f"{expires_at}.{nonce}.{tag}"
    return f"{body}.{_mac(secret, 'session:' + body)}"


def check_session(secret: bytes, token: str, now: int) -> Session | None:
    """The session a token names, or None when it is forged, malformed or expired."""
    parts = token.split(".")
    if len(parts) != 4 or not parts[0].isdigit():
        return None
    body = ".".join(parts[:3])
    if not hmac.compare_digest(_mac(secret, "session:" + body), parts[3]):
        return None
    expires_at = int(parts[0])
    if expires_at <= now:
        return None
    return Session(token=token, nonce=parts[1], key_tag=parts[2], expires_at=expires_at)


def csrf_token(secret: bytes, session_token: str) -> str:
    return _mac(secret, "csrf:" + session_token)


def csrf_ok(secret: bytes, session_token: str, presented: str) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(secret, session_token), presented)
