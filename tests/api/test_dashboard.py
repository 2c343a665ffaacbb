"""The dashboard over plain HTTP (issue 17): what a browser test cannot see quickly. Pages
without a session redirect to the sign-in; a wrong key is refused; the cookie is signed,
HttpOnly and SameSite=Strict, and dies at sign-out; every POST needs its CSRF token; the
`/v1` API ignores the cookie; the retry-everything run reports its progress."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.api.test_groups import lease, make_group
from tests.api.test_groups import publish as publish_to_group
from tests.conftest import API_KEY, Api
from tests.e2e.receiver import eventually
from tests.store.test_lanes import claim, completion, dest, publish
from tidings.api.app import create_app, start_site
from tidings.api.auth import digest
from tidings.dashboard.sessions import SIGNED_OUT

PAGES = ["/", "/ui/destinations", "/ui/events", "/ui/dead", "/ui/users", "/ui/uploads"]


@pytest.fixture
async def browser(api: Api) -> AsyncIterator[aiohttp.ClientSession]:
    """A cookie-keeping client without the API key: what a browser is."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


async def sign_in(api: Api, browser: aiohttp.ClientSession, key: str = API_KEY) -> str:
    """Sign in; answer the CSRF token the overview page carries."""
    async with browser.post(
        api.url + "/ui/signin", data={"key": key, "next": "/"}, allow_redirects=False
    ) as r:
        assert r.status == 303, await r.text()
        assert r.headers["Location"] == "/"
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=28800" in cookie
        assert key not in cookie
    async with browser.get(api.url + "/") as r:
        assert r.status == 200
        text = await r.text()
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', text)
    assert match
    return match.group(1)


async def status_with_cookie(api: Api, token: str) -> int:
    async with (
        aiohttp.ClientSession(cookies={"tidings_session": token}) as s,
        s.get(api.url + "/", allow_redirects=False) as r,
    ):
        return r.status


async def test_without_a_session_every_page_goes_to_the_sign_in(
    api: Api, browser: aiohttp.ClientSession
) -> None:
    for path in PAGES:
        async with browser.get(api.url + path, allow_redirects=False) as r:
            assert r.status == 303, path
            assert r.headers["Location"].startswith("/ui/signin?next=")
    async with browser.get(api.url + "/ui/stream", headers={"Accept": "text/event-stream"}) as r:
        assert r.status == 401
    async with browser.post(api.url + "/ui/destinations/x/pause", data={}) as r:
        assert r.status == 401
    async with browser.get(api.url + "/ui/signin") as r:
        assert r.status == 200
        assert 'type="password"' in await r.text()


async def test_a_wrong_key_is_refused_and_sets_no_cookie(
    api: Api, browser: aiohttp.ClientSession
) -> None:
    async with browser.post(
        api.url + "/ui/signin", data={"key": "tdk_wrong", "next": "/"}, allow_redirects=False
    ) as r:
        assert r.status == 401
        assert "Set-Cookie" not in r.headers
        assert "That API key is not valid." in await r.text()
    async with browser.get(api.url + "/", allow_redirects=False) as r:
        assert r.status == 303


async def test_sign_in_pages_and_sign_out(api: Api, browser: aiohttp.ClientSession) -> None:
    csrf = await sign_in(api, browser)
    for path in PAGES:
        async with browser.get(api.url + path) as r:
            assert r.status == 200, path
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    async with browser.get(api.url + "/ui/static/dashboard.js") as r:
        assert r.status == 200 and "EventSource" in await r.text()
    async with browser.get(api.url + "/ui/static/secrets.txt") as r:
        assert r.status == 404
    # The cookie is no API key: /v1 still asks for the Bearer key.
    async with browser.get(api.url + "/v1/events") as r:
        assert r.status == 401
    old = {c.key: c.value for c in browser.cookie_jar}["tidings_session"]
    # an earlier sign-out whose cookie has expired since: nobody needs it kept
    await api.store.set_meta_if_absent(SIGNED_OUT + "long-ago", str(int(time.time()) - 301))
    # and one expired a moment ago: kept a while, for a process whose clock lags
    await api.store.set_meta_if_absent(SIGNED_OUT + "just-now", str(int(time.time()) - 1))
    async with browser.post(
        api.url + "/ui/signout", data={"csrf": csrf}, allow_redirects=False
    ) as r:
        assert r.status == 303 and r.headers["Location"] == "/ui/signin"
    # The old cookie, sent again, is dead too.
    assert await status_with_cookie(api, old) == 303
    assert await api.store.get_meta(SIGNED_OUT + "long-ago") is None
    assert await api.store.get_meta(SIGNED_OUT + "just-now") is not None


