"""Dashboard figures (issue 17): rates between two activity samples, a destination's
success rate and p95 latency from its recent attempts. Pure: no I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tidings.model import Activity, AttemptSample


@dataclass(frozen=True)
class Health:
    attempts: int
    success_rate: float | None  # 0..1; None without attempts
    p95_ms: float | None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..1) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def health_by_destination(samples: Iterable[AttemptSample]) -> dict[str, Health]:
    outcomes: dict[str, list[AttemptSample]] = {}
    for s in samples:
        outcomes.setdefault(s.destination_id, []).append(s)
    out = {}
    for destination_id, rows in outcomes.items():
        ok = sum(1 for r in rows if r.outcome == "delivered")
        out[destination_id] = Health(
            attempts=len(rows),
            success_rate=ok / len(rows),
            p95_ms=percentile([r.latency_ms for r in rows], 0.95),
        )
    return out


def rates(after: Activity, seconds: float) -> tuple[float, dict[str, float]]:
    """Events per second in and attempts per second out by outcome, from a sample asked
    with the tops of one taken `seconds` before."""
    if seconds <= 0:
        return 0.0, {}
    return after.events / seconds, {k: v / seconds for k, v in sorted(after.outcomes.items())}
