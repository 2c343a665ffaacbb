"""Typed keys of the values the application carries (store, settings, ...)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tidings.config import Settings
from tidings.store.base import Store

STORE = web.AppKey("store", Store)
SETTINGS = web.AppKey("settings", Settings)
KEY_DIGESTS = web.AppKey("key_digests", tuple[str, ...])
OPENAPI = web.AppKey("openapi", dict[str, Any])
