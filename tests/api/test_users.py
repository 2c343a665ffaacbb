"""Users' inboxes over HTTP (API.md "Users, inboxes, WebSocket") and the notification
platform's calls for them (API.md "Compatibility")."""

from __future__ import annotations

import aiohttp

from tests.api.test_api import expect_error, publish, send
from tests.conftest import Api


async def test_inbox_lists_messages_after_an_offset_and_pages(api: Api) -> None:
    first = await publish(api, recipients=["u1", "u2"], payload={"n": 1})
    for n in range(2, 6):
        await publish(api, recipients=["u1"], payload={"n": n})
    status, body = await api.call("GET", "/v1/users/u1/inbox")
    assert status == 200, body
    assert set(body) == {"messages", "next", "top"}  # type: ignore[arg-type]
    assert body["top"] == 5 and body["next"] is None  # type: ignore[index]
    messages = body["messages"]  # type: ignore[index]
    assert [m["offset"] for m in messages] == [1, 2, 3, 4, 5]
    assert [m["payload"] for m in messages] == [{"n": n} for n in range(1, 6)]
    assert set(messages[0]) == {"offset", "id", "topic", "payload", "received_at"}
    assert messages[0]["id"] == first["id"]
    assert messages[0]["topic"] == "order.created"
    assert messages[0]["received_at"] == first["received_at"]
    # Pages: `next` is the `after` of the next page, null on the last.
    seen, after, pages = [], 0, 0
    while pages < 10:
        status, page = await api.call("GET", f"/v1/users/u1/inbox?after={after}&limit=2")
        assert status == 200, page
        pages += 1
        seen += [m["offset"] for m in page["messages"]]  # type: ignore[index]
        if page["next"] is None:  # type: ignore[index]
            break
        after = page["next"]  # type: ignore[index]
    assert (seen, pages) == ([1, 2, 3, 4, 5], 3)
    status, other = await api.call("GET", "/v1/users/u2/inbox?after=0")
    assert [m["payload"] for m in other["messages"]] == [{"n": 1}]  # type: ignore[index]
    status, empty = await api.call("GET", "/v1/users/nobody/inbox")
    assert (status, empty) == (200, {"messages": [], "next": None, "top": 0})


async def test_inbox_ack(api: Api) -> None:
    for _ in range(3):
        await publish(api, recipients=["u1"])
    status, body = await api.call("POST", "/v1/users/u1/inbox/ack", {"up_to": 2})
    assert (status, body) == (200, {"acked": 2})
    status, body = await api.call("POST", "/v1/users/u1/inbox/ack", {"up_to": 1})
    assert (status, body) == (200, {"acked": 2})  # never backwards
    status, body = await api.call("POST", "/v1/users/u1/inbox/ack", {"up_to": 50})
    assert (status, body) == (200, {"acked": 3})  # never past the top
    status, body = await api.call("POST", "/v1/users/nobody/inbox/ack", {"up_to": 5})
    assert (status, body) == (200, {"acked": 0})


async def test_inbox_bad_input_names_the_field(api: Api) -> None:
    for query, field in (
        ("after=x", "after"),
        ("after=", "after"),
        ("after=-1", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=abc", "cursor"),
    ):
        expect_error(await send(api, "GET", f"/v1/users/u1/inbox?{query}"), 400, field=field)
    long_user = "u" * 256
    expect_error(await send(api, "GET", f"/v1/users/{long_user}/inbox"), 400, field="user_id")
    for bad in ({}, {"up_to": "3"}, {"up_to": -1}, {"up_to": 1, "extra": 2}):
        reply = await send(api, "POST", "/v1/users/u1/inbox/ack", json=bad)
        expect_error(reply, 400)
    expect_error(await send(api, "POST", "/v1/users/u1/inbox/ack", data=b"{"), 400)


async def test_notifications_make_an_event_for_the_recipient(api: Api) -> None:
    status, body = await api.call(
        "POST",
        "/notifications",
        {"user_id": "u7", "title": "Hi", "message": "Order shipped", "data": {"order": 9}},
    )
    assert status == 202, body
    event = await api.store.get_event(str(body["id"]))  # type: ignore[index]
    assert event is not None
    assert (event.topic, event.key, event.recipients) == ("notification", "u7", ["u7"])
    status, other = await api.call("POST", "/notifications", {"user_id": 7, "topic": "promo.new"})
    assert status == 202, other
    status, inbox = await api.call("GET", "/v1/users/u7/inbox")
    assert [m["payload"] for m in inbox["messages"]] == [  # type: ignore[index]
        {"title": "Hi", "message": "Order shipped", "data": {"order": 9}}
    ]
    status, seven = await api.call("GET", "/v1/users/7/inbox")
    assert [(m["topic"], m["payload"]) for m in seven["messages"]] == [("promo.new", {})]  # type: ignore[index]
    for bad in ({"title": "x"}, {"user_id": ""}, {"user_id": "u" * 256}):
        expect_error(await send(api, "POST", "/notifications", json=bad), 400, field="user_id")
    reply = await send(api, "POST", "/notifications", json={"user_id": "u", "topic": "bad topic"})
    expect_error(reply, 400, field="topic")


async def test_offline_queue_is_the_unacked_inbox(api: Api) -> None:
    for n in range(4):
        await api.call("POST", "/notifications", {"user_id": "u9", "message": f"m{n}"})
    status, body = await api.call("GET", "/notifications/offline/u9")
    assert status == 200, body
    assert [m["offset"] for m in body["messages"]] == [1, 2, 3, 4]  # type: ignore[index]
    status, acked = await api.call("POST", "/notifications/offline/u9/ack", {"up_to": 3})
    assert (status, acked) == (200, {"acked": 3})
    status, body = await api.call("GET", "/notifications/offline/u9")
    assert [m["payload"]["message"] for m in body["messages"]] == ["m3"]  # type: ignore[index]
    status, page = await api.call("GET", "/notifications/offline/nobody?limit=5")
    assert (status, page) == (200, {"messages": [], "next": None, "top": 0})
    expect_error(await send(api, "GET", "/notifications/offline/u9?after=1"), 400, field="after")


async def test_the_inbox_calls_need_the_api_key(api: Api) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for method, path in (
            ("GET", "/v1/users/u1/inbox"),
            ("POST", "/v1/users/u1/inbox/ack"),
            ("POST", "/notifications"),
            ("GET", "/notifications/offline/u1"),
            ("POST", "/notifications/offline/u1/ack"),
        ):
            async with anonymous.request(method, api.url + path, json={"up_to": 1}) as r:
                assert r.status == 401, (method, path)
