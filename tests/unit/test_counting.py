"""policy/counting: a count past its cap, estimated slice by slice."""

from __future__ import annotations

from itertools import pairwise

from tidings.policy.counting import SLICES, estimated, per_slice, slices


def walk(entries: list[int], cap: int) -> list[tuple[tuple[int, int], int, int | None, int | None]]:
    """What the store's slice walks answer for a range holding `entries` (sorted seqs)."""
    out = []
    for lo, hi in slices(entries[0], entries[-1]):
        inside = [e for e in entries if lo <= e < hi][: per_slice(cap)]
        out.append(((lo, hi), len(inside), min(inside, default=None), max(inside, default=None)))
    return out


def test_slices_cover_the_range_once() -> None:
    parts = slices(5, 1004)
    assert len(parts) == SLICES and parts[0][0] == 5 and parts[-1][1] == 1005
    assert all(a[1] == b[0] for a, b in pairwise(parts))
    assert slices(7, 9) == [(7, 8), (8, 9), (9, 10)]  # fewer seqs than slices


def test_an_even_range_is_estimated_closely() -> None:
    entries = list(range(1, 300_000, 3))  # every third seq
    assert abs(estimated(1600, walk(entries, 1600)) - len(entries)) < len(entries) * 0.01


def test_a_sparse_old_part_and_a_dense_tail() -> None:
    # a stuck backlog (one in 11) then a fresh dense tail: one density for all would be
    # 2x off; by slices, only the slice where the two meet is (here 11% of the total)
    entries = list(range(1, 1_000_000, 11)) + list(range(1_000_000, 1_090_000))
    got = estimated(1600, walk(entries, 1600))
    assert abs(got - len(entries)) < len(entries) * 0.15


def test_never_below_the_cap() -> None:
    assert estimated(1600, walk([1, 2, 3], 1600)) == 1600
