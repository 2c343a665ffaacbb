"""The Dramatiq side of bench/consume.py: one no-op actor message per event, Redis
broker CONSUME_BROKER, no retries. Run by the benchmark:
    PYTHONPATH=bench .venv/bin/dramatiq consume_dramatiq --processes 2 --threads 8
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from consume_tally import tally
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ.get("CONSUME_BROKER", "redis://127.0.0.1:6379/14"))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="consume-bench", max_retries=0)
def handle(event: dict[str, Any]) -> None:
    tally()
