"""How Tidings' long-running processes run: the event loop they run on and the garbage
collector's tuning, for `tidings serve|api|worker` and the sender processes alike.

Must stay light to import (a sender process imports it first thing) and must never be
imported for its side effects: callers call `run_loop` and `tune_gc`.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# Allocations between young collections (CPython's default is 700). Each attempt and each
# request allocates a few hundred short-lived objects that die young anyway; at the
# default, the collector ran every few requests and, through its older generations,
# walked every long-lived object again and again (6% of a sender process's CPU).
GEN0_THRESHOLD = 20_000


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to the end on uvloop where it is installed (a dependency everywhere but
    Windows), else on asyncio's own loop. Only the import is guarded: an ImportError
    raised by `main` itself propagates instead of starting it a second time."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def tune_gc() -> None:
    """Collect less often. (Not `gc.freeze()` as well: no measured gain, and an object
    frozen at start-up that later ends up in a garbage cycle is never freed.)"""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
