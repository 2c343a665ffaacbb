"""Running a Tidings process: open the store, settle the API key, serve until signalled.

Owns the process life cycle (start-up order, signals, graceful shutdown). Roles (api,
worker) are chosen by the caller; this module never parses command lines.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from tidings.api.app import create_app, start_site
from tidings.api.auth import META_KEY, digest, new_api_key
from tidings.config import Settings
from tidings.store.base import Store, open_store

log = logging.getLogger(__name__)


async def settle_api_key(settings: Settings, store: Store) -> list[str]:
    """The key digests the API accepts. With no TIDINGS_API_KEY, create one on first start,
    keep only its digest, and print the key once."""
    if settings.api_key:
        return [digest(settings.api_key)]
    candidate = new_api_key()
    stored = await store.set_meta_if_absent(META_KEY, digest(candidate))
    if stored == digest(candidate):
        print(
            f"Tidings created an API key (shown only this once; set TIDINGS_API_KEY to "
            f"replace it):\n\n    {candidate}\n",
            file=sys.stdout,
            flush=True,
        )
    return [stored]


async def run(settings: Settings, *, roles: frozenset[str]) -> None:
    store = open_store(settings.database_url)
    await store.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    try:
        if "api" in roles:
            digests = await settle_api_key(settings, store)
            app = create_app(settings, store, digests)
            runner, port = await start_site(app, settings.host, settings.port)
            log.info(
                "listening on http://%s:%d",
                settings.host,
                port,
                extra={"port": port, "database_url": settings.database_url},
            )
        await stop.wait()
        log.info("shutting down")
    finally:
        if runner is not None:
            await runner.cleanup()
        await store.close()


def run_forever(settings: Settings, *, roles: frozenset[str]) -> None:
    try:
        import uvloop

        uvloop.run(run(settings, roles=roles))
    except ImportError:
        asyncio.run(run(settings, roles=roles))
