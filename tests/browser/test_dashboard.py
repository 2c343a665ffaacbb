"""The dashboard in a real headless Chromium against a real `tidings serve` and a real
webhook receiver: sign-in and out, the live overview, an event and its attempts, retrying
a dead letter until it is delivered, pausing and resuming, replay with its preview, and
a chain drawn as SVG."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.async_api import expect

from tests.browser.conftest import sign_in
from tests.e2e.procs import TidingsProcess
from tests.e2e.receiver import Receiver, TidingsApi, always, eventually, ok

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def dead_destination(api: TidingsApi, receiver: Receiver, path: str = "/hook") -> str:
    """A destination that gives up after one attempt, answering 500 for now."""
    receiver.set(path, always(500, "no thanks"))
    d = await api.create_destination(
        name="billing",
        url=receiver.url(path),
        topics=["order.*"],
        retry={"max_attempts": 1},
    )
    return str(d["id"])


async def test_sign_in_refuses_a_wrong_key_then_signs_in_and_out(
    tidings: TidingsProcess, page: Any
) -> None:
    await page.goto(tidings.url + "/ui/events")
    await expect(page).to_have_url(re.compile(r"/ui/signin\?next="))
    await page.get_by_label("API key").fill("tdk_wrong")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("That API key is not valid.")
    assert await page.context.cookies() == []

    await page.get_by_label("API key").fill("tdk_e2e_key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(tidings.url + "/ui/events")  # back where it was going
    await expect(page.get_by_role("heading", name="Events")).to_be_visible()
    (cookie,) = await page.context.cookies()
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert time.time() + 3600 < cookie["expires"] < time.time() + 9 * 3600
    assert "tdk_e2e_key" not in cookie["value"]
    assert await page.evaluate("() => localStorage.length + sessionStorage.length") == 0

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(tidings.url + "/ui/signin")
    assert await page.context.cookies() == []
    await page.goto(tidings.url + "/")
    await expect(page).to_have_url(re.compile(r"/ui/signin"))


async def test_overview_shows_an_event_arrive_without_reloading(
    tidings: TidingsProcess, api: TidingsApi, receiver: Receiver, page: Any
) -> None:
    receiver.set("/hook", ok())
    await api.create_destination(url=receiver.url("/hook"), topics=["order.*"])
    await sign_in(page, tidings.url)
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await expect(page.locator("#live")).to_have_class(re.compile("on"))
    marker = await page.evaluate("() => { window.notReloaded = 1; return 1 }")
    published = await api.publish("order.created", "k1", {"n": 1})
    row = page.locator(f'#latest tr[data-event="{published["id"]}"]')
    await expect(row).to_be_visible(timeout=8_000)
    await expect(row).to_contain_text("order.created")
    await expect(page.locator('[data-fig="events_total"]')).not_to_have_text("0")
    assert await page.evaluate("() => window.notReloaded") == marker  # the same page


async def test_a_dead_delivery_retried_turns_delivered(
    tidings: TidingsProcess, api: TidingsApi, receiver: Receiver, page: Any
) -> None:
    await dead_destination(api, receiver)
    event = await api.publish("order.created", "k1", {"n": 1})
    await sign_in(page, tidings.url)

    # Dead letters list it; its event shows the attempt: status, error, response body.
    await page.get_by_role("link", name="Dead letters").click()
    row = page.locator("#dead tbody tr", has_text=event["id"])
    for _ in range(40):
        if await row.count():
            break
        await page.wait_for_timeout(250)
        await page.reload()
    await expect(row).to_contain_text("billing")
    await row.get_by_role("link", name=event["id"]).click()
    await expect(page.get_by_role("heading", name=re.compile(event["id"]))).to_be_visible()
    delivery = page.locator("section.delivery")
    await expect(delivery.locator("[data-state]")).to_have_text("dead")
    attempt = delivery.locator("table.attempts tbody tr")
    await expect(attempt).to_have_count(1)
    await expect(attempt).to_contain_text("http_error")
    await expect(attempt).to_contain_text("500")
    await expect(attempt).to_contain_text("no thanks")

    # The receiver recovers; retry from the dead letters (a selection of one).
    receiver.set("/hook", ok())
    await page.get_by_role("link", name="Dead letters").click()
    await page.get_by_label(re.compile("^Select dlv_")).check()
    await page.get_by_role("button", name="Retry selected").click()
    await expect(page.get_by_role("status").first).to_contain_text("1 queued again")

    await page.goto(f"{tidings.url}/ui/events/{event['id']}")
    for _ in range(40):
        if await delivery.locator("[data-state]").inner_text() == "delivered":
            break
        await page.wait_for_timeout(250)
        await page.reload()
    await expect(delivery.locator("[data-state]")).to_have_text("delivered")
    attempts = delivery.locator("table.attempts tbody tr")
    await expect(attempts).to_have_count(2)  # every attempt stays listed, oldest first
    await expect(attempts.nth(1)).to_contain_text("delivered")
    await expect(attempts.nth(1)).to_contain_text("200")
    assert receiver.delivered_ids("/hook")


async def test_pause_resume_and_replay_with_its_preview(
    tidings: TidingsProcess, api: TidingsApi, receiver: Receiver, page: Any
) -> None:
    destination_id = await dead_destination(api, receiver)
    event = await api.publish("order.created", "k1", {"n": 1})

    async def is_dead() -> bool:
        return (await api.states(destination_id)).get("dead") == 1

    await eventually(is_dead, 10, "the delivery did not die")
    await sign_in(page, tidings.url)
    await page.get_by_role("link", name="Destinations").click()
    row = page.locator('tr[data-destination="billing"]')
    await expect(row.locator("[data-state]")).to_have_text("active")

    await row.get_by_role("button", name="Pause billing").click()
    await expect(row.locator("[data-state]")).to_have_text("paused")
    assert (await api.destination(destination_id))["state"] == "paused"
    await row.get_by_role("button", name="Resume billing").click()
    await expect(row.locator("[data-state]")).to_have_text("active")
    assert (await api.destination(destination_id))["state"] == "active"

    # Replay: the preview counts, then the replay sends it again.
    receiver.set("/hook", ok())
    await row.get_by_text("Replay…").click()
    await row.get_by_role("button", name="Preview").click()
    await expect(page.locator("#preview")).to_contain_text("1 dead delivery")
    await page.get_by_role("button", name="Replay 1").click()
    await expect(page.get_by_role("status").first).to_contain_text("1 queued again")

    async def delivered() -> bool:
        return event["id"] in receiver.delivered_ids("/hook")

    await eventually(delivered, 10, "the replayed delivery did not arrive")


async def test_a_chain_is_drawn_with_each_node_colored_by_its_deliveries(
    tidings: TidingsProcess, api: TidingsApi, receiver: Receiver, page: Any
) -> None:
    receiver.set("/ok", ok())
    await api.create_destination(url=receiver.url("/ok"), topics=["order.*"])
    root = await api.publish("order.created", "k1", {"n": 1})
    ids = [root["id"]]
    for topic, cause in (("order.paid", 0), ("order.shipped", 1), ("invoice.sent", 0)):
        status, body = await api.call(
            "POST",
            "/v1/events",
            {"topic": topic, "key": "k1", "causation_id": ids[cause], "correlation_id": ids[0]},
        )
        assert status == 202, body
        ids.append(body["id"])
    await eventually(lambda: len(receiver.delivered_ids("/ok")) == 3, 10, "not delivered")

    await sign_in(page, tidings.url)
    await page.goto(f"{tidings.url}/ui/events/{ids[1]}")
    svg = page.get_by_role("img", name=re.compile("Causation tree of 4 events"))
    await expect(svg).to_be_visible()
    nodes = svg.locator("[data-node]")
    await expect(nodes).to_have_count(4)
    states = {
        await n.get_attribute("data-node"): await n.get_attribute("data-node-state")
        for n in await nodes.all()
    }
    assert states == {ids[0]: "delivered", ids[1]: "delivered", ids[2]: "delivered", ids[3]: "none"}
    assert await svg.locator(".current").get_attribute("data-node") == ids[1]
    assert await svg.locator("path.edge").count() == 3
    # A node is a link to its event.
    await svg.locator(f'[data-node="{ids[2]}"]').click()
    await expect(page).to_have_url(f"{tidings.url}/ui/events/{ids[2]}")


UNLABELLED = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, button, textarea')].filter(el => {
  const named = el.getAttribute('aria-label') || (el.labels && el.labels.length)
    || (el.tagName === 'BUTTON' && el.textContent.trim());
  return !named;
}).map(el => el.outerHTML)"""


async def test_every_page_labels_its_controls_and_fits_a_narrow_screen(
    tidings: TidingsProcess, api: TidingsApi, receiver: Receiver, browser: Any
) -> None:
    receiver.set("/hook", ok())
    await api.create_destination(name="billing", url=receiver.url("/hook"), topics=["order.*"])
    event = await api.publish("order.created", "k1", {"n": 1})
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    try:
        await sign_in(page, tidings.url)
        await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        for path in (
            "/",
            "/ui/destinations",
            "/ui/events",
            f"/ui/events/{event['id']}",
            "/ui/dead",
            "/ui/users?user=alice",
            "/ui/uploads",
        ):
            await page.goto(tidings.url + path)
            assert await page.evaluate(UNLABELLED) == [], path
            # Wide tables scroll inside their box; the page itself does not.
            width = await page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width} px wide on a 390 px screen"
        # The keyboard's first stop is the skip link; Enter on a focused link follows it.
        await page.goto(tidings.url + "/ui/destinations")
        await page.keyboard.press("Tab")
        assert await page.evaluate("() => document.activeElement.textContent") == (
            "Skip to content"
        )
        await page.keyboard.press("Tab")
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(tidings.url + "/")
    finally:
        await context.close()
