"""What the Redis transports (`redis_stream`, `redis_channel`) share: one pooled client
per URL, and one attempt's run from allow-list check to classified result.

`RedisClients` keeps a `redis.asyncio` client per URL over a blocking pool (at most
`max_connections` connections, reconnected on next use after the server went away:
nothing to re-establish by hand after a restart). Clients never retry a command
themselves: a retry is the engine's, counted and backed off like any failed attempt.
`RedisTransport.deliver` checks the allow-list, bounds the attempt by the destination's
timeout and turns what happened into an `AttemptResult`; a subclass says which command
one delivery is (`_send`, answering the reply to keep). Must never apply retry policy or
raise for a delivery failure; error texts never carry a URL's credentials.
"""

from __future__ import annotations

import abc
import asyncio
from typing import TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout

from tidings.model import (
    AttemptOutcome,
    AttemptResult,
    Claim,
    Destination,
    RedisChannelSpec,
    RedisStreamSpec,
)
from tidings.policy.buses import BusPrefix
from tidings.policy.redaction import mask_credentials
from tidings.transports.bus import BusTransport

__all__ = ["RedisClients", "RedisTransport"]

CONNECT_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 64  # per URL: a destination's max_in_flight beyond it waits for one

S = TypeVar("S", RedisStreamSpec, RedisChannelSpec)  # the kinds this base sends


class RedisClients:
    """A `redis.asyncio` client per URL, made on first use."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        self._max_connections = max_connections
        self._clients: dict[str, Redis] = {}

    def get(self, url: str) -> Redis:
        client = self._clients.get(url)
        if client is None:
            pool = BlockingConnectionPool.from_url(
                url,
                max_connections=self._max_connections,
                timeout=None,  # the attempt's own timeout bounds the wait for a connection
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
            )
            client = self._clients[url] = Redis(connection_pool=pool)
        return client

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose(close_connection_pool=True)


class RedisTransport(BusTransport[S], abc.ABC):
    """One Redis command per delivery."""

    def __init__(self, allowed: tuple[BusPrefix, ...], clients: RedisClients | None = None):
        super().__init__(allowed)
        self._clients = clients or RedisClients()

    async def close(self) -> None:
        await self._clients.close()

    @abc.abstractmethod
    async def _send(self, client: Redis, claim: Claim, spec: S) -> str:
        """Run the delivery's command; answer the reply to keep with the attempt."""

    async def deliver(self, claim: Claim, destination: Destination) -> AttemptResult:
        spec, attempt, refused = self.begin(destination)
        if refused is not None:
            return refused
        timeout_s = spec.timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout_s):
                reply = await self._send(self._clients.get(spec.url), claim, spec)
        except TimeoutError:
            return attempt.timed_out(spec.url, timeout_s, "Redis")
        except RedisError as exc:
            return attempt.failed(*_failure(exc, spec.url))
        except OSError as exc:
            return attempt.failed("connection_error", f"Redis {mask_credentials(spec.url)}: {exc}")
        return attempt.delivered(reply)


def _failure(exc: RedisError, url: str) -> tuple[AttemptOutcome, str]:
    """(outcome, error) for what redis-py raised."""
    where = mask_credentials(url)
    text = str(exc) or type(exc).__name__
    # AuthenticationError is a ConnectionError: a wrong password is the server refusing.
    if isinstance(exc, ResponseError | AuthenticationError):
        return "rejected", f"Redis {where} answered: {text}"
    if isinstance(exc, RedisTimeout):
        return "timeout", f"Redis {where}: {text}"
    if isinstance(exc, RedisConnectionError):
        return "connection_error", f"Redis {where}: {text}"
    return "rejected", f"Redis {where}: {type(exc).__name__}: {text}"
