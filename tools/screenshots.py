"""Refresh the dashboard's screenshots in docs/img/dashboard-*.png (`make screenshots`).

Starts a `tidings serve` of its own (a SQLite store in a temporary directory, a free
port) and a webhook receiver in this process (`/ok` answers 200, `/fail` 500), fills them
with destinations (one healthy, one failing into dead letters, one paused), events with
keys, a causation chain, messages for a user and an upload, then signs in with headless
Chromium (Debian's `chromium`, driven by Playwright: no browser download) and takes one
picture per page, and the overview on a narrow (phone) screen too.

    .venv/bin/python tools/screenshots.py [--out docs/img] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from playwright.async_api import async_playwright

# The flags the browser tests launch Chromium with (one list for both).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.browser.conftest import CHROMIUM_ARGS as ARGS

KEY = "tdk_screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def receiver() -> tuple[web.AppRunner, int]:
    async def ok(request: web.Request) -> web.Response:
        await asyncio.sleep(0.01)
        return web.Response(text="ok")

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text='{"error": "database is locked"}')

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/fail", fail)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def start_tidings(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TIDINGS_DATABASE_URL": f"sqlite:///{workdir / 'shots.db'}",
        "TIDINGS_API_KEY": KEY,
        "TIDINGS_PORT": str(port),
        "TIDINGS_HOST": "127.0.0.1",
        "TIDINGS_ALLOW_LOOPBACK_TARGETS": "1",
        "TIDINGS_SENDER_PROCESSES": "0",
        "TIDINGS_LOG_LEVEL": "warning",
        "TIDINGS_UPLOAD_DIR": str(workdir / "uploads"),
        "TIDINGS_WATCH_DIR": str(workdir / "watch"),
        "TIDINGS_WATCH_INTERVAL_MS": "100",
    }
    # A file waiting in the watched folder, old enough to be read at once.
    (workdir / "watch").mkdir()
    dropped = workdir / "watch" / "signups.csv"
    dropped.write_text("user_id,message\ncarol,Welcome\ndave,Welcome\n,no user\n")
    os.utime(dropped, (time.time() - 60, time.time() - 60))
    log = (workdir / "tidings.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidings.cli", "serve"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("tidings did not start:\n" + (workdir / "tidings.log").read_text())


async def fill(url: str, hook: int) -> dict[str, Any]:
    """Destinations, events, a chain, dead letters, inbox messages and an upload."""
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(headers=headers) as s:

        async def call(method: str, path: str, body: Any = None, **kw: Any) -> Any:
            async with s.request(method, url + path, json=body, **kw) as r:
                text = await r.text()
                assert r.status < 300, f"{method} {path}: {r.status} {text}"
                return json.loads(text) if text else None

        target = f"http://127.0.0.1:{hook}"
        await call(
            "POST",
            "/v1/destinations",
            {"kind": "webhook", "name": "billing", "url": target + "/ok", "topics": ["order.*"]},
        )
        await call(
            "POST",
            "/v1/destinations",
            {
                "kind": "webhook",
                "name": "crm",
                "url": target + "/fail",
                "topics": ["order.created", "customer.*"],
                "retry": {"max_attempts": 2, "initial_ms": 50},
            },
        )
        search = await call(
            "POST",
            "/v1/destinations",
            {"kind": "webhook", "name": "search-index", "url": target + "/ok", "topics": ["*"]},
        )
        await call("PATCH", f"/v1/destinations/{search['id']}", {"state": "paused"})
        for i in range(12):
            await call(
                "POST",
                "/v1/events",
                {
                    "topic": "order.created" if i % 3 else "customer.updated",
                    "key": f"customer-{i % 4}",
                    "payload": {"order": 1000 + i, "total": 19.5 + i},
                },
            )
        root = await call(
            "POST",
            "/v1/events",
            {"topic": "order.created", "key": "customer-9", "payload": {"order": 2001}},
        )
        chain = [root["id"]]
        for topic, cause in (
            ("order.paid", 0),
            ("order.packed", 1),
            ("order.shipped", 2),
            ("invoice.sent", 1),
        ):
            e = await call(
                "POST",
                "/v1/events",
                {
                    "topic": topic,
                    "key": "customer-9",
                    "payload": {"order": 2001},
                    "causation_id": chain[cause],
                    "correlation_id": chain[0],
                },
            )
            chain.append(e["id"])
        for text in ("Your order has shipped", "Your invoice is ready", "Password changed"):
            await call(
                "POST",
                "/v1/events",
                {"topic": "user.notice", "recipients": ["alice"], "payload": {"text": text}},
            )
        upload = await call(
            "POST",
            "/v1/uploads?name=alerts.csv",
            data=b"user_id,message\nalice,Order 1 placed\nbob,Order 2 placed\n,no user\n",
            headers={"Content-Type": "text/csv"},
        )
        token = await call("POST", "/v1/users/alice/token", {"ttl_s": 600})
        await asyncio.sleep(2.5)  # deliveries land, crm's die
        return {"chain": chain, "upload": upload["upload_id"], "token": token["token"]}


async def publish_for(url: str, seconds: float) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(headers=headers) as s:
        n = 0
        while time.monotonic() < deadline:
            events = [
                {
                    "topic": "order.created",
                    "key": f"customer-{(n + i) % 7}",
                    "payload": {"n": n + i},
                }
                for i in range(5)
            ]
            async with s.post(url + "/v1/events/batch", json={"events": events}) as r:
                assert r.status == 202, await r.text()
            n += 5
            await asyncio.sleep(0.1)


async def shoot(url: str, facts: dict[str, Any], out: Path, chromium: str) -> list[Path]:
    taken = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()

        async def snap(name: str, full: bool = True) -> None:
            path = out / f"dashboard-{name}.png"
            await page.screenshot(path=str(path), full_page=full)
            taken.append(path)

        await page.goto(url + "/")
        await snap("signin", full=False)
        await page.get_by_label("API key").fill(KEY)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_selector("#live.on")
        # Traffic while the overview samples twice, so that it shows rates.
        traffic = asyncio.create_task(publish_for(url, 5.0))
        await page.wait_for_timeout(4500)
        await snap("overview")
        await traffic
        # alice has a socket open, so that her page shows her online.
        socket_url = f"{url}/v1/ws?user_id=alice&token={facts['token']}&after=4"
        async with aiohttp.ClientSession() as ws_client, ws_client.ws_connect(socket_url):
            for name, path in (
                ("destinations", "/ui/destinations"),
                ("events", "/ui/events"),
                ("event", f"/ui/events/{facts['chain'][1]}"),
                ("dead", "/ui/dead"),
                ("users", "/ui/users?user=alice"),
                ("uploads", "/ui/uploads"),
            ):
                await page.goto(url + path)
                await snap(name, full=name not in ("events", "dead"))  # long lists: a screen
        phone = await browser.new_context(viewport={"width": 390, "height": 844})
        page = await phone.new_page()
        await page.goto(url + "/")
        await page.get_by_label("API key").fill(KEY)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_selector("#live.on")
        await snap("narrow", full=False)
        await browser.close()
    return taken


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    hook_runner, hook = await receiver()
    with tempfile.TemporaryDirectory(prefix="tidings-screenshots-") as tmp:
        port = free_port()
        proc = start_tidings(Path(tmp), port)
        try:
            url = f"http://127.0.0.1:{port}"
            facts = await fill(url, hook)
            for path in await shoot(url, facts, args.out, args.chromium):
                print(path)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
            await hook_runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
