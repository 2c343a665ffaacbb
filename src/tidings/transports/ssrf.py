"""The SSRF guard: webhooks must never reach loopback, private, link-local or other
internal addresses unless TIDINGS_ALLOW_PRIVATE_TARGETS=1 (or, for loopback alone,
TIDINGS_ALLOW_LOOPBACK_TARGETS=1).

Three checks, all using the policy in `tidings.policy.hosts` and `tidings.policy.addresses`:

- `target_error` (create and patch time, used by the API): judges every reading of the
  URL's host, then resolves the name aiohttp will connect to once (non-blocking, bounded
  in time) and refuses it when any address is forbidden, so a mistake is reported at once.
- `GuardedResolver` (connect time): aiohttp connects to exactly the addresses its
  resolver returns, so filtering them here defeats DNS rebinding between create time
  and delivery time.
- `check_url_now` (request time): aiohttp never calls the resolver for IP-literal hosts,
  so the transport judges the host itself (the same pure judgement as at create time)
  before each request.

Owns only refusal decisions and their messages; must never open a connection or send
anything.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from functools import lru_cache

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from tidings.policy.addresses import Allow, IPAddress, refused_reason
from tidings.policy.hosts import judge_url

__all__ = [
    "GuardedResolver",
    "TargetProblem",
    "TargetRefused",
    "check_url_now",
    "refusal_message",
    "target_error",
]

_PRIVATE_HINT = "set TIDINGS_ALLOW_PRIVATE_TARGETS=1"
_LOOPBACK_HINT = (
    "set TIDINGS_ALLOW_LOOPBACK_TARGETS=1 (loopback only) or TIDINGS_ALLOW_PRIVATE_TARGETS=1"
)
_AMBIGUOUS_HINT = "write the host the way every client reads it"


def _hint(loopback: bool) -> str:
    return _LOOPBACK_HINT if loopback else _PRIVATE_HINT


def _loopback_lifts(address: str | IPAddress, allow: Allow) -> bool:
    """Whether TIDINGS_ALLOW_LOOPBACK_TARGETS would allow `address` where `allow` does not."""
    return allow is Allow.NOTHING and refused_reason(address, Allow.LOOPBACK) is None


def refusal_message(address: str | IPAddress, reason: str, *, loopback: bool = False) -> str:
    return f"refusing to connect to {address} ({reason}); {_hint(loopback)} to allow"


class TargetRefused(OSError):
    """The guard would not connect: every address the host has is forbidden."""

    def __init__(
        self, address: str, reason: str, host: str | None = None, *, loopback: bool = False
    ) -> None:
        super().__init__(refusal_message(address, reason, loopback=loopback))
        self.address = address
        self.reason = reason
        self.host = host

    def __str__(self) -> str:
        return str(self.args[0])


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's ThreadedResolver, then drops the addresses `allow` forbids.

    Raises `TargetRefused` (an OSError, which aiohttp wraps in ClientConnectorDNSError)
    when nothing is left. Public addresses of a host survive even if it also has private
    ones.
    """

    def __init__(self, inner: AbstractResolver | None = None, allow: Allow = Allow.NOTHING) -> None:
        self._inner = inner if inner is not None else ThreadedResolver()
        self._allow = allow

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept: list[ResolveResult] = []
        first_refused: tuple[str, str] | None = None
        for result in results:
            reason = refused_reason(result["host"], self._allow)
            if reason is None:
                kept.append(result)
            elif first_refused is None:
                first_refused = (result["host"], reason)
        if not kept:
            if first_refused is None:
                raise TargetRefused(host, "resolves to no addresses", host)
            address, reason = first_refused
            loopback = _loopback_lifts(address, self._allow)
            raise TargetRefused(address, reason, host, loopback=loopback)
        return kept

    async def close(self) -> None:
        await self._inner.close()


@lru_cache(maxsize=4096)
def _check_url_now(url: str, allow: Allow) -> str | None:
    refusal = judge_url(url, allow).refusal
    if refusal is None:
        return None
    if not refusal.forbidden:
        return f"refusing to connect to {refusal.host}: it {refusal.clause}; {_AMBIGUOUS_HINT}"
    if refusal.address is not None and refusal.reason is not None:
        return refusal_message(refusal.address, refusal.reason, loopback=refusal.loopback)
    hint = _hint(refusal.loopback)
    return f"refusing to connect to {refusal.host}: it {refusal.clause}; {hint} to allow"


def check_url_now(url: str, *, allow: Allow = Allow.NOTHING) -> str | None:
    """A refusal message if `url`'s host may not be reached, judged without DNS, else None.

    Names that judgement leaves are `GuardedResolver`'s. A URL that does not parse is left
    to the HTTP client to reject.
    """
    return _check_url_now(url, allow)


@dataclass(frozen=True, slots=True)
class TargetProblem:
    """Why a URL may not be a webhook target: `forbidden_target`, or `invalid_field` for a
    host that some clients would read otherwise than Tidings' HTTP client does."""

    code: str
    message: str


def _forbidden(field: str, host: str, clause: str, loopback: bool) -> TargetProblem:
    return TargetProblem(
        "forbidden_target",
        f"{field} host {host} {clause}, which webhooks may not target; "
        f"{_hint(loopback)} for development",
    )


async def _addresses(
    resolver: AbstractResolver, host: str, port: int | None, timeout_s: float
) -> list[str]:
    """The addresses `host` resolves to now; none when it does not resolve within
    `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            results = await resolver.resolve(host, port or 0, socket.AF_UNSPEC)
    except (OSError, TimeoutError, UnicodeError):
        return []
    return [result["host"] for result in results]


async def target_error(
    url: str,
    *,
    allow_private: bool,
    allow_loopback: bool = False,
    timeout_s: float = 2.0,
    resolver: AbstractResolver | None = None,
    field: str = "url",
) -> TargetProblem | None:
    """Why `url` must not be a webhook target, or None (create and patch time).

    Refuses hosts `tidings.policy.hosts` refuses (IP literals in any spelling, loopback
    and local network names, ambiguous hosts) without DNS, then names any of whose
    addresses is forbidden, resolved through `resolver` (default: aiohttp's
    ThreadedResolver, the event loop's non-blocking getaddrinfo, as at connect time). A
    name that does not resolve (or not within `timeout_s`) is accepted: the connect-time
    resolver still guards it. Messages begin "{field} host ...".
    """
    allow = Allow.of(private=allow_private, loopback=allow_loopback)
    if allow is Allow.PRIVATE:
        return None
    verdict = judge_url(url, allow)
    refusal = verdict.refusal
    if refusal is not None:
        if not refusal.forbidden:
            message = f"{field} host {refusal.host} {refusal.clause}: {_AMBIGUOUS_HINT}"
            return TargetProblem("invalid_field", message)
        return _forbidden(field, refusal.host, refusal.clause, refusal.loopback)
    if not verdict.names:
        return None
    port = URL(url).port  # judge_url parsed it already
    inner = resolver if resolver is not None else ThreadedResolver()
    found = await asyncio.gather(*(_addresses(inner, n, port, timeout_s) for n in verdict.names))
    for name, addresses in zip(verdict.names, found, strict=True):
        for address in addresses:
            reason = refused_reason(address, allow)
            if reason is not None:
                clause = f"resolves to {address} ({reason})"
                return _forbidden(field, name, clause, _loopback_lifts(address, allow))
    return None
