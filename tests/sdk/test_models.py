"""The Structs of the pull-group calls decode the server's shapes (the live calls are in
test_groups.py), and a Destination with a field the SDK does not know still decodes (a
newer server's)."""

from __future__ import annotations

import msgspec

from tidings import Destination, Leased, Settled

LEASED = b"""{"items": [{"lease_id": "dlv_1.0000000000000001", "delivery_id": "dlv_1", "attempt": 2,
  "lease_expires_at": "2026-12-06T22:00:30.000000Z",
  "event": {"id": "evt_1", "topic": "order.created", "key": "u1", "payload": {"n": 1},
            "received_at": "2026-12-06T22:00:00.000000Z", "causation_id": null,
            "correlation_id": "evt_0"}}]}"""


def test_a_lease_answer() -> None:
    (lease,) = msgspec.json.decode(LEASED, type=Leased).items
    assert (lease.lease_id, lease.delivery_id, lease.attempt) == (
        "dlv_1.0000000000000001",
        "dlv_1",
        2,
    )
    assert (lease.event.payload, lease.event.correlation_id) == ({"n": 1}, "evt_0")


def test_an_ack_nack_extend_answer() -> None:
    settled = msgspec.json.decode(b'{"ok": ["dlv_1"], "lost": ["dlv_2"]}', type=Settled)
    assert (settled.ok, settled.lost) == (["dlv_1"], ["dlv_2"])


def test_a_group_destination_and_an_unknown_field() -> None:
    raw = {
        "kind": "group",
        "id": "dst_1",
        "state": "active",
        "paused_reason": None,
        "secret": "whsec_x",
        "created_at": "t",
        "updated_at": "t",
        "lease_ms": 30000,
        "topics": ["order.*"],
        "name": "billing",
        "filter": None,
        "ordering": "fifo",
        "on_dead": "skip",
        "retry": {
            "max_attempts": 5,
            "initial_ms": 500,
            "multiplier": 2.0,
            "max_ms": 1,
            "jitter": 0,
        },
        "timeout_ms": 10000,
        "rate_limit_per_s": None,
        "max_in_flight": 16,
        "alert_url": None,
        "enabled": True,
        "added_later": {"any": "thing"},
    }
    group = msgspec.json.decode(msgspec.json.encode(raw), type=Destination)
    assert (group.kind, group.lease_ms, group.url) == ("group", 30000, None)
    assert group.retry.max_attempts == 5
