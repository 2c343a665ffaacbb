"""Runs of failures per destination and when they pause it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidings.policy.streaks import Run, fold_runs, next_streak, pause_for, pause_reason, pauses


def test_fold_runs_restarts_at_each_success() -> None:
    runs = fold_runs([("a", True), ("b", True), ("a", False), ("a", True), ("a", True)])
    assert runs == {"a": Run(True, 2), "b": Run(False, 1)}
    assert fold_runs([]) == {}


def test_next_streak() -> None:
    assert next_streak(7, Run(False, 2)) == 9  # no success: the stored streak goes on
    assert next_streak(7, Run(True, 2)) == 2  # a success restarted it
    assert next_streak(7, Run(True, 0)) == 0


def test_pauses_only_active_destinations_at_the_threshold() -> None:
    assert pauses(5, 5, "active") and pauses(6, 5, "active")
    assert not pauses(4, 5, "active")
    assert not pauses(50, 5, "paused")
    assert not pauses(10**6, 0, "active")  # 0: never
    assert pause_reason(5) == "5 consecutive failed attempts"


@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=60), st.integers(0, 9))
def test_folding_in_batches_equals_folding_at_once(
    outcomes: list[tuple[str, bool]], split: int
) -> None:
    """A store that sees the outcomes in two batches ends with the same streaks."""
    cut = min(split * 7, len(outcomes))
    whole = fold_runs(outcomes)
    stored: dict[str, int] = {}
    for batch in (outcomes[:cut], outcomes[cut:]):
        for dest, run in fold_runs(batch).items():
            stored[dest] = next_streak(stored.get(dest, 0), run)
    assert stored == {d: next_streak(0, r) for d, r in whole.items()}


def test_pause_for_a_target_gone_or_a_run() -> None:
    assert pause_for(1, 0, "active", "the receiver answered 410 Gone") == (
        "the receiver answered 410 Gone"
    )
    assert pause_for(5, 3, "active", "gone") == "gone"  # gone is the reason, before a run
    assert pause_for(3, 3, "active", None) == "3 consecutive failed attempts"
    assert pause_for(2, 3, "active", None) is None
    assert pause_for(9, 0, "active", None) is None  # 0 never pauses by a run
    assert pause_for(9, 3, "paused", "gone") is None  # paused already
