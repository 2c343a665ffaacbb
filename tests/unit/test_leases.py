"""Pull-group lease bookkeeping without a database: which refs hold their delivery, and
what settling them does (store.leases), and a nack's plan (policy.outcome.FailurePlan)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from tidings.model import LeaseRef, RetryPolicy
from tidings.policy.outcome import FailurePlan
from tidings.store.leases import lease_moves, new_token, split_held

R = RetryPolicy(max_attempts=3, initial_ms=100, multiplier=2.0, max_ms=1000, jitter=0.0)


def ref(d: str, t: str = "a" * 16) -> LeaseRef:
    return LeaseRef(delivery_id=d, token=t)


def test_a_ref_holds_only_under_its_own_token_and_once() -> None:
    rows = [("d1", "k1", 1, "a" * 16), ("d2", "k2", 2, "b" * 16)]
    refs = [ref("d1"), ref("d2"), ref("d3"), ref("d1")]
    held, lost = split_held(refs, rows)
    assert held == [(ref("d1"), "k1", 1)]
    assert lost == [ref("d2"), ref("d3")]  # d2 moved on; d3 is not held; d1 twice: once


def test_tokens_are_fresh_hex() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) == 16 and int(t, 16) >= 0 for t in tokens)


def test_acks_deliver_and_release_each_lane_once() -> None:
    moves = lease_moves([(ref("d1"), "k", 1), (ref("d2"), "k", 4)], None, None, 0)
    assert moves.by_state == {("delivered", None, 0, None): ["d1", "d2"]}
    assert moves.released == ["k"] and moves.dead == []


def test_nacks_back_off_then_die_by_attempt() -> None:
    plan = FailurePlan(retry=R, on_dead="block")
    moves = lease_moves([(ref("d1"), "k1", 1), (ref("d2"), "k2", 3)], plan, "boom", 1000)
    assert moves.by_state == {
        ("scheduled", 1000 + 100_000, 1, "boom"): ["d1"],
        ("dead", None, 1, "boom"): ["d2"],  # block: the dead head keeps its lane
    }
    assert moves.released == [] and moves.dead == ["d2"]
    skip = lease_moves([(ref("d2"), "k2", 3)], FailurePlan(retry=R, on_dead="skip"), None, 0)
    assert skip.released == ["k2"]


@given(st.integers(0, 10**9), st.integers(1, 2))
def test_a_nack_delay_is_kept_but_capped_by_max_ms(delay_ms: int, attempt: int) -> None:
    t = FailurePlan(retry=R, on_dead="skip", delay_ms=delay_ms, rng=random.Random(1)).after(
        attempt, 0
    )
    assert t.state == "scheduled" and t.next_attempt_at == min(delay_ms, R.max_ms) * 1000
