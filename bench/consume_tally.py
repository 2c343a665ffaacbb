"""What every worker of bench/consume.py does per event: count it and note the time.

Each process keeps its count and the wall-clock times of its first and last event, and
a daemon thread writes them to CONSUME_TALLY_DIR/<pid>.json five times a second (and
at exit), so the driver learns when all N are done and over which span, the same way
for Tidings Consumers, Celery and Dramatiq workers. Imported by the workers only.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from pathlib import Path

_DIR = Path(os.environ.get("CONSUME_TALLY_DIR", "."))
_state = {"count": 0, "first": 0.0, "last": 0.0}
_pid = 0


def _write() -> None:
    path = _DIR / f"{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_state))
    tmp.replace(path)


def _flusher() -> None:
    while True:
        time.sleep(0.2)
        _write()


def tally() -> None:
    global _pid
    now = time.time()
    if _pid != os.getpid():  # first event of this process (prefork children too)
        _pid = os.getpid()
        _state.update(count=0, first=now, last=now)
        threading.Thread(target=_flusher, daemon=True).start()
        atexit.register(_write)
    _state["count"] += 1
    _state["last"] = now
