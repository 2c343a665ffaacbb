"""runtime.tune_gc and metrics.child: process-level tuning of the engine's hot path."""

from __future__ import annotations

import json
import subprocess
import sys

from tidings.metrics import ATTEMPTS, REGISTRY, child
from tidings.runtime import GEN0_THRESHOLD


def test_tune_gc_collects_less_often() -> None:
    # In a child interpreter: the test process's own collector stays as it is.
    code = (
        "import gc, json; from tidings.runtime import tune_gc; before = gc.get_threshold(); "
        "tune_gc(); print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    before, after, frozen = json.loads(out.stdout)
    assert after == [GEN0_THRESHOLD, before[1], before[2]]
    assert frozen == 0  # nothing frozen: everything can still be finalized


def test_child_is_the_labelled_series_and_is_kept() -> None:
    first = child(ATTEMPTS, "dst_runtime_test", "delivered")
    assert first is ATTEMPTS.labels("dst_runtime_test", "delivered")
    assert child(ATTEMPTS, "dst_runtime_test", "delivered") is first
    assert child(ATTEMPTS, "dst_runtime_test", "timeout") is not first
    first.inc(3)
    value = REGISTRY.get_sample_value(
        "tidings_delivery_attempts_total",
        {"destination": "dst_runtime_test", "outcome": "delivered"},
    )
    assert value == 3
