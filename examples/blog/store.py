"""A service's own copy of the data it needs (a JSON file per service in BLOG_DATA,
default ./data): what a real service would keep in its database."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

_lock = threading.Lock()


def _path(service: str) -> Path:
    folder = Path(os.environ.get("BLOG_DATA", "data"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{service}.json"


def load(service: str) -> dict[str, Any]:
    path = _path(service)
    return json.loads(path.read_text()) if path.exists() else {}


def save(service: str, data: dict[str, Any]) -> None:
    with _lock:
        path = _path(service)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        tmp.replace(path)