async def test_a_sign_out_ends_the_session_in_every_api_process(
    api: Api, browser: aiohttp.ClientSession
) -> None:
    """Two API processes on one store (a second app on the same store stands for the
    second process): a cookie signed out on one is refused by the other at once, and
    an overview stream the other holds open for it ends."""
    runner, port = await start_site(
        create_app(api.settings, api.store, [digest(API_KEY)]), "127.0.0.1", 0
    )
    other = f"http://127.0.0.1:{port}"
    try:
        csrf = await sign_in(api, browser)
        token = {c.key: c.value for c in browser.cookie_jar}["tidings_session"]
        async with (
            aiohttp.ClientSession(cookies={"tidings_session": token}) as copied,
            copied.get(other + "/", allow_redirects=False) as r,
        ):
            assert r.status == 200  # the same session is good on both
        async with (
            aiohttp.ClientSession(cookies={"tidings_session": token}) as copied,
            copied.get(other + "/ui/stream", headers={"Accept": "text/event-stream"}) as stream,
        ):
            assert (await stream.content.readline()).startswith(b"event: overview")
            async with browser.post(
                api.url + "/ui/signout", data={"csrf": csrf}, allow_redirects=False
            ) as r:
                assert r.status == 303
            async with copied.get(other + "/", allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"].startswith("/ui/signin")
            seen = b""
            async with asyncio.timeout(10):
                while b"event: signedout" not in seen:
                    line = await stream.content.readline()
                    assert line, seen
                    seen += line
    finally:
        await runner.cleanup()


async def test_bad_form_input_and_unknown_things_answer_a_page_not_json(
    api: Api, browser: aiohttp.ClientSession
) -> None:
    csrf = await sign_in(api, browser)
    d = await api.sdk.create_destination("webhook", ["*"], url="https://example.com/h")
    back = api.url + "/ui/destinations"
    async with browser.post(
        f"{api.url}/ui/destinations/{d.id}/replay",
        data={"csrf": csrf, "state": "dead", "since": "yesterday"},
        headers={"Referer": back},
    ) as r:
        assert r.status == 400 and r.content_type == "text/html"
        text = await r.text()
        assert "<code>since</code>" in text and 'href="/ui/destinations"' in text
    async with browser.post(
        f"{api.url}/ui/destinations/dst_nope/pause",
        data={"csrf": csrf},
        headers={"Referer": "https://elsewhere.example/ui/x"},  # never a way back off-site
    ) as r:
        assert r.status == 404 and r.content_type == "text/html"
        text = await r.text()
        assert "no such destination" in text and 'href="/">Back' in text
    async with browser.get(api.url + "/ui/events/evt_nope") as r:
        assert r.status == 404 and r.content_type == "text/html"


async def test_a_forged_cookie_and_a_foreign_next_are_refused(
    api: Api, browser: aiohttp.ClientSession
) -> None:
    await sign_in(api, browser)
    token = {c.key: c.value for c in browser.cookie_jar}["tidings_session"]
    expires, rest = token.split(".", 1)
    forged = f"{int(expires) + 86400}.{rest}"  # a longer life, same signature
    assert await status_with_cookie(api, forged) == 303
    assert await status_with_cookie(api, token) == 200
    async with browser.post(
        api.url + "/ui/signin",
        data={"key": API_KEY, "next": "//evil.example/"},
        allow_redirects=False,
    ) as r:
        assert r.headers["Location"] == "/"


async def test_every_post_needs_its_csrf_token(api: Api, browser: aiohttp.ClientSession) -> None:
    d = await dest(api.store)
    csrf = await sign_in(api, browser)
    url = f"{api.url}/ui/destinations/{d}/pause"
    for data, headers in (({}, {}), ({"csrf": "wrong"}, {}), ({}, {"X-CSRF-Token": "x"})):
        async with browser.post(url, data=data, headers=headers, allow_redirects=False) as r:
            assert r.status == 403
            assert "CSRF" in await r.text()
    got = await api.store.get_destination(d)
    assert got is not None and got.state == "active"
    async with browser.post(url, data={"csrf": csrf}, allow_redirects=False) as r:
        assert r.status == 303
    got = await api.store.get_destination(d)
    assert got is not None and got.state == "paused"
    # The header form (what dashboard.js sends) works as well.
    async with browser.post(
        f"{api.url}/ui/destinations/{d}/resume",
        headers={"X-CSRF-Token": csrf},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
    got = await api.store.get_destination(d)
    assert got is not None and got.state == "active"


async def test_retry_everything_reports_progress_until_done(
    api: Api, browser: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tidings.dashboard.views.RETRY_CHUNK", 7)  # 30 take 5 chunks
    d = await dest(api.store)
    await publish(api.store, *[f"k{i}" for i in range(30)])
    claims = await claim(api.store, d)
    await api.store.complete([completion(c, "dead") for c in claims], pause_after=0)
    assert await api.store.count_deliveries(d, "dead", None, None, 100) == 30
    csrf = await sign_in(api, browser)
    async with browser.get(api.url + "/ui/dead") as r:
        assert (await r.text()).count('name="id"') == 30
    async with browser.post(
        api.url + "/ui/dead/retry-all",
        data={"csrf": csrf, "destination": d},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
        job = re.search(r"job=([^&]+)", r.headers["Location"])
        assert job
    progress: dict[str, object] = {}

    async def finished() -> bool:
        async with browser.get(f"{api.url}/ui/jobs/{job.group(1)}") as r:
            progress.update(await r.json())
        return progress["finished"] is True

    await eventually(finished, 10, lambda: f"the retry run did not finish: {progress}")
    assert progress == {"done": 30, "skipped": 0, "finished": True, "error": None}
    assert await api.store.count_deliveries(d, "dead", None, None, 100) == 0
    assert await api.store.count_deliveries(d, "pending", None, None, 100) == 30


async def test_event_filters_page_by_cursor_and_time(
    api: Api, browser: aiohttp.ClientSession
) -> None:
    await publish(api.store, *[f"k{i}" for i in range(60)])
    await publish(api.store, "special", topic="invoice.sent")
    await sign_in(api, browser)
    async with browser.get(api.url + "/ui/events?topic=order.*") as r:
        text = await r.text()
    assert text.count('href="/ui/events/evt_') == 50
    nxt = re.search(r'<a href="\?([^"]+)" rel="next">', text)
    assert nxt
    async with browser.get(api.url + "/ui/events?" + nxt.group(1).replace("&amp;", "&")) as r:
        assert (await r.text()).count('href="/ui/events/evt_') == 10
    async with browser.get(api.url + "/ui/events?key=special") as r:
        text = await r.text()
        assert text.count('href="/ui/events/evt_') == 1 and "invoice.sent" in text
    async with browser.get(api.url + "/ui/events?since=2999-01-01T00:00") as r:
        assert "No event matches" in await r.text()
    async with browser.get(api.url + "/ui/events?until=2000-01-01T00:00") as r:
        assert "No event matches" in await r.text()
    async with browser.get(api.url + "/ui/events?since=2000-01-01T00:00&topic=invoice.*") as r:
        assert (await r.text()).count('href="/ui/events/evt_') == 1
    async with browser.get(api.url + "/ui/events?since=yesterday") as r:
        assert r.status == 400


@pytest.mark.parametrize("api", [{"watch_dir": "/tmp/tidings-dashboard-test-watch"}], indirect=True)
async def test_uploads_and_watched_reports_are_listed(
    api: Api, browser: aiohttp.ClientSession
) -> None:
    watched = Path(api.settings.watch_dir or "")
    shutil.rmtree(watched, ignore_errors=True)
    done = watched / "done"
    done.mkdir(parents=True)
    try:
        await check_uploads_page(api, browser, done)
    finally:
        shutil.rmtree(watched, ignore_errors=True)


async def check_uploads_page(api: Api, browser: aiohttp.ClientSession, done: Path) -> None:
    report = {"file": "alerts.csv", "rows": 7, "events": 6, "duplicates": 1, "bad_rows": 0}
    (done / "alerts.csv.report.json").write_text(json.dumps(report))
    status, body = await api.call(
        "POST", "/v1/uploads?name=users.csv", data=b"alice,hi\nbob,hello\n,nobody\n"
    )
    assert status == 202, body
    assert isinstance(body, dict)
    await sign_in(api, browser)
    async with browser.get(api.url + "/ui/uploads") as r:
        text = await r.text()
    assert body["upload_id"] in text and "users.csv" in text
    assert "alerts.csv" in text and "<td>7</td>" in text
    async with browser.get(api.url + "/ui/uploads?id=" + body["upload_id"]) as r:
        text = await r.text()
    assert "the user id (first field) is empty" in text


async def test_pull_groups_show_waiting_and_leased(
    api: Api, browser: aiohttp.ClientSession
) -> None:
    await sign_in(api, browser)
    async with browser.get(api.url + "/ui/destinations") as r:
        assert "No pull group" in await r.text()
    await make_group(api, ordering="none")
    for n in range(5):
        await publish_to_group(api, f"k{n}", n)
    assert len(await lease(api, max=2)) == 2
    async with browser.get(api.url + "/ui/destinations") as r:
        text = await r.text()
    row = re.search(r'<tr data-group="billing">(.*?)</tr>', text, re.S)
    assert row, text
    assert re.search(r"<td data-waiting>3</td>", row.group(1))
    assert re.search(r"<td data-leased>2</td>", row.group(1))
