"""Which transport sends each destination kind: built from the settings, started and
closed together.

`build_transports` makes one transport per kind in `FACTORIES` (one module per kind under
`tidings.transports`); the engine looks a destination's kind up here and never names a
kind itself. Must never send anything itself or apply policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from tidings.model import DestinationKind
from tidings.policy.buses import BusPrefix
from tidings.transports.base import AlertSender, Transport
from tidings.transports.nats_jetstream import NatsJetStream
from tidings.transports.redis_channel import RedisChannels
from tidings.transports.redis_stream import RedisStreams
from tidings.transports.senders import SenderPool
from tidings.transports.webhook import Webhooks

__all__ = ["FACTORIES", "PULL_KINDS", "TransportOptions", "Transports", "build_transports"]


@dataclass(frozen=True)
class TransportOptions:
    """What transports need to know of the settings."""

    allow_private: bool = False  # the SSRF guard's allowances (webhooks, alerts)
    allow_loopback: bool = False
    sender_processes: int = 0  # webhooks sent from this many child processes
    bus_allowed: tuple[BusPrefix, ...] = ()  # TIDINGS_BUS_ALLOWED_URLS


class Transports(Mapping[str, Transport]):
    """The transport of each kind, by kind; `alerts` sends alerts (webhooks)."""

    def __init__(
        self,
        by_kind: Mapping[str, Transport],
        alerts: AlertSender,
        pids: Callable[[], list[int]] = list,
    ) -> None:
        self._by_kind = dict(by_kind)
        self.alerts = alerts
        self._pids = pids

    def __getitem__(self, kind: str) -> Transport:
        return self._by_kind[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_kind)

    def __len__(self) -> int:
        return len(self._by_kind)

    def pids(self) -> list[int]:
        """The child processes sending for this process (webhook sender processes)."""
        return self._pids()

    async def start(self) -> None:
        await asyncio.gather(*(t.start() for t in self._by_kind.values()))

    async def close(self) -> None:
        await asyncio.gather(*(t.close() for t in self._by_kind.values()))


def _webhooks(options: TransportOptions) -> Webhooks:
    return Webhooks(
        SenderPool(
            processes=options.sender_processes,
            allow_private=options.allow_private,
            allow_loopback=options.allow_loopback,
        )
    )


# Kinds whose deliveries nobody sends: consumers lease them (`api.groups`). They have no
# transport, so the engine, which claims only for kinds it has one for, leaves them be.
PULL_KINDS: frozenset[DestinationKind] = frozenset({"group"})

# Bus transports send from the worker process itself (sender processes carry webhooks).
FACTORIES: dict[DestinationKind, Callable[[TransportOptions], Transport]] = {
    "webhook": _webhooks,
    "redis_stream": lambda options: RedisStreams(options.bus_allowed),
    "redis_channel": lambda options: RedisChannels(options.bus_allowed),
    "nats": lambda options: NatsJetStream(options.bus_allowed),
}


def build_transports(options: TransportOptions) -> Transports:
    """One transport per kind (not started yet)."""
    by_kind: dict[str, Transport] = {kind: make(options) for kind, make in FACTORIES.items()}
    webhooks = by_kind["webhook"]
    assert isinstance(webhooks, Webhooks)  # alerts are webhooks, whatever the kind
    sender = webhooks.sender
    pids = sender.pids if isinstance(sender, SenderPool) else list
    return Transports(by_kind, webhooks, pids)
