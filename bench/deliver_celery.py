"""The Celery side of bench/deliver.py: what users build instead of Tidings.

One task per delivery, `autoretry_for` + `retry_backoff` (exponential, jittered, at most 8
retries), late acks, no result backend, a Redis broker. The task signs the request the way
Tidings does (Standard Webhooks headers, `tidings-attempt` from the retry count) and posts
it with a keep-alive `http.client` connection per worker thread or process; `requests` is
what most users would reach for, but it is not installed here and would only be slower.

Run by the benchmark, not by hand:
    DELIVER_CELERY_BROKER=redis://127.0.0.1:6379/15 PYTHONPATH=bench \\
        .venv/bin/celery -A deliver_celery worker --pool=threads --concurrency=32

Environment: DELIVER_CELERY_BROKER (default redis://127.0.0.1:6379/15),
DELIVER_CELERY_PREFETCH (worker_prefetch_multiplier, default 4), DELIVER_CELERY_READY_FILE
(written once the worker is ready to consume).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from celery.signals import worker_ready

BROKER = os.environ.get("DELIVER_CELERY_BROKER", "redis://127.0.0.1:6379/15")
QUEUE = "deliver-bench"

app = Celery("deliver_celery", broker=BROKER)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_backend=None,
    task_ignore_result=True,
    task_acks_late=True,
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=int(os.environ.get("DELIVER_CELERY_PREFETCH", "4")),
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
)


class DeliveryFailed(Exception):
    """The receiver answered something other than 2xx."""


_local = threading.local()


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST on this thread's keep-alive connection to the host; reconnect once when a
    reused connection turns out to be closed (as urllib3 does)."""
    parts = urlsplit(url)
    pool: dict[tuple[str, int], http.client.HTTPConnection] = getattr(_local, "pool", None) or {}
    _local.pool = pool
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    for attempt in (1, 2):
        conn = pool.get(address)
        reused = conn is not None
        if conn is None:
            conn = pool[address] = http.client.HTTPConnection(*address, timeout=10)
        try:
            conn.request("POST", parts.path or "/", body, headers)
            response = conn.getresponse()
            response.read()
            return response.status
        except (http.client.HTTPException, OSError):
            conn.close()
            del pool[address]
            if not reused or attempt == 2:
                raise
    raise AssertionError("unreachable")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


@app.task(
    bind=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=8,
    acks_late=True,
)
def deliver(self: Any, url: str, msg_id: str, body: str, secret: str) -> None:
    data = body.encode()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, data),
        "tidings-attempt": str(self.request.retries + 1),
    }
    status = _post(url, data, headers)
    if not 200 <= status < 300:
        raise DeliveryFailed(f"{url} answered {status}")


@worker_ready.connect
def _announce_ready(**_: Any) -> None:
    path = os.environ.get("DELIVER_CELERY_READY_FILE")
    if path:
        Path(path).write_text("ready\n")
