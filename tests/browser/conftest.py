"""Fixtures of the browser tests: Debian's headless Chromium driven by Playwright (no
browser download: `executable_path` is the system's), a real `tidings serve` and a real
webhook receiver (tests/e2e). Without Chromium the tests skip, unless
TIDINGS_REQUIRE_SERVICES=1 (CI installs it: .ci/run)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.procs import API_KEY, TidingsProcess
from tests.e2e.receiver import Receiver, TidingsApi

CHROMIUM = os.environ.get("TIDINGS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_or_skip() -> str:
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return CHROMIUM
    message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("TIDINGS_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " and TIDINGS_REQUIRE_SERVICES=1")
    pytest.skip(message + " (set TIDINGS_REQUIRE_SERVICES=1 to make this a failure)")


@pytest.fixture
def tidings(tmp_path: Path) -> Iterator[TidingsProcess]:
    proc = TidingsProcess(
        tmp_path,
        f"sqlite:///{tmp_path / 'dashboard.db'}",
        # No sender processes: webhooks go out from the worker itself, and the
        # process starts in a fraction of the time (a few deliveries need no more).
        extra_env={"TIDINGS_ALLOW_LOOPBACK_TARGETS": "1", "TIDINGS_SENDER_PROCESSES": "0"},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


# Every async fixture and test of this folder runs in one event loop per module, so one
# Chromium serves the module's tests (each in a fresh context: no cookie carries over).
LOOP = "module"


@pytest_asyncio.fixture(loop_scope=LOOP)
async def api(tidings: TidingsProcess) -> AsyncIterator[TidingsApi]:
    client = TidingsApi(tidings.url)
    try:
        yield client
    finally:
        await client.close()


# tests/e2e's receiver, in this folder's module-wide loop (a fixture runs in one loop).
@pytest_asyncio.fixture(loop_scope=LOOP)
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.close()


@pytest_asyncio.fixture(scope="module", loop_scope=LOOP)
async def browser() -> AsyncIterator[Any]:
    path = chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest_asyncio.fixture(loop_scope=LOOP)
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    p = await context.new_page()
    try:
        yield p
    finally:
        await context.close()


async def sign_in(page: Any, url: str, key: str = API_KEY) -> None:
    await page.goto(url + "/")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
