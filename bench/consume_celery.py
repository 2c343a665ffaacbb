"""The Celery side of bench/consume.py: one no-op task per event (late acks, no result
backend, Redis broker CONSUME_BROKER). Run by the benchmark:
    PYTHONPATH=bench .venv/bin/celery -A consume_celery worker --pool=prefork -c 2
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from consume_tally import tally

app = Celery("consume_celery", broker=os.environ.get("CONSUME_BROKER", "redis://127.0.0.1:6379/14"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=int(os.environ.get("CONSUME_PREFETCH", "16")),
    task_default_queue="consume-bench",
)


@app.task(name="handle")
def handle(event: dict[str, Any]) -> None:
    tally()
