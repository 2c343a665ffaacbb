"""Prometheus metrics of one Tidings process, in a registry of its own.

Counters and histograms are updated where the work happens (ingest routes, the engine);
backlog gauges are filled from the store when `/metrics` is scraped. Each process serves
its own numbers (no multiprocess mode: it is slow, see research/python-ecosystem.md).
Must never do I/O itself.
"""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.metrics import MetricWrapperBase

disable_created_metrics()  # type: ignore[no-untyped-call] # no `*_created` series: they double the scrape for no use here
REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_INGESTED = Counter(
    "tidings_events_ingested",
    "Events accepted and stored (duplicates by idempotency key not counted).",
    registry=REGISTRY,
)
ATTEMPTS = Counter(
    "tidings_delivery_attempts",
    "Delivery attempts by destination and outcome "
    "(delivered, http_error, timeout, connection_error, refused, lost; a pull group's "
    "nacked too).",
    ["destination", "outcome"],
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "tidings_deliveries",
    "Deliveries that reached a final state (delivered, dead) by destination.",
    ["destination", "state"],
    registry=REGISTRY,
)
ATTEMPT_LATENCY = Histogram(
    "tidings_attempt_latency_seconds",
    "Time from starting a delivery attempt (a webhook request, a bus command) to its "
    "answer (or failure).",
    ["destination"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
BACKLOG = Gauge(
    "tidings_backlog",
    "Undelivered deliveries by destination and state (pending, scheduled, in_flight).",
    ["destination", "state"],
    registry=REGISTRY,
)
OLDEST_PENDING_AGE = Gauge(
    "tidings_oldest_pending_age_seconds",
    "Age of the oldest undelivered delivery of each destination.",
    ["destination"],
    registry=REGISTRY,
)
GROUP_BACKLOG = Gauge(
    "tidings_group_backlog",
    "Deliveries of each pull group waiting to be leased (pending and scheduled).",
    ["group"],
    registry=REGISTRY,
)
GROUP_LEASED = Gauge(
    "tidings_group_leased",
    "Deliveries of each pull group leased to a consumer and not yet acked or nacked.",
    ["group"],
    registry=REGISTRY,
)
GROUP_OLDEST_PENDING_AGE = Gauge(
    "tidings_group_oldest_pending_age_seconds",
    "Age of the oldest unacked delivery of each pull group (0 when there is none).",
    ["group"],
    registry=REGISTRY,
)
DESTINATION_PAUSED = Counter(
    "tidings_destinations_paused",
    "Destinations paused by the engine (a run of failures, or 410 Gone).",
    registry=REGISTRY,
)
INBOX_DROPPED = Counter(
    "tidings_inbox_dropped",
    "Inbox messages dropped unread because a user's inbox held TIDINGS_INBOX_MAX.",
    registry=REGISTRY,
)
INBOX_SWEPT = Counter(
    "tidings_inbox_swept",
    "Inbox messages deleted by retention (acked, or older than TIDINGS_INBOX_TTL_S).",
    registry=REGISTRY,
)
RETENTION_DELETED = Counter(
    "tidings_retention_deleted",
    "Events deleted by retention (their deliveries and attempts with them).",
    registry=REGISTRY,
)
RETENTION_KEPT = Counter(
    "tidings_retention_kept",
    "Events old enough for retention that it looked at and kept: a delivery not yet "
    "delivered (pending, scheduled, in flight, dead) or an inbox message still holds them.",
    registry=REGISTRY,
)
RETENTION_BEHIND = Gauge(
    "tidings_retention_behind",
    "1 while retention has more to delete than one pass takes (it goes on at once), else 0.",
    registry=REGISTRY,
)
RETENTION_PASS_SECONDS = Histogram(
    "tidings_retention_pass_seconds",
    "Time of one retention pass (at most 100 chunks of 1,000 events looked at).",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
WS_SOCKETS = Gauge(
    "tidings_ws_sockets",
    "WebSocket connections this process holds.",
    registry=REGISTRY,
)
WS_REFUSED = Counter(
    "tidings_ws_refused",
    "WebSocket upgrades refused, by reason: token (401), capacity or rate (503).",
    ["reason"],
    registry=REGISTRY,
)
WS_CLOSED_SLOW = Counter(
    "tidings_ws_closed_slow",
    "Sockets closed with 4008 because their send queue filled (the client resumes).",
    registry=REGISTRY,
)
WS_FRAMES = Counter(
    "tidings_ws_frames",
    "Message frames sent to sockets, by source: live (pushed) or store (catch-up, gaps).",
    ["source"],
    registry=REGISTRY,
)
RELAY_ERRORS = Counter(
    "tidings_relay_errors",
    "Failed Redis relay writes (pushes, presence); sockets catch up from the store.",
    registry=REGISTRY,
)

M = TypeVar("M", bound=MetricWrapperBase)
_children: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}


def child(metric: M, *labels: str) -> M:
    """`metric.labels(*labels)`, kept: the engine updates a few labelled series once per
    attempt, and `labels()` (a lock, a tuple, a dict lookup, checks) cost more than the
    update itself."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found  # type: ignore[return-value]
