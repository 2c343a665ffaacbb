"""API key authentication for `/v1` and the compatibility calls: `Authorization: Bearer
<key>`.

Keys are compared by SHA-256 digest in constant time; the plain key is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

from tidings.api.compat import PATHS as COMPAT_PATHS
from tidings.api.errors import error_response

META_KEY = "api_key_sha256"
PROTECTED = frozenset({"/v1"}) | COMPAT_PATHS
_PROTECTED_UNDER = tuple(p + "/" for p in COMPAT_PATHS)
# The WebSocket gateway checks its own per-user token (a browser cannot send headers on
# an upgrade); the token comes from POST /v1/users/{id}/token, behind the key.
TOKEN_PATHS = frozenset({"/v1/ws"})


def digest(key: str) -> str:
    return raw_digest(key).hex()


def raw_digest(key: str) -> bytes:
    # surrogateescape: header bytes that are not UTF-8 (which aiohttp hands over as lone
    # surrogates) digest as the bytes they were, and match no key, instead of raising.
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def raw_digests(hex_digests: tuple[str, ...]) -> tuple[bytes, ...]:
    """The digests as bytes, what `refusal` compares: no hex rendering per request."""
    return tuple(bytes.fromhex(d) for d in hex_digests)


RAW_DIGESTS = web.AppKey("key_digests_raw", tuple[bytes, ...])  # raw_digests(KEY_DIGESTS)


def new_api_key() -> str:
    return "tdk_" + secrets.token_urlsafe(32)


def refusal(request: web.Request) -> web.Response | None:
    """The 401 for a request to a protected path without a valid key; None to go on."""
    path = request.path
    if path in TOKEN_PATHS or not (
        path.startswith("/v1/") or path in PROTECTED or path.startswith(_PROTECTED_UNDER)
    ):
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        return error_response(
            401,
            "unauthorized",
            "send the API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    presented = raw_digest(key.strip())
    # Every digest is compared (no early exit): the time says nothing of which key matched.
    valid = False
    for known in request.app[RAW_DIGESTS]:
        valid |= hmac.compare_digest(presented, known)
    if not valid:
        return error_response(
            401, "unauthorized", "the API key is not valid", headers={"WWW-Authenticate": "Bearer"}
        )
    return None
