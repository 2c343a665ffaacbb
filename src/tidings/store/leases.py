"""Pull-group leases as every SQL store handles them: tokens, which refs are still held,
and what settling them does to each delivery. Must never do I/O.

A lease call draws one token and stores it as the `lease_owner` of every delivery it
hands out; a consumer names a lease by (delivery id, token). A row read back under the
delivery's current lease tells whether a ref still holds it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from tidings.model import Event, Lease, LeaseRef
from tidings.policy.outcome import FailurePlan
from tidings.store.rows import Row

LEASE_EXPIRED = "the lease expired before the consumer acked or nacked it"
TOKEN_BYTES = 8


def new_token() -> str:
    """A lease call's token: 16 hex digits, never reused in practice (64 random bits)."""
    return secrets.token_hex(TOKEN_BYTES)


def leased(
    delivery_id: str, attempt: int, token: str, expires: int, event: Row, payload: bytes
) -> Lease:
    """A lease from its delivery and event columns (seq, id, topic, key, payload (taken
    apart: each store reads it its own way), received_at, causation_id, correlation_id)."""
    return Lease(
        ref=LeaseRef(delivery_id=delivery_id, token=token),
        attempt=attempt,
        expires_at=expires,
        event=Event(
            seq=event[0],
            id=event[1],
            topic=event[2],
            key=event[3],
            payload=msgspec.Raw(payload),
            recipients=[],
            idempotency_key=None,
            received_at=event[5],
            causation_id=event[6],
            correlation_id=event[7],
        ),
    )


def split_held(
    refs: Sequence[LeaseRef], rows: Sequence[Row]
) -> tuple[list[tuple[LeaseRef, str, int]], list[LeaseRef]]:
    """`refs` as (held, lost): rows are (id, lane_key, attempts, lease_owner) of the
    deliveries in flight under an unexpired lease; a ref holds its delivery when the
    owner is its token (the first of repeated refs only)."""
    current = {r[0]: (r[1], r[2], r[3]) for r in rows}
    held: list[tuple[LeaseRef, str, int]] = []
    lost: list[LeaseRef] = []
    taken: set[str] = set()
    for ref in refs:
        row = current.get(ref.delivery_id)
        # An empty token (a bare delivery id, as API.md names them) means whichever
        # unexpired lease holds the delivery now.
        if row is not None and ref.token in ("", row[2]) and ref.delivery_id not in taken:
            taken.add(ref.delivery_id)
            if not ref.token:
                ref = LeaseRef(delivery_id=ref.delivery_id, token=row[2])
            held.append((ref, row[0], row[1]))
        elif ref.delivery_id not in taken:
            lost.append(ref)
    return held, lost


def expired_of(rows: Sequence[Row]) -> list[tuple[LeaseRef, str, int]]:
    """Rows of (id, lane_key, attempts, lease_owner) of expired leases, as held refs."""
    return [(LeaseRef(delivery_id=r[0], token=r[3] or ""), r[1], r[2]) for r in rows]


@dataclass
class Moves:
    """How settled leases move their deliveries: ids by (state, next_attempt_at,
    holds_lane, last_error); the lanes that may move on; the deliveries made dead."""

    by_state: dict[tuple[str, int | None, int, str | None], list[str]] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)


def lease_moves(
    settled: Sequence[tuple[LeaseRef, str, int]],
    plan: FailurePlan | None,
    error: str | None,
    now: int,
) -> Moves:
    """Each (ref, lane_key, attempts) delivered (`plan` None: an ack) or failed as `plan`
    says for its attempt number."""
    moves = Moves()
    lanes: set[str] = set()
    for ref, lane_key, attempts in settled:
        if plan is None:
            key: tuple[str, int | None, int, str | None] = ("delivered", None, 0, None)
            release = True
        else:
            t = plan.after(attempts, now)
            key = (t.state, t.next_attempt_at, 0 if t.release_lane else 1, error)
            release = t.release_lane
            if t.state == "dead":
                moves.dead.append(ref.delivery_id)
        moves.by_state.setdefault(key, []).append(ref.delivery_id)
        if release:
            lanes.add(lane_key)
    moves.released = sorted(lanes)
    return moves
