"""WebSocket tokens: `<user, base64url>.<expires_at, unix s>.<HMAC-SHA256, base64url>`.

A token names one user and an expiry, signed with the server's secret, so any API
process sharing the secret (it is kept in the store) checks it without a lookup. Pure:
the caller passes the secret and the clock; must never log or return the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

MAX_TOKEN_LENGTH = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, user_b64: str, expires_at: int) -> str:
    return _b64(hmac.new(secret, f"{user_b64}.{expires_at}".encode(), hashlib.sha256).digest())


def sign(secret: bytes, user_id: str, expires_at: int) -> str:
    user_b64 = _b64(user_id.encode())
    return f"{user_b64}.{expires_at}.{_mac(secret, user_b64, expires_at)}"


def verify(secret: bytes, token: str, user_id: str, now: int) -> str | None:
    """None when `token` is a live token of `user_id`; else why not (for the 401)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return "missing or malformed token"
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return "malformed token"
    user_b64, expires, mac = parts
    if not hmac.compare_digest(mac, _mac(secret, user_b64, int(expires))):
        return "the token's signature is not valid"
    try:
        named = _unb64(user_b64).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return "malformed token"
    if named != user_id:
        return "the token is for another user"
    if int(expires) <= now:
        return "the token has expired"
    return None
