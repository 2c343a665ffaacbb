"""The dashboard's sign-in: the session cookie, its CSRF token, and the guard of pages.

A browser signs in once with an API key (a form POST); it then holds an HttpOnly,
SameSite=Strict cookie signed with a secret the store keeps (policy/sessions.py), and
every POST of a page carries the CSRF token derived from it (a hidden field, or the
`X-CSRF-Token` header from dashboard.js). The `/v1` API never reads this cookie: it keeps
its Bearer keys. Owns the cookie and the guard; must never put a key in a URL, a page or
a log line.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from tidings.api.auth import digest
from tidings.api.keys import KEY_DIGESTS, STORE
from tidings.policy.sessions import (
    Session,
    check_session,
    csrf_ok,
    csrf_token,
    key_tag,
    sign_session,
)

log = logging.getLogger(__name__)
COOKIE = "tidings_session"
SESSION_TTL_S = 8 * 3600  # a working day; then the sign-in form again
SIGN_OUT_MARGIN_S = 300  # a sign-out is kept this long past its cookie's expiry
META_SECRET = "dashboard_session_secret"
SECRET = web.AppKey("dashboard_secret", bytearray)
# Nonces known to be signed out, until their cookie would have expired anyway: those
# signed out here, and those another process signed out, once seen in the store.
REVOKED = web.AppKey("dashboard_revoked", dict[str, int])
# + the nonce: a meta row per sign-out (its value the cookie's expiry), read by every API
# process before it lets a session through, so a copied cookie dies everywhere at once.
SIGNED_OUT = "dashboard_signed_out:"
# The session the guard let through, for the page it renders.
GUARDED = web.RequestKey("tidings_dashboard_session", Session)

Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def load_secret(app: web.Application) -> None:
    """The signing secret: made once, kept in the store, shared by every API process."""
    value = await app[STORE].set_meta_if_absent(META_SECRET, secrets.token_hex(32))
    app[SECRET][:] = bytes.fromhex(value)


def _now() -> int:
    return int(time.time())


def current_session(request: web.Request) -> Session | None:
    token = request.cookies.get(COOKIE, "")
    secret = bytes(request.app[SECRET])
    if not token or not secret:
        return None
    session = check_session(secret, token, _now())
    if session is None or session.nonce in request.app[REVOKED]:
        return None
    # The key that signed in must still be one of the process's keys.
    tags = {key_tag(secret, d) for d in request.app[KEY_DIGESTS]}
    if not any(hmac.compare_digest(session.key_tag, t) for t in tags):
        return None
    return session


def key_is_valid(request: web.Request, key: str) -> str | None:
    """The digest of `key` when it is one of this process's API keys."""
    presented = digest(key.strip())
    for d in request.app[KEY_DIGESTS]:
        if hmac.compare_digest(presented, d):
            return d
    return None


def start_session(request: web.Request, response: web.StreamResponse, key_digest: str) -> None:
    secret = bytes(request.app[SECRET])
    token = sign_session(
        secret, key_tag(secret, key_digest), secrets.token_urlsafe(16), _now() + SESSION_TTL_S
    )
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


async def session_of(request: web.Request) -> Session | None:
    """`current_session`, unless the session was signed out in any process."""
    session = current_session(request)
    if session is None:
        return None
    if await request.app[STORE].get_meta(SIGNED_OUT + session.nonce) is not None:
        request.app[REVOKED][session.nonce] = session.expires_at
        return None
    return session


async def end_session(request: web.Request, response: web.StreamResponse) -> None:
    session = current_session(request)
    if session is not None:
        store = request.app[STORE]
        await store.set_meta_if_absent(SIGNED_OUT + session.nonce, str(session.expires_at))
        now = _now()
        revoked = request.app[REVOKED]
        for nonce, until in list(revoked.items()):
            if until <= now:
                del revoked[nonce]
        revoked[session.nonce] = session.expires_at
        # Sign-outs of cookies that have expired anyway are facts no one needs any more,
        # once every process's clock agrees they have (a margin for clocks that lag).
        try:
            await store.delete_expired_meta(SIGNED_OUT, now - SIGN_OUT_MARGIN_S)
        except Exception:
            log.warning("could not purge expired dashboard sign-outs", exc_info=True)
    response.del_cookie(COOKIE, path="/")


def page_session(request: web.Request) -> Session | None:
    """The session of the page being rendered: the one the guard let through, else (a
    page outside the guard, such as the sign-in form) the cookie's, checked here."""
    guarded = request.get(GUARDED)
    return guarded if guarded is not None else current_session(request)


def csrf_of(request: web.Request) -> str:
    session = page_session(request)
    if session is None:
        return ""
    return csrf_token(bytes(request.app[SECRET]), session.token)


def signin_url(request: web.Request) -> str:
    return "/ui/signin?next=" + quote(request.path_qs, safe="")


def page(handler: Page) -> Page:
    """A page behind the session: without one, a GET goes to the sign-in form (an
    EventSource or a script gets a 401); a POST without its CSRF token is a 403."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        session = await session_of(request)
        if session is None:
            if request.method == "GET" and "text/event-stream" not in request.headers.get(
                "Accept", ""
            ):
                raise web.HTTPSeeOther(signin_url(request))
            return web.Response(status=401, text="sign in first: /ui/signin")
        if request.method == "POST":
            presented = request.headers.get("X-CSRF-Token", "")
            if not presented and request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                presented = str((await request.post()).get("csrf", ""))
            if not csrf_ok(bytes(request.app[SECRET]), session.token, presented):
                return web.Response(
                    status=403, text="the form's CSRF token is missing or wrong: reload the page"
                )
        request[GUARDED] = session
        return await handler(request)

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded
