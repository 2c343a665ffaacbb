"""What the Redis transports (`redis_stream`, `redis_channel`) share: one pooled client
per URL, concurrent deliveries' commands sent together, and one attempt's run from
allow-list check to classified result.

`RedisClients` keeps a `redis.asyncio` client per URL over a blocking pool (at most
`max_connections` connections, reconnected on next use after the server went away:
nothing to re-establish by hand after a restart), and a `Pipeliner` per URL: the commands
of every delivery that starts in one turn of the event loop go as one pipeline (one
write, one round trip, one pool checkout) and each delivery gets its own reply or error
back, so a rejected command fails only its own attempt. Clients never retry a command
themselves: a retry is the engine's, counted and backed off like any failed attempt.
`RedisTransport.deliver` checks the allow-list, bounds the attempt by the destination's
timeout and turns what happened into an `AttemptResult`; a subclass says which command
one delivery is (`_command`) and what of its reply to keep (`_reply`). Must never apply
retry policy or raise for a delivery failure; error texts never carry a URL's
credentials.
"""

from __future__ import annotations

import abc
import asyncio
from typing import Any, TypeVar

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
MAX_CONNECTIONS = 64  # per URL: pipelines in flight beyond it wait for a connection
PIPELINE_MOST = 500  # commands per pipeline; more in one turn start another pipeline

S = TypeVar("S", RedisStreamSpec, RedisChannelSpec)  # the kinds this base sends


# A command waiting for its pipeline: (command, timeout_s, deadline on the loop's clock,
# the future its attempt awaits).
_Waiting = tuple[tuple[Any, ...], float, float, "asyncio.Future[Any]"]


class Pipeliner:
    """Sends the commands handed to it in one turn of the event loop as pipelines of up
    to PIPELINE_MOST, one per timeout among them, each cut at the earliest deadline of its
    commands: no command goes out after its attempt gave up on it (the wait for a pool
    connection included), and a server that stopped answering frees the connection
    (redis-py drops a cancelled one)."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._waiting: list[_Waiting] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def send(self, command: tuple[Any, ...], timeout_s: float) -> asyncio.Future[Any]:
        """The command's reply (or its error) once its pipeline came back."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            reply.set_exception(RedisConnectionError("the transport closed"))
            return reply
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.append((command, timeout_s, loop.time() + timeout_s, reply))
        return reply

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        by_timeout: dict[float, list[_Waiting]] = {}
        for item in waiting:
            by_timeout.setdefault(item[1], []).append(item)
        for group in by_timeout.values():
            for i in range(0, len(group), PIPELINE_MOST):
                task = asyncio.create_task(self._run(group[i : i + PIPELINE_MOST]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Waiting]) -> None:
        try:
            async with asyncio.timeout_at(min(deadline for _, _, deadline, _ in batch)):
                async with self._client.pipeline(transaction=False) as pipe:
                    for command, _, _, _ in batch:
                        pipe.execute_command(*command)
                    replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:  # closing: each attempt fails (and is retried later)
            _fail(batch, RedisConnectionError("the transport closed"))
            raise
        except Exception as exc:  # the whole pipeline failed (a bug too: never left hanging)
            _fail(batch, exc)
            return
        for (_, _, _, reply), answer in zip(batch, replies, strict=True):
            if reply.done():  # its attempt timed out (and was cancelled) first
                continue
            if isinstance(answer, Exception):
                reply.set_exception(answer)
            else:
                reply.set_result(answer)

    async def close(self) -> None:
        self._closed = True
        waiting, self._waiting = self._waiting, []
        _fail(waiting, RedisConnectionError("the transport closed"))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _fail(batch: list[_Waiting], exc: BaseException) -> None:
    for _, _, _, reply in batch:
        if not reply.done():
            reply.set_exception(exc)


class RedisClients:
    """A `redis.asyncio` client and its `Pipeliner` per URL, made on first use."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        self._max_connections = max_connections
        self._clients: dict[str, Redis] = {}
        self._pipeliners: dict[str, Pipeliner] = {}

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

    def pipeliner(self, url: str) -> Pipeliner:
        found = self._pipeliners.get(url)
        if found is None:
            found = self._pipeliners[url] = Pipeliner(self.get(url))
        return found

    async def close(self) -> None:
        pipeliners, self._pipeliners = self._pipeliners, {}
        for pipeliner in pipeliners.values():
            await pipeliner.close()
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose(close_connection_pool=True)


class RedisTransport(BusTransport[S], abc.ABC):
    """One Redis command per delivery, pipelined with the others of its turn."""

    def __init__(self, allowed: tuple[BusPrefix, ...], clients: RedisClients | None = None):
        super().__init__(allowed)
        self._clients = clients or RedisClients()

    async def close(self) -> None:
        await self._clients.close()

    @abc.abstractmethod
    def _command(self, claim: Claim, spec: S) -> tuple[Any, ...]:
        """The delivery's command, as redis-py's `execute_command` takes it."""

    @abc.abstractmethod
    def _reply(self, reply: Any) -> str:
        """What of the command's reply to keep with the attempt."""

    async def deliver(self, claim: Claim, destination: Destination) -> AttemptResult:
        spec, attempt, refused = self.begin(destination)
        if refused is not None:
            return refused
        timeout_s = spec.timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout_s):
                reply = await self._clients.pipeliner(spec.url).send(
                    self._command(claim, spec), timeout_s
                )
        except TimeoutError:
            return attempt.timed_out(spec.url, timeout_s, "Redis")
        except RedisError as exc:
            return attempt.failed(*_failure(exc, spec.url))
        except OSError as exc:
            return attempt.failed("connection_error", f"Redis {mask_credentials(spec.url)}: {exc}")
        return attempt.delivered(self._reply(reply))


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
