"""Typed keys of the values the application carries (store, settings, ...)."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from tidings.config import Settings
from tidings.engine.groups import GroupWaker
from tidings.ingest.spooled import SpooledUploads
from tidings.notices import Notices
from tidings.store.base import Store

STORE = web.AppKey("store", Store)
SETTINGS = web.AppKey("settings", Settings)
KEY_DIGESTS = web.AppKey("key_digests", tuple[str, ...])
OPENAPI = web.AppKey("openapi", dict[str, Any])


class EngineLink(Protocol):
    """What the API tells a delivery engine running in the same process."""

    def wake(self) -> None: ...

    def destinations_changed(self) -> None: ...


class NoEngine:
    """The API alone (`tidings api`): workers elsewhere find new work by polling."""

    def wake(self) -> None:
        pass

    def destinations_changed(self) -> None:
        pass


ENGINE = web.AppKey("engine", EngineLink)
NOTICES = web.AppKey("notices", Notices)  # the operator's log lines of this process
SPOOL = web.AppKey("spool", SpooledUploads)  # uploads too large to read in the request
GROUP_WAKER = web.AppKey("group_waker", GroupWaker)  # long polls of pull groups wait on it
