"""The dashboard's figures read from the store: the overview and destination health.

Every read here is an index range or a primary-key lookup (store/base.py "the
dashboard's aggregates"), so the overview answers as fast with a million deliveries as
with ten (bench/dashboard.py measures it). Owns which reads make a figure; must never
write, and never scan a table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tidings.model import Activity, Backlog, Destination
from tidings.policy.health import Health, health_by_destination, rates
from tidings.store.base import Store
from tidings.timeutil import US, now_us, to_iso

DEAD_CAP = 10_000  # dead letters are counted up to this, per destination ("10000+")
HEALTH_WINDOW = 2_000  # the newest attempts a destination's health is computed from
LATEST_EVENTS = 8


@dataclass
class Sample:
    """Tops of the store at one moment: the next overview's rates count from here."""

    activity: Activity
    at: float  # time.monotonic()


@dataclass
class DestinationRow:
    destination: Destination
    backlog: int
    oldest_age_s: float | None
    dead: int
    health: Health | None
    leased: int = 0  # in flight: for a pull group, held by consumers

    @property
    def waiting(self) -> int:
        return self.backlog - self.leased

    @property
    def name(self) -> str:
        return self.destination.spec.name or self.destination.id


@dataclass
class Overview:
    events_per_s: float | None
    out_per_s: dict[str, float]
    backlog: int
    oldest_age_s: float | None
    paused: list[str]
    dead: int
    dead_capped: bool
    destinations: int
    events_total: int
    latest: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "events_per_s": self.events_per_s,
            "out_per_s": self.out_per_s,
            "backlog": self.backlog,
            "oldest_age_s": self.oldest_age_s,
            "paused": self.paused,
            "dead": self.dead,
            "dead_capped": self.dead_capped,
            "destinations": self.destinations,
            "events_total": self.events_total,
            "latest": self.latest,
        }


def _backlog_total(b: Backlog) -> int:
    return b.pending + b.scheduled + b.in_flight


def age_s(created_at: int | None, now: int) -> float | None:
    return None if created_at is None else max(0.0, (now - created_at) / US)


async def destination_rows(store: Store, with_health: bool = True) -> list[DestinationRow]:
    destinations = await store.all_destinations()
    backlog = {b.destination_id: b for b in await store.backlog()}
    health = (
        health_by_destination(await store.recent_attempts(HEALTH_WINDOW)) if with_health else {}
    )
    now = now_us()
    rows = []
    for d in destinations:
        b = backlog.get(d.id)
        rows.append(
            DestinationRow(
                destination=d,
                backlog=0 if b is None else _backlog_total(b),
                oldest_age_s=None if b is None else age_s(b.oldest_created_at, now),
                dead=await store.count_deliveries(d.id, "dead", None, None, DEAD_CAP),
                health=health.get(d.id),
                leased=0 if b is None else b.in_flight,
            )
        )
    return rows


async def overview(store: Store, before: Sample | None, now_mono: float) -> tuple[Overview, Sample]:
    """The overview, with rates since `before` (None on a first look: no rates yet)."""
    activity = await store.activity(
        None if before is None else before.activity.event_seq,
        None if before is None else before.activity.attempt_seq,
    )
    rows = await destination_rows(store, with_health=False)
    events_per_s: float | None = None
    out: dict[str, float] = {}
    if before is not None:
        events_per_s, out = rates(activity, now_mono - before.at)
    ages = [r.oldest_age_s for r in rows if r.oldest_age_s is not None]
    latest = (await store.list_events(None, LATEST_EVENTS, None)).items
    result = Overview(
        events_per_s=events_per_s,
        out_per_s=out,
        backlog=sum(r.backlog for r in rows),
        oldest_age_s=max(ages) if ages else None,
        paused=[r.name for r in rows if r.destination.state == "paused"],
        dead=sum(r.dead for r in rows),
        dead_capped=any(r.dead >= DEAD_CAP for r in rows),
        destinations=len(rows),
        events_total=activity.event_seq,
        latest=[
            {"id": e.id, "topic": e.topic, "key": e.key, "received_at": to_iso(e.received_at)}
            for e in latest
        ],
    )
    return result, Sample(activity, now_mono)
