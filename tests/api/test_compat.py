"""The calls of the systems Tidings replaces, with their own request shapes."""

from __future__ import annotations

import aiohttp
import msgspec

from tests.api.test_api import create_destination, expect_error, send
from tests.conftest import Api
from tidings.model import Answer, AttemptResult, ClaimAsk, Completion
from tidings.timeutil import now_us


async def test_publish_event_takes_the_redis_seeds_body(api: Api) -> None:
    dest = await create_destination(api, topics=["event.published"])
    status, body = await api.call(
        "POST", "/publish-event", {"userId": "user-id-1", "payload": "Event payload"}
    )
    assert status == 202 and isinstance(body, dict), body
    assert str(body["id"]).startswith("evt_") and body["deliveries"] == 1
    event = await api.store.get_event(str(body["id"]))
    assert event is not None
    assert (event.topic, event.key, event.recipients) == (
        "event.published",
        "user-id-1",
        ["user-id-1"],
    )
    assert msgspec.json.decode(bytes(event.payload)) == "Event payload"
    status, numeric = await api.call("POST", "/publish-event", {"userId": 42, "payload": {"a": 1}})
    assert status == 202, numeric
    (delivery_page) = await api.store.list_deliveries(destination_id=str(dest["id"]))
    assert len(delivery_page.items) == 2
    for bad in ({"payload": "x"}, {"userId": ""}, {"userId": True}, {"userId": "u" * 256}):
        expect_error(await send(api, "POST", "/publish-event", json=bad), 400, field="userId")
    expect_error(await send(api, "POST", "/publish-event", data=b"[1"), 400)


async def test_the_compat_calls_need_the_api_key(api: Api) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for method, path in (("POST", "/publish-event"), ("POST", "/upload"), ("GET", "/retry")):
            async with anonymous.request(method, api.url + path, json={"userId": "u"}) as r:
                assert r.status == 401, (method, path)


async def test_upload_under_its_old_name_takes_a_form_with_field_file(api: Api) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"125\n126\n", filename="users.csv", content_type="text/csv")
    status, report = await api.call("POST", "/upload?message=Order%20placed", data=form)
    assert status == 202 and isinstance(report, dict), report
    assert (report["file"], report["events"], report["state"]) == ("users.csv", 2, "done")
    status, page = await api.call("GET", "/v1/events?topic=file.row")
    payloads = [e["payload"] for e in page["items"]]  # type: ignore[index]
    assert sorted((p["userId"], p["alertMessage"]) for p in payloads) == [
        ("125", "Order placed"),
        ("126", "Order placed"),
    ]


async def test_retry_sends_every_dead_delivery_again(api: Api) -> None:
    a = await create_destination(api, topics=["order.*"], ordering="none")
    b = await create_destination(api, topics=["order.*"], ordering="none")
    for i in range(3):
        await api.call("POST", "/v1/events", {"topic": "order.created", "key": f"k{i}"})
    store = api.store
    asks = [ClaimAsk(destination_id=str(d["id"]), limit=10, lease_us=30_000_000) for d in (a, b)]
    claims = (await store.claim("w1", asks, now_us())).claims
    assert len(claims) == 6
    failed = AttemptResult(
        at=now_us(), outcome="http_error", answer=Answer(500), latency_ms=1.0, error="HTTP 500"
    )
    await store.complete(
        [
            Completion(
                delivery_id=c.delivery_id,
                destination_id=c.destination_id,
                lane_key=c.lane_key,
                owner="w1",
                attempt=failed,
                state="dead",
                next_attempt_at=None,
                release_lane=True,
                failed=True,
            )
            for c in claims[:5]
        ],
        pause_after=0,
    )
    for method in ("GET", "POST"):
        status, body = await api.call(method, "/retry")
        assert status == 202, body
        assert body == {"retried": 5 if method == "GET" else 0}
    assert (await store.list_deliveries(state="dead")).items == []
    assert len((await store.list_deliveries(state="pending")).items) == 5
