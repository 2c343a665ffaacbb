"""The Tidings side of bench/consume.py: a `tidings.Consumer` of group CONSUME_GROUP with
one no-op async handler for every topic, run by `tidings consume consume_app:consumer`
(PYTHONPATH=bench). CONSUME_CONCURRENCY and CONSUME_BATCH size it."""

from __future__ import annotations

import os

from consume_tally import tally

import tidings

consumer = tidings.Consumer(
    group=os.environ.get("CONSUME_GROUP", "bench"),
    concurrency=int(os.environ.get("CONSUME_CONCURRENCY", "100")),
    batch=int(os.environ.get("CONSUME_BATCH", "100")),
    wait_ms=5000,
)


@consumer.handler("*")
async def noop(event: tidings.LeasedEvent) -> None:
    tally()
