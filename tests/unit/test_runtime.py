"""runtime (the loop a process runs on, GC tuning) and metrics.child."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tidings.metrics import ATTEMPTS, REGISTRY, child
from tidings.runtime import GEN0_THRESHOLD, run_loop


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


def test_run_loop_runs_on_uvloop_and_returns_the_result() -> None:
    async def main() -> str:
        import asyncio

        return type(asyncio.get_running_loop()).__module__

    assert run_loop(main()).startswith("uvloop")


def test_run_loop_runs_main_once_even_if_it_raises_import_error() -> None:
    runs: list[int] = []

    async def main() -> None:
        runs.append(1)
        raise ImportError("a lazy import inside the program failed")

    with pytest.raises(ImportError, match="lazy import"):
        run_loop(main())
    assert runs == [1]
