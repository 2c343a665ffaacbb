"""Webhook secrets and Standard Webhooks signatures.

`v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">` keyed with the base64 part of a
`whsec_` secret, as the Standard Webhooks spec defines. Owns secret generation and
signing; must never do I/O.
"""

from __future__ import annotations

import base64
import hmac
import secrets as _secrets
from functools import lru_cache

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(SECRET_BYTES)).decode()


@lru_cache(maxsize=1024)  # a sender signs with the same few secrets over and over
def secret_key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(raw)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,` signature over exactly the bytes sent."""
    # hmac.digest is OpenSSL's one-shot HMAC: no Python-level HMAC object per request.
    digest = hmac.digest(
        secret_key(secret), b"%s.%d.%s" % (msg_id.encode(), timestamp, body), "sha256"
    )
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Space-separated signatures, one per live secret (rotation grace period)."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)
