"""The SSRF guard: webhooks must never reach loopback, private, link-local or other
internal addresses unless TIDINGS_ALLOW_PRIVATE_TARGETS=1.

Three checks, all using the policy in `tidings.policy.addresses`:

- `target_error` (create time, used by the API): resolves the URL's host once and
  refuses it when any address is forbidden, so a mistake is reported to the user at once.
- `GuardedResolver` (connect time): aiohttp connects to exactly the addresses its
  resolver returns, so filtering them here defeats DNS rebinding between create time
  and delivery time.
- `check_url_now` (request time): aiohttp never calls the resolver for IP-literal hosts,
  so the transport checks literals itself before each request.

Owns only refusal decisions; must never open a connection or send anything.
"""

from __future__ import annotations

import asyncio
import socket
from functools import lru_cache

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from tidings.policy.addresses import IPAddress, forbidden_reason, host_literal

__all__ = [
    "ALLOW_HINT",
    "GuardedResolver",
    "TargetRefused",
    "check_url_now",
    "refusal_message",
    "target_error",
]

ALLOW_HINT = "set TIDINGS_ALLOW_PRIVATE_TARGETS=1 to allow"


def refusal_message(address: str | IPAddress, reason: str) -> str:
    return f"refusing to connect to {address} ({reason}); {ALLOW_HINT}"


class TargetRefused(OSError):
    """The guard would not connect: every address the host has is forbidden."""

    def __init__(self, address: str, reason: str, host: str | None = None) -> None:
        super().__init__(refusal_message(address, reason))
        self.address = address
        self.reason = reason
        self.host = host

    def __str__(self) -> str:
        return str(self.args[0])


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's ThreadedResolver, then drops forbidden addresses.

    Raises `TargetRefused` (an OSError, which aiohttp wraps in ClientConnectorDNSError)
    when nothing is left. Public addresses of a host survive even if it also has private
    ones.
    """

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept: list[ResolveResult] = []
        first_refused: tuple[str, str] | None = None
        for result in results:
            reason = forbidden_reason(result["host"])
            if reason is None:
                kept.append(result)
            elif first_refused is None:
                first_refused = (result["host"], reason)
        if not kept:
            if first_refused is None:
                raise TargetRefused(host, "resolves to no addresses", host)
            raise TargetRefused(first_refused[0], first_refused[1], host)
        return kept

    async def close(self) -> None:
        await self._inner.close()


@lru_cache(maxsize=4096)
def check_url_now(url: str) -> str | None:
    """A refusal message if `url`'s host is a forbidden IP literal, else None.

    No DNS: names are left to `GuardedResolver`. A URL that does not parse is left to
    the HTTP client to reject.
    """
    try:
        host = URL(url).raw_host
    except (ValueError, TypeError):
        return None
    if host is None:
        return None
    addr = host_literal(host)
    if addr is None:
        return None
    reason = forbidden_reason(addr)
    return None if reason is None else refusal_message(addr, reason)


def _is_localhost_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def _target_message(host: str, address: str | IPAddress, reason: str) -> str:
    return (
        f"url host {host} resolves to {address} ({reason}), which webhooks may not "
        "target; set TIDINGS_ALLOW_PRIVATE_TARGETS=1 for development"
    )


async def target_error(url: str, *, allow_private: bool, timeout_s: float = 2.0) -> str | None:
    """Why `url` must not be a webhook target, or None (create-time check).

    Refuses forbidden IP literals, `localhost` and `*.localhost` (RFC 6761) without DNS,
    and names any of whose addresses is forbidden. A name that does not resolve (or not
    within `timeout_s`) is accepted: the connect-time resolver still guards it.
    """
    if allow_private:
        return None
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return None
    host = parsed.raw_host
    if not host:
        return None
    addr = host_literal(host)
    if addr is not None:
        reason = forbidden_reason(addr)
        if reason is None:
            return None
        return (
            f"url host {host} is {addr} ({reason}), which webhooks may not target; "
            "set TIDINGS_ALLOW_PRIVATE_TARGETS=1 for development"
        )
    if _is_localhost_name(host):
        return _target_message(host, "127.0.0.1", "loopback")  # RFC 6761: always loopback
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(host, parsed.port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError):
        return None
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        reason = forbidden_reason(address)
        if reason is not None:
            return _target_message(host, address, reason)
    return None
