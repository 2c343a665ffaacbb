"""The HTTP API over real HTTP (the `api` fixture serves it on 127.0.0.1).

Every error answer is checked by `expect_error`: status, `application/json`, and exactly
the body `{"error": {"code", "message", "field"}}` of API.md.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.conftest import API_KEY, Api
from tidings.api.app import create_app
from tidings.api.events import batch_member_key

# --------------------------------------------------------------------------- helpers


@dataclass
class Reply:
    status: int
    content_type: str
    body: Any
    headers: Any


async def send(
    api: Api,
    method: str,
    path: str,
    *,
    session: aiohttp.ClientSession | None = None,
    **kwargs: Any,
) -> Reply:
    async with (session or api.session).request(method, api.url + path, **kwargs) as r:
        if r.content_type == "application/json":
            body: Any = await r.json()
        else:
            body = await r.text()
        return Reply(r.status, r.content_type, body, r.headers)


_UNSET: Any = object()
_CODE = re.compile(r"^[a-z][a-z0-9_]*$")


def expect_error(
    reply: Reply, status: int, code: str | None = None, field: str | None = _UNSET
) -> dict[str, Any]:
    """Assert the standard JSON error answer; return its `error` object."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.content_type == "application/json", reply.content_type
    assert isinstance(reply.body, dict), reply.body
    assert set(reply.body) == {"error"}, reply.body
    error = reply.body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"code", "message", "field"}, error
    assert isinstance(error["code"], str) and _CODE.match(error["code"]), error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["field"] is None or isinstance(error["field"], str), error
    if code is not None:
        assert error["code"] == code, error
    if field is not _UNSET:
        assert error["field"] == field, error
    return error


def parse_iso(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.removesuffix("Z") + "+00:00")


def assert_recent(text: str) -> None:
    moment = parse_iso(text)
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=1), text


HOOK = {"kind": "webhook", "url": "https://example.com/hook"}


def destination_body(**fields: Any) -> dict[str, Any]:
    return {**HOOK, "topics": ["order.*"], **fields}


async def create_destination(api: Api, **fields: Any) -> dict[str, Any]:
    status, body = await api.call("POST", "/v1/destinations", json=destination_body(**fields))
    assert status == 201, body
    assert isinstance(body, dict)
    return body


async def publish(api: Api, **fields: Any) -> dict[str, Any]:
    status, body = await api.call("POST", "/v1/events", json={"topic": "order.created", **fields})
    assert status == 202, body
    assert isinstance(body, dict)
    return body


async def collect(api: Api, path: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Follow `next` cursors; answer every item and the number of pages."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    sep = "&" if "?" in path else "?"
    while True:
        query = f"{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        status, body = await api.call("GET", path + query)
        assert status == 200, body
        assert isinstance(body, dict)
        assert set(body) == {"items", "next"}
        pages += 1
        assert len(body["items"]) <= limit
        items.extend(body["items"])
        if body["next"] is None:
            return items, pages
        assert len(body["items"]) == limit
        cursor = body["next"]


async def event_count(api: Api) -> int:
    items, _ = await collect(api, "/v1/events", 1000)
    return len(items)


# --------------------------------------------------------------------------- POST /v1/events


async def test_publish_answers_202_with_id_and_time(api: Api) -> None:
    status, body = await api.call("POST", "/v1/events", json={"topic": "order.created"})
    assert status == 202
    assert isinstance(body, dict)
    assert set(body) == {"id", "received_at", "deliveries"}
    assert re.fullmatch(r"evt_[0-9A-Z]{26}", body["id"])
    assert_recent(body["received_at"])
    assert body["deliveries"] == 0


async def test_publish_stores_the_event_and_fans_out(api: Api) -> None:
    hook = await create_destination(api, name="orders")
    await create_destination(api, name="users", topics=["user.*"])
    event = {
        "topic": "order.created",
        "key": "user-1",
        "payload": {"any": "json", "n": [1, 2.5, None, True], "nested": {"a": "b"}},
        "recipients": ["user-1", "user-2"],
        "causation_id": "evt_cause",
        "correlation_id": "corr-1",
    }
    accepted = await publish(api, **event)
    assert accepted["deliveries"] == 1

    status, shown = await api.call("GET", f"/v1/events/{accepted['id']}")
    assert status == 200
    assert isinstance(shown, dict)
    assert shown["id"] == accepted["id"]
    assert shown["received_at"] == accepted["received_at"]
    for name, value in event.items():
        assert shown[name] == value, name
    assert shown["idempotency_key"] is None
    (delivery,) = shown["deliveries"]
    assert delivery["event_id"] == accepted["id"]
    assert delivery["destination_id"] == hook["id"]
    assert delivery["key"] == "user-1"
    assert delivery["state"] == "pending"
    assert delivery["attempt_count"] == 0
    assert_recent(delivery["next_attempt_at"])


async def test_idempotency_key_header(api: Api) -> None:
    await create_destination(api)
    headers = {"Idempotency-Key": "order-42"}
    first = await send(api, "POST", "/v1/events", json={"topic": "order.paid"}, headers=headers)
    assert first.status == 202
    repeat = await send(
        api, "POST", "/v1/events", json={"topic": "order.other", "key": "x"}, headers=headers
    )
    assert repeat.status == 200
    assert repeat.body == first.body  # same id, time and delivery count
    assert first.body["deliveries"] == 1

    # The body field and the header are the same key.
    status, body = await api.call(
        "POST", "/v1/events", json={"topic": "order.paid", "idempotency_key": "order-42"}
    )
    assert (status, body) == (200, first.body)
    same = await send(
        api,
        "POST",
        "/v1/events",
        json={"topic": "order.paid", "idempotency_key": "order-42"},
        headers=headers,
    )
    assert (same.status, same.body) == (200, first.body)

    mismatch = await send(
        api,
        "POST",
        "/v1/events",
        json={"topic": "order.paid", "idempotency_key": "other"},
        headers=headers,
    )
    expect_error(mismatch, 400, field="idempotency_key")

    too_long = await send(
        api, "POST", "/v1/events", json={"topic": "a"}, headers={"Idempotency-Key": "k" * 256}
    )
    expect_error(too_long, 400, field="Idempotency-Key")

    items, _ = await collect(api, "/v1/events", 100)
    assert [e["id"] for e in items] == [first.body["id"]]
    assert items[0]["topic"] == "order.paid"
    assert items[0]["idempotency_key"] == "order-42"
    status, deliveries = await api.call("GET", "/v1/deliveries")
    assert isinstance(deliveries, dict)
    assert len(deliveries["items"]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "topic"),
        ({"key": "k", "payload": {}}, "topic"),
        ({"topic": ""}, "topic"),
        ({"topic": "bad topic"}, "topic"),
        ({"topic": "order..created"}, "topic"),
        ({"topic": "order.*"}, "topic"),
        ({"topic": "t" * 256}, "topic"),
        ({"topic": 5}, "topic"),
        ({"topic": None}, "topic"),
        ({"topic": "a", "key": 5}, "key"),
        ({"topic": "a", "key": "k" * 256}, "key"),
        ({"topic": "a", "recipients": "user-1"}, "recipients"),
        ({"topic": "a", "recipients": ["ok", 7]}, "recipients[1]"),
        ({"topic": "a", "recipients": [""]}, "recipients[0]"),
        ({"topic": "a", "idempotency_key": ""}, "idempotency_key"),
        ({"topic": "a", "idempotency_key": 1}, "idempotency_key"),
        ({"topic": "a", "causation_id": ["x"]}, "causation_id"),
        ({"topic": "a", "correlation_id": False}, "correlation_id"),
        ({"topic": "a", "unknown": 1}, "unknown"),
        ({"topic": "a", "data": {}}, "data"),
    ],
)
async def test_publish_field_errors(api: Api, body: dict[str, Any], field: str) -> None:
    reply = await send(api, "POST", "/v1/events", json=body)
    expect_error(reply, 400, field=field)
    assert await event_count(api) == 0


@pytest.mark.parametrize(
    "raw",
    [b"{bad", b'{"topic": "a"', b"not json", b'{"topic": "a"} trailing', b"\xff\xfe"],
)
async def test_publish_invalid_json(api: Api, raw: bytes) -> None:
    reply = await send(
        api, "POST", "/v1/events", data=raw, headers={"Content-Type": "application/json"}
    )
    expect_error(reply, 400, code="invalid_json", field=None)
    assert await event_count(api) == 0


async def test_publish_body_not_an_object(api: Api) -> None:
    for body in ([], "order.created", 3, None):
        reply = await send(api, "POST", "/v1/events", data=json.dumps(body).encode())
        expect_error(reply, 400)
    reply = await send(api, "POST", "/v1/events", json=[{"topic": "a"}])
    expect_error(reply, 400, field=None)
    assert await event_count(api) == 0


async def test_publish_empty_body(api: Api) -> None:
    reply = await send(api, "POST", "/v1/events", data=b"")
    expect_error(reply, 400, code="invalid_json", field=None)
    reply = await send(api, "POST", "/v1/events")
    expect_error(reply, 400, code="invalid_json", field=None)


async def test_payload_size_limit(api: Api) -> None:
    limit = api.settings.max_payload_bytes
    assert limit == 64 * 1024
    at_limit = "x" * (limit - 2)  # the JSON string with its two quotes is exactly `limit`
    accepted = await publish(api, payload=at_limit)
    _status, shown = await api.call("GET", f"/v1/events/{accepted['id']}")
    assert isinstance(shown, dict)
    assert shown["payload"] == at_limit

    reply = await send(api, "POST", "/v1/events", json={"topic": "a", "payload": at_limit + "x"})
    error = expect_error(reply, 413, code="payload_too_large", field="payload")
    assert str(limit) in error["message"]
    assert await event_count(api) == 1


async def test_payload_must_be_utf8(api: Api) -> None:
    body = b'{"topic": "a", "payload": {"name": "caf\xe9"}}'  # Latin-1, not UTF-8
    headers = {"Content-Type": "application/json"}
    reply = await send(api, "POST", "/v1/events", data=body, headers=headers)
    error = expect_error(reply, 400, code="invalid_field", field="payload")
    assert "UTF-8" in error["message"]
    batch = b'{"events": [{"topic": "a"}, {"topic": "a", "payload": "\xff"}]}'
    reply = await send(api, "POST", "/v1/events/batch", data=batch, headers=headers)
    expect_error(reply, 400, code="invalid_field", field="events[1].payload")
    assert await event_count(api) == 0


async def test_request_size_limit(api: Api) -> None:
    assert api.settings.max_request_bytes == 1024 * 1024
    big = {"topic": "a", "payload": "x" * (1024 * 1024 + 10)}
    reply = await send(api, "POST", "/v1/events", json=big)
    expect_error(reply, 413, code="payload_too_large")
    # The server is still fine afterwards.
    await publish(api)
    assert await event_count(api) == 1


async def test_many_concurrent_publishes(api: Api) -> None:
    await create_destination(api)
    replies = await asyncio.gather(
        *(
            api.call("POST", "/v1/events", json={"topic": "order.x", "key": str(i)})
            for i in range(60)
        )
    )
    assert all(status == 202 for status, _ in replies)
    ids = {body["id"] for _, body in replies if isinstance(body, dict)}
    assert len(ids) == 60
    items, _ = await collect(api, "/v1/events", 1000)
    assert {e["id"] for e in items} == ids
    deliveries, _ = await collect(api, "/v1/deliveries", 1000)
    assert len(deliveries) == 60


# --------------------------------------------------------------------------- batch


async def test_batch_accepts_all(api: Api) -> None:
    await create_destination(api, topics=["order.*"])
    events = [
        {"topic": "order.created", "key": "a", "payload": {"i": 0}},
        {"topic": "user.created", "key": "b", "payload": {"i": 1}},
        {"topic": "order.paid", "key": "c", "payload": {"i": 2}, "idempotency_key": "b-1"},
    ]
    status, body = await api.call("POST", "/v1/events/batch", json={"events": events})
    assert status == 202
    assert isinstance(body, dict)
    ids = body["ids"]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert body["deliveries"] == [1, 0, 1]
    assert body["duplicates"] == 0
    for event_id, event in zip(ids, events, strict=True):
        status, shown = await api.call("GET", f"/v1/events/{event_id}")
        assert status == 200
        assert isinstance(shown, dict)
        assert (shown["topic"], shown["key"], shown["payload"]) == (
            event["topic"],
            event["key"],
            event["payload"],
        )
    listed, _ = await collect(api, "/v1/events", 10)
    assert [e["id"] for e in listed] == ids[::-1]

    # A repeat of a stored key, and a key repeated inside the batch.
    status, again = await api.call(
        "POST",
        "/v1/events/batch",
        json={
            "events": [
                {"topic": "order.paid", "idempotency_key": "b-1"},
                {"topic": "order.new", "idempotency_key": "b-2"},
                {"topic": "order.new", "idempotency_key": "b-2"},
            ]
        },
    )
    assert status == 202
    assert isinstance(again, dict)
    assert again["ids"][0] == ids[2]
    assert again["ids"][1] == again["ids"][2]
    assert again["duplicates"] == 2
    assert again["deliveries"] == [1, 1, 1]
    assert await event_count(api) == 4


async def test_event_chain_is_the_causation_tree_of_its_correlation(api: Api) -> None:
    async def publish(topic: str, cause: str | None = None, corr: str | None = None) -> str:
        body: dict[str, Any] = {"topic": topic}
        if cause:
            body["causation_id"] = cause
        if corr:
            body["correlation_id"] = corr
        status, reply = await api.call("POST", "/v1/events", json=body)
        assert status == 202, reply
        return str(reply["id"])  # type: ignore[index]

    root = await publish("order.placed")
    paid = await publish("order.paid", root, root)
    await publish("noise")  # no correlation: not part of the tree
    packed = await publish("order.packed", paid, root)
    mailed = await publish("mail.sent", root, root)
    shipped = await publish("order.shipped", packed, root)

    expected = [
        (root, 0, None, "order.placed"),
        (paid, 1, root, "order.paid"),
        (packed, 2, paid, "order.packed"),
        (shipped, 3, packed, "order.shipped"),
        (mailed, 1, root, "mail.sent"),
    ]
    for asked in (root, packed, shipped):  # any event of the correlation shows the whole tree
        status, chain = await api.call("GET", f"/v1/events/{asked}/chain")
        assert status == 200 and isinstance(chain, dict)
        assert chain["correlation_id"] == root
        assert chain["truncated"] is False
        got = [(i["id"], i["depth"], i["parent_id"], i["topic"]) for i in chain["items"]]
        assert got == expected
        assert_recent(chain["items"][0]["received_at"])

    status, cut = await api.call("GET", f"/v1/events/{root}/chain?limit=2")
    assert status == 200 and isinstance(cut, dict)
    assert [i["id"] for i in cut["items"]] == [root, paid] and cut["truncated"] is True
    # An event beyond the limit still shows, with its line of causes up to the part shown.
    status, cut = await api.call("GET", f"/v1/events/{shipped}/chain?limit=2")
    assert status == 200 and isinstance(cut, dict)
    got = [(i["id"], i["depth"], i["parent_id"]) for i in cut["items"]]
    assert got == [(root, 0, None), (paid, 1, root), (packed, 2, paid), (shipped, 3, packed)]
    assert cut["truncated"] is True

    expect_error(await send(api, "GET", "/v1/events/evt_nope/chain"), 404, code="not_found")
    expect_error(await send(api, "GET", f"/v1/events/{root}/chain?limit=0"), 400, field="limit")
    expect_error(await send(api, "GET", f"/v1/events/{root}/chain?limit=10001"), 400, field="limit")
    assert (await send(api, "GET", f"/v1/events/{root}/chain?limit=10000")).status == 200
    expect_error(await send(api, "GET", f"/v1/events/{root}/chain?cursor=x"), 400, field="cursor")


async def test_batch_idempotency_key_header(api: Api) -> None:
    """On a batch the header keys the request: a retry creates nothing and answers the
    first ids (with 202, as every batch); an event's own key still counts on its own."""
    await create_destination(api, topics=["*"])
    events = [
        {"topic": "order.new", "key": "a"},
        {"topic": "order.new", "key": "b", "idempotency_key": "own-1"},
        {"topic": "order.new", "key": "c"},
    ]
    headers = {"Idempotency-Key": "req-1"}
    status, first = await api.call(
        "POST", "/v1/events/batch", json={"events": events}, headers=headers
    )
    assert status == 202 and isinstance(first, dict)
    assert first["duplicates"] == 0
    assert await event_count(api) == 3

    status, again = await api.call(
        "POST", "/v1/events/batch", json={"events": events}, headers=headers
    )
    assert status == 202 and isinstance(again, dict)  # a batch answers 202 (API.md)
    assert again["ids"] == first["ids"]
    assert again["duplicates"] == 3
    assert await event_count(api) == 3

    # The event keyed by its own field is a repeat under any header; the others are new.
    status, other = await api.call(
        "POST", "/v1/events/batch", json={"events": events}, headers={"Idempotency-Key": "req-2"}
    )
    assert status == 202 and isinstance(other, dict)
    assert other["ids"][1] == first["ids"][1]
    assert {other["ids"][0], other["ids"][2]}.isdisjoint(first["ids"])
    assert other["duplicates"] == 1
    assert await event_count(api) == 5

    # Keys written by clients never meet the derived ones by accident.
    status, plain = await api.call(
        "POST", "/v1/events", json={"topic": "order.new", "idempotency_key": "req-1#0"}
    )
    assert status == 202 and plain["id"] not in first["ids"]  # type: ignore[index]
    status, mixed = await api.call(
        "POST",
        "/v1/events/batch",
        json={"events": [{"topic": "order.new"}, {"topic": "order.new", "idempotency_key": "h#0"}]},
        headers={"Idempotency-Key": "h"},
    )
    assert status == 202 and isinstance(mixed, dict)
    assert mixed["duplicates"] == 0 and len(set(mixed["ids"])) == 2
    assert await event_count(api) == 8
    # A long header still makes keys a client could send again itself.
    status, long = await api.call(
        "POST",
        "/v1/events/batch",
        json={"events": [{"topic": "order.new"}] * 3},
        headers={"Idempotency-Key": "x" * 255},
    )
    assert status == 202 and isinstance(long, dict)
    status, shown = await api.call("GET", f"/v1/events/{long['ids'][2]}")
    key = shown["idempotency_key"]  # type: ignore[index]
    assert key == batch_member_key("x" * 255, 2) and len(key) <= 255
    status, again_one = await api.call(
        "POST", "/v1/events", json={"topic": "order.new", "idempotency_key": key}
    )
    assert (status, again_one["id"]) == (200, long["ids"][2])  # type: ignore[index]
    assert await event_count(api) == 11

    # Without a header, a batch of repeats of stored keys: 202, all counted as repeats.
    status, repeat = await api.call(
        "POST",
        "/v1/events/batch",
        json={"events": [{"topic": "order.new", "idempotency_key": "own-1"}]},
    )
    assert (status, repeat["ids"], repeat["duplicates"]) == (202, [first["ids"][1]], 1)  # type: ignore[index]

    expect_error(
        await send(
            api,
            "POST",
            "/v1/events/batch",
            json={"events": events},
            headers={"Idempotency-Key": "x" * 256},
        ),
        400,
        field="Idempotency-Key",
    )
    assert await event_count(api) == 11


@pytest.mark.parametrize(
    ("bad", "status", "field"),
    [
        ({"topic": "bad topic"}, 400, "events[3].topic"),
        ({"topic": 1}, 400, "events[3].topic"),
        ({"key": "k"}, 400, "events[3].topic"),
        ({"topic": "a", "nope": True}, 400, "events[3].nope"),
        ({"topic": "a", "recipients": [1]}, 400, "events[3].recipients[0]"),
        ({"topic": "a", "payload": "x" * 70_000}, 413, "events[3].payload"),
        ("not an object", 400, "events[3]"),
    ],
)
async def test_batch_is_all_or_nothing(api: Api, bad: Any, status: int, field: str) -> None:
    await create_destination(api, topics=["*"])
    events: list[Any] = [{"topic": f"t.n{i}", "idempotency_key": f"k{i}"} for i in range(6)]
    events[3] = bad
    reply = await send(api, "POST", "/v1/events/batch", json={"events": events})
    expect_error(reply, status, field=field)
    assert await event_count(api) == 0
    deliveries, _ = await collect(api, "/v1/deliveries", 100)
    assert deliveries == []
    # The keys of the refused batch were not kept.
    accepted = await publish(api, idempotency_key="k0")
    assert accepted["deliveries"] == 1


async def test_batch_limits(api: Api) -> None:
    too_many = {"events": [{"topic": "a"}] * 1001}
    expect_error(await send(api, "POST", "/v1/events/batch", json=too_many), 400, field="events")
    empty = {"events": []}
    expect_error(await send(api, "POST", "/v1/events/batch", json=empty), 400, field="events")
    expect_error(await send(api, "POST", "/v1/events/batch", json={}), 400, field="events")
    wrong = {"events": {"topic": "a"}}
    expect_error(await send(api, "POST", "/v1/events/batch", json=wrong), 400, field="events")
    extra = {"events": [{"topic": "a"}], "more": 1}
    expect_error(await send(api, "POST", "/v1/events/batch", json=extra), 400, field="more")
    expect_error(await send(api, "POST", "/v1/events/batch", data=b"{"), 400, code="invalid_json")
    expect_error(await send(api, "POST", "/v1/events/batch", data=b""), 400, code="invalid_json")
    assert await event_count(api) == 0

    exactly = {"events": [{"topic": "a", "key": str(i)} for i in range(1000)]}
    status, body = await api.call("POST", "/v1/events/batch", json=exactly)
    assert status == 202
    assert isinstance(body, dict)
    assert len(set(body["ids"])) == 1000
    assert await event_count(api) == 1000


# --------------------------------------------------------------------------- GET /v1/events


async def test_list_events_pages_and_filters(api: Api) -> None:
    topics = ["order.created", "user.created", "order.paid", "order", "orders.x", "order.created"]
    ids = [(await publish(api, topic=t))["id"] for t in topics]

    items, pages = await collect(api, "/v1/events", 2)
    assert [e["id"] for e in items] == ids[::-1]
    assert pages == 3
    items, pages = await collect(api, "/v1/events", 4)
    assert [e["id"] for e in items] == ids[::-1]
    assert pages == 2
    for event in items:
        assert "deliveries" not in event
        assert_recent(event["received_at"])

    _status, body = await api.call("GET", "/v1/events")
    assert isinstance(body, dict)
    assert [e["id"] for e in body["items"]] == ids[::-1]
    assert body["next"] is None

    exact, _ = await collect(api, "/v1/events?topic=order.created", 1)
    assert [e["id"] for e in exact] == [ids[5], ids[0]]
    wildcard, _ = await collect(api, "/v1/events?topic=order.*", 2)
    assert [e["id"] for e in wildcard] == [ids[5], ids[2], ids[0]]
    everything, _ = await collect(api, "/v1/events?topic=*", 100)
    assert len(everything) == 6
    none, _ = await collect(api, "/v1/events?topic=nothing", 100)
    assert none == []


async def test_list_events_by_key_and_correlation(api: Api) -> None:
    root = await publish(api, key="k1")
    follow = await publish(
        api, topic="order.paid", key="k2", causation_id=root["id"], correlation_id=root["id"]
    )
    other = await publish(api, key="k1")
    deeper = await publish(
        api, topic="order.shipped", key="k1", causation_id=follow["id"], correlation_id=root["id"]
    )
    _unrelated = await publish(api, topic="order.paid", key="k3")

    def ids(items: list[dict[str, Any]]) -> list[str]:
        return [e["id"] for e in items]

    of_key, pages = await collect(api, "/v1/events?key=k1", 2)
    assert ids(of_key) == [deeper["id"], other["id"], root["id"]] and pages == 2
    chain, pages = await collect(api, f"/v1/events?correlation_id={root['id']}", 1)
    assert ids(chain) == [deeper["id"], follow["id"], root["id"]] and pages == 3
    both, _ = await collect(api, f"/v1/events?correlation_id={root['id']}&key=k1", 10)
    assert ids(both) == [deeper["id"], root["id"]]
    keyed_topic, _ = await collect(api, "/v1/events?key=k1&topic=order.shipped", 10)
    assert ids(keyed_topic) == [deeper["id"]]
    pattern, _ = await collect(api, "/v1/events?key=k1&topic=order.*", 10)
    assert ids(pattern) == [deeper["id"], other["id"], root["id"]]
    assert (await collect(api, "/v1/events?key=nobody", 10))[0] == []
    keyless = await publish(api)
    assert ids((await collect(api, "/v1/events?key=", 10))[0]) == [keyless["id"]]


@pytest.mark.parametrize(
    ("path", "allowed"), [("/v1/events/batch", "POST"), ("/v1/deliveries/retry", "POST")]
)
async def test_a_fixed_path_beside_an_id_is_not_taken_for_an_id(
    api: Api, path: str, allowed: str
) -> None:
    reply = await send(api, "GET", path)
    expect_error(reply, 405, "method_not_allowed")
    assert reply.headers["Allow"] == allowed


@pytest.mark.parametrize("query", ["state=", "destination_id=", "event_id="])
async def test_an_empty_delivery_filter_is_a_400_not_no_filter(api: Api, query: str) -> None:
    field = query.rstrip("=")
    expect_error(await send(api, "GET", f"/v1/deliveries?{query}"), 400, field=field)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/events?key=k&kye=k", "kye"),
        ("/v1/events?destination=billing", "destination"),
        ("/v1/deliveries?destination=billing", "destination"),
        ("/v1/destinations?topic=order.*", "topic"),
        ("/v1/events/evt_x?verbose=1", "verbose"),
    ],
)
async def test_unknown_query_parameters_are_refused_by_name(api: Api, path: str, name: str) -> None:
    error = expect_error(await send(api, "GET", path), 400, "invalid_field", field=name)
    assert f"unknown query parameter {name!r}" in error["message"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("topic=bad%20topic", "topic"),
        ("topic=order.*.x", "topic"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=%40%40%40", "cursor"),
        ("topic=", "topic"),
        ("correlation_id=", "correlation_id"),
        ("key=" + "k" * 256, "key"),
    ],
)
async def test_list_events_bad_query(api: Api, query: str, field: str) -> None:
    await publish(api)
    expect_error(await send(api, "GET", f"/v1/events?{query}"), 400, field=field)


async def test_get_event_includes_deliveries(api: Api) -> None:
    a = await create_destination(api, name="a", topics=["order.*"])
    b = await create_destination(api, name="b", topics=["order.created"])
    await create_destination(api, name="c", topics=["user.*"])
    accepted = await publish(api, key="k")
    assert accepted["deliveries"] == 2
    status, shown = await api.call("GET", f"/v1/events/{accepted['id']}")
    assert status == 200
    assert isinstance(shown, dict)
    deliveries = shown["deliveries"]
    assert [d["destination_id"] for d in deliveries] == [a["id"], b["id"]]
    for d in deliveries:
        assert d["event_id"] == accepted["id"]
        assert d["state"] == "pending"
        assert d["key"] == "k"
        status, alone = await api.call("GET", f"/v1/deliveries/{d['id']}")
        assert (status, alone) == (200, {**d, "attempts": []})

    quiet = await publish(api, topic="nobody.cares")
    status, shown = await api.call("GET", f"/v1/events/{quiet['id']}")
    assert isinstance(shown, dict)
    assert shown["deliveries"] == []


# --------------------------------------------------------------------------- 404 / 405


@pytest.mark.parametrize(
    "path",
    [
        "/v1/events/evt_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "/v1/events/nonsense",
        "/v1/destinations/dst_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "/v1/destinations/no-such-name",
        "/v1/deliveries/dlv_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "/v1/nothing-here",
        "/v1",
        "/v2/events",
        "/no/such/page",
    ],
)
async def test_unknown_is_404_json(api: Api, path: str) -> None:
    expect_error(await send(api, "GET", path), 404, code="not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/v1/events"),
        ("PUT", "/v1/events"),
        ("GET", "/v1/destinations/x/rotate-secret"),
        ("POST", "/v1/deliveries"),
        ("PUT", "/v1/destinations/x"),
        ("POST", "/healthz"),
    ],
)
async def test_wrong_method_is_405_json(api: Api, method: str, path: str) -> None:
    reply = await send(api, method, path)
    expect_error(reply, 405, code="method_not_allowed")
    assert reply.headers.get("Allow")


@pytest.mark.parametrize(
    "head",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /v1/events HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /v1/events HTTP/9.9\r\nHost: x\r\n\r\n",
    ],
    ids=["request-line", "header-too-long", "content-length", "http-version"],
)
async def test_protocol_errors_are_json(api: Api, head: bytes) -> None:
    """Requests aiohttp's parser rejects, before any handler runs, still get the body."""
    host, port = api.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=5)  # the server closes
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status_line.split()[1] == b"400", raw[:200]
    assert b"content-type: application/json" in headers.lower()
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request"
    assert error["message"] and len(error["message"]) <= 200
    assert not error["message"].endswith(":")


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/v1/events", {"topic": "a"}),
        ("POST", "/v1/events/batch", {"events": [{"topic": "a"}]}),
        ("GET", "/v1/events", None),
        ("GET", "/v1/events/evt_x", None),
        ("POST", "/v1/destinations", destination_body()),
        ("GET", "/v1/destinations", None),
        ("DELETE", "/v1/destinations/x", None),
        ("GET", "/v1/deliveries", None),
        ("GET", "/v1/nothing-here", None),
    ],
)
async def test_v1_needs_the_api_key(api: Api, method: str, path: str, payload: Any) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Bearer {API_KEY}x"},
            {"Authorization": "Bearer "},
            {"Authorization": f"Basic {API_KEY}"},
            {"Authorization": API_KEY},
        ):
            reply = await send(api, method, path, session=anonymous, json=payload, headers=headers)
            expect_error(reply, 401, code="unauthorized")
            assert reply.headers.get("WWW-Authenticate", "").startswith("Bearer")
        # The scheme is case-insensitive.
        ok = await send(
            api,
            "GET",
            "/v1/events",
            session=anonymous,
            headers={"Authorization": f"bearer {API_KEY}"},
        )
        assert ok.status == 200
    assert await event_count(api) == 0
    listed, _ = await collect(api, "/v1/destinations", 100)
    assert listed == []


async def test_operational_routes_need_no_key(api: Api) -> None:
    async with aiohttp.ClientSession() as anonymous:
        health = await send(api, "GET", "/healthz", session=anonymous)
        assert health.status == 200
        assert health.body["status"] == "ok"
        ready = await send(api, "GET", "/readyz", session=anonymous)
        assert (ready.status, ready.body) == (200, {"status": "ready"})
        spec = await send(api, "GET", "/openapi.json", session=anonymous)
        assert spec.status == 200
        assert spec.content_type == "application/json"
        assert spec.body["openapi"].startswith("3.1")
        docs = await send(api, "GET", "/docs", session=anonymous)
        assert docs.status == 200
        assert docs.content_type == "text/html"
        assert "/v1/events" in docs.body
        home = await send(api, "GET", "/", session=anonymous)
        assert home.status == 200
        assert home.content_type == "text/html"


# --------------------------------------------------------------------------- destinations


async def test_create_destination_fills_defaults(api: Api) -> None:
    status, body = await api.call(
        "POST",
        "/v1/destinations",
        json={"kind": "webhook", "url": "https://example.com/hook", "topics": ["order.*"]},
    )
    assert status == 201
    assert isinstance(body, dict)
    assert re.fullmatch(r"dst_[0-9A-Z]{26}", body["id"])
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 20
    expected = {
        "name": None,
        "kind": "webhook",
        "url": "https://example.com/hook",
        "topics": ["order.*"],
        "filter": None,
        "ordering": "fifo",
        "on_dead": "skip",
        "retry": {
            "max_attempts": 8,
            "initial_ms": 500,
            "multiplier": 2.0,
            "max_ms": 600000,
            "jitter": 0.1,
        },
        "timeout_ms": 10000,
        "rate_limit_per_s": None,
        "enabled": True,
    }
    for name, value in expected.items():
        assert body[name] == value, name
    assert body["state"] == "active"
    assert_recent(body["created_at"])
    status, shown = await api.call("GET", f"/v1/destinations/{body['id']}")
    assert (status, shown) == (200, body)

    other = await create_destination(api)
    assert other["secret"] != body["secret"]


async def test_create_destination_with_every_field(api: Api) -> None:
    full = {
        "name": "billing",
        "kind": "webhook",
        "url": "https://hooks.example.com:9000/hook?x=1",
        "topics": ["order.*", "invoice.paid", "*"],
        "filter": {"customer.tier": {"$in": ["gold", "silver"]}, "amount": {"$exists": True}},
        "ordering": "none",
        "on_dead": "block",
        "retry": {
            "max_attempts": 3,
            "initial_ms": 100,
            "multiplier": 1.5,
            "max_ms": 900,
            "jitter": 0,
        },
        "timeout_ms": 2500,
        "rate_limit_per_s": 12.5,
        "max_in_flight": 4,
        "alert_url": "https://ops.example.com/alerts",
        "enabled": False,
    }
    created = await create_destination(api, **full)
    for name, value in full.items():
        assert created[name] == value, name


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": None}, "kind"),
        ({"kind": "email"}, "kind"),
        ({"url": None}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://user:pw@example.com/"}, "url"),
        ({"url": "https://example.com/#frag"}, "url"),
        ({"url": "https://example.com:99999/"}, "url"),
        ({"url": 5}, "url"),
        ({"topics": []}, "topics"),
        ({"topics": None}, "topics"),
        ({"topics": "order.*"}, "topics"),
        ({"topics": ["bad topic"]}, "topics[0]"),
        ({"topics": ["ok", "order.*.x"]}, "topics[1]"),
        ({"topics": ["a", "a"]}, "topics"),
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts"),
        ({"retry": {"multiplier": 0.5}}, "retry.multiplier"),
        ({"retry": {"nope": 1}}, "retry.nope"),
        ({"retry": {"initial_ms": 2000, "max_ms": 1000}}, "retry.initial_ms"),
        ({"ordering": "lifo"}, "ordering"),
        ({"on_dead": "explode"}, "on_dead"),
        ({"retry": {"max_attempts": 101}}, "retry.max_attempts"),
        ({"retry": {"initial_ms": 0}}, "retry.initial_ms"),
        ({"retry": {"initial_ms": 86_400_001}}, "retry.initial_ms"),
        ({"retry": {"multiplier": 11}}, "retry.multiplier"),
        ({"retry": {"max_ms": 0}}, "retry.max_ms"),
        ({"retry": {"max_ms": 604_800_001}}, "retry.max_ms"),
        ({"retry": {"jitter": -0.1}}, "retry.jitter"),
        ({"retry": {"jitter": 2}}, "retry.jitter"),
        ({"retry": "fast"}, "retry"),
        ({"timeout_ms": 5}, "timeout_ms"),
        ({"timeout_ms": 300_001}, "timeout_ms"),
        ({"rate_limit_per_s": 0}, "rate_limit_per_s"),
        ({"rate_limit_per_s": "10"}, "rate_limit_per_s"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_in_flight": 1001}, "max_in_flight"),
        ({"alert_url": "ftp://example.com/alerts"}, "alert_url"),
        ({"alert_url": "not a url"}, "alert_url"),
        ({"filter": {"amount": {"$regex": "x"}}}, "filter.amount"),
        ({"enabled": "yes"}, "enabled"),
        ({"name": ""}, "name"),
        ({"colour": "blue"}, "colour"),
        ({"id": "dst_mine"}, "id"),
    ],
)
async def test_create_destination_validation(api: Api, change: dict[str, Any], field: str) -> None:
    body = destination_body()
    for name, value in change.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    error = expect_error(await send(api, "POST", "/v1/destinations", json=body), 400, field=field)
    missing = None in change.values()
    assert error["code"] == ("missing_field" if missing else "invalid_field"), error
    _status, listed = await api.call("GET", "/v1/destinations")
    assert isinstance(listed, dict)
    assert listed["items"] == []


@pytest.mark.parametrize(
    "flt",
    [
        {"amount": {"$regex": "x"}},
        {"amount": {"$in": 3}},
        {"amount": {"$exists": "yes"}},
        {"amount": {"$eq": 1, "plain": 2}},
        {"a..b": 1},
        "tier == gold",
    ],
)
async def test_create_destination_bad_filter(api: Api, flt: Any) -> None:
    reply = await send(api, "POST", "/v1/destinations", json=destination_body(filter=flt))
    error = expect_error(reply, 400)
    assert error["field"] is not None and error["field"].startswith("filter"), error


async def test_create_destination_bad_json(api: Api) -> None:
    for raw in (b"", b"{", b"[]"):
        reply = await send(api, "POST", "/v1/destinations", data=raw)
        expect_error(reply, 400, field=None)


async def test_destination_name_conflict(api: Api) -> None:
    first = await create_destination(api, name="billing")
    reply = await send(api, "POST", "/v1/destinations", json=destination_body(name="billing"))
    expect_error(reply, 409, code="conflict", field="name")
    items, _ = await collect(api, "/v1/destinations", 100)
    assert [d["id"] for d in items] == [first["id"]]


async def test_list_destinations_pages(api: Api) -> None:
    ids = [(await create_destination(api, name=f"d{i}"))["id"] for i in range(5)]
    items, pages = await collect(api, "/v1/destinations", 2)
    assert [d["id"] for d in items] == ids[::-1]
    assert pages == 3
    items, pages = await collect(api, "/v1/destinations", 5)
    assert pages == 1
    assert all(d["secret"].startswith("whsec_") for d in items)
    for query, field in (("limit=0", "limit"), ("limit=1001", "limit"), ("cursor=zz", "cursor")):
        expect_error(await send(api, "GET", f"/v1/destinations?{query}"), 400, field=field)


async def test_show_destination_by_id_and_name(api: Api) -> None:
    created = await create_destination(api, name="billing")
    for ref in (created["id"], "billing"):
        status, body = await api.call("GET", f"/v1/destinations/{ref}")
        assert (status, body) == (200, created)
    expect_error(await send(api, "GET", "/v1/destinations/Billing"), 404, code="not_found")


async def test_patch_destination(api: Api) -> None:
    created = await create_destination(
        api, name="billing", retry={"max_attempts": 5, "initial_ms": 200}
    )
    path = f"/v1/destinations/{created['id']}"

    status, patched = await api.call("PATCH", path, json={"retry": {"max_attempts": 3}})
    assert status == 200
    assert isinstance(patched, dict)
    assert patched["retry"] == {
        "max_attempts": 3,
        "initial_ms": 200,
        "multiplier": 2.0,
        "max_ms": 600000,
        "jitter": 0.1,
    }
    assert patched["id"] == created["id"]
    assert patched["secret"] == created["secret"]
    assert patched["created_at"] == created["created_at"]
    assert parse_iso(patched["updated_at"]) >= parse_iso(created["updated_at"])
    for name in ("name", "url", "topics", "ordering", "timeout_ms", "enabled"):
        assert patched[name] == created[name], name

    status, renamed = await api.call(
        "PATCH",
        "/v1/destinations/billing",
        json={"name": "invoices", "topics": ["invoice.*"], "enabled": False, "filter": {"a": 1}},
    )
    assert status == 200
    assert isinstance(renamed, dict)
    assert (renamed["name"], renamed["topics"], renamed["enabled"], renamed["filter"]) == (
        "invoices",
        ["invoice.*"],
        False,
        {"a": 1},
    )
    assert renamed["retry"]["max_attempts"] == 3
    status, shown = await api.call("GET", "/v1/destinations/invoices")
    assert (status, shown) == (200, renamed)
    expect_error(await send(api, "GET", "/v1/destinations/billing"), 404)

    status, cleared = await api.call("PATCH", path, json={"filter": None, "name": None})
    assert status == 200
    assert isinstance(cleared, dict)
    assert (cleared["filter"], cleared["name"]) == (None, None)
    status, empty_patch = await api.call("PATCH", path, json={})
    assert status == 200
    assert isinstance(empty_patch, dict)
    assert {**empty_patch, "updated_at": None} == {**cleared, "updated_at": None}


async def test_patch_destination_errors_leave_it_unchanged(api: Api) -> None:
    created = await create_destination(api, name="billing")
    await create_destination(api, name="taken")
    path = f"/v1/destinations/{created['id']}"
    cases: list[tuple[Any, int, str | None]] = [
        ({"id": "dst_other"}, 400, "id"),
        ({"secret": "whsec_mine"}, 400, "secret"),
        ({"created_at": "2020-01-01T00:00:00Z"}, 400, "created_at"),
        ({"state": "asleep"}, 400, "state"),
        ({"max_in_flight": 0}, 400, "max_in_flight"),
        ({"alert_url": "ftp://x"}, 400, "alert_url"),
        ({"colour": "blue"}, 400, "colour"),
        ({"ordering": "lifo"}, 400, "ordering"),
        ({"retry": {"max_attempts": 0}}, 400, "retry.max_attempts"),
        ({"retry": {"nope": 1}}, 400, "retry.nope"),
        ({"retry": {"initial_ms": 10_000_000}}, 400, "retry.initial_ms"),
        ({"topics": []}, 400, "topics"),
        ({"topics": ["bad topic"]}, 400, "topics[0]"),
        ({"url": "ftp://x"}, 400, "url"),
        ({"kind": "email"}, 400, "kind"),
        ({"filter": {"a": {"$nope": 1}}}, 400, "filter.a"),
        ({"name": "taken"}, 409, "name"),
        ([1, 2], 400, None),
    ]
    for body, status, field in cases:
        reply = await send(api, "PATCH", path, json=body)
        error = expect_error(reply, status)
        assert error["field"] == field, (body, error)
    for raw in (b"", b"{"):
        expect_error(await send(api, "PATCH", path, data=raw), 400, code="invalid_json")
    status, shown = await api.call("GET", path)
    assert (status, shown) == (200, created)

    expect_error(
        await send(api, "PATCH", "/v1/destinations/dst_nope", json={"enabled": False}),
        404,
        code="not_found",
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
    ],
)
async def test_private_targets_are_refused(api: Api, url: str) -> None:
    """The SSRF guard at create time (TIDINGS_ALLOW_PRIVATE_TARGETS is off here)."""
    for field in ("url", "alert_url"):
        body = destination_body(**{field: url})
        error = expect_error(await send(api, "POST", "/v1/destinations", json=body), 400)
        assert (error["code"], error["field"]) == ("forbidden_target", field)
    created = await create_destination(api)
    error = expect_error(
        await send(api, "PATCH", f"/v1/destinations/{created['id']}", json={"url": url}), 400
    )
    assert (error["code"], error["field"]) == ("forbidden_target", "url")
    assert await event_count(api) == 0


async def test_delete_destination(api: Api) -> None:
    gone = await create_destination(api, name="gone")
    stays = await create_destination(api, name="stays")
    accepted = await publish(api)
    assert accepted["deliveries"] == 2

    reply = await send(api, "DELETE", f"/v1/destinations/{gone['id']}")
    assert reply.status == 204
    assert reply.body == ""
    expect_error(await send(api, "GET", f"/v1/destinations/{gone['id']}"), 404)
    expect_error(await send(api, "DELETE", f"/v1/destinations/{gone['id']}"), 404)
    expect_error(await send(api, "DELETE", "/v1/destinations/gone"), 404)

    expect_error(await send(api, "GET", f"/v1/deliveries?destination_id={gone['id']}"), 404)
    assert (await api.store.list_deliveries(destination_id=gone["id"])).items == []
    _status, event = await api.call("GET", f"/v1/events/{accepted['id']}")
    assert isinstance(event, dict)
    assert [d["destination_id"] for d in event["deliveries"]] == [stays["id"]]
    assert (await publish(api))["deliveries"] == 1

    # Deleting by name works too.
    assert (await send(api, "DELETE", "/v1/destinations/stays")).status == 204
    items, _ = await collect(api, "/v1/destinations", 100)
    assert items == []


async def test_rotate_secret(api: Api) -> None:
    created = await create_destination(api, name="billing")
    status, rotated = await api.call("POST", f"/v1/destinations/{created['id']}/rotate-secret")
    assert status == 200
    assert isinstance(rotated, dict)
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"]
    assert rotated["id"] == created["id"]
    assert rotated["topics"] == created["topics"]
    status, shown = await api.call("GET", f"/v1/destinations/{created['id']}")
    assert isinstance(shown, dict)
    assert shown["secret"] == rotated["secret"]

    status, again = await api.call("POST", "/v1/destinations/billing/rotate-secret")
    assert status == 200
    assert isinstance(again, dict)
    assert again["secret"] not in (created["secret"], rotated["secret"])

    expect_error(
        await send(api, "POST", "/v1/destinations/dst_nope/rotate-secret"), 404, code="not_found"
    )


# --------------------------------------------------------------------------- deliveries


async def test_list_deliveries_filters(api: Api) -> None:
    a = await create_destination(api, name="a", topics=["order.*"])
    b = await create_destination(api, name="b", topics=["order.created"])
    created = [await publish(api, key=f"k{i}") for i in range(3)]
    paid = await publish(api, topic="order.paid")

    every, _ = await collect(api, "/v1/deliveries", 1000)
    assert len(every) == 7
    assert len({d["id"] for d in every}) == 7
    assert every[0]["event_id"] == paid["id"]  # newest first

    on_a, _ = await collect(api, f"/v1/deliveries?destination_id={a['id']}", 2)
    assert len(on_a) == 4 and {d["destination_id"] for d in on_a} == {a["id"]}
    on_b, pages = await collect(api, f"/v1/deliveries?destination_id={b['id']}", 2)
    assert [d["event_id"] for d in on_b] == [e["id"] for e in created][::-1]
    assert pages == 2

    pending, _ = await collect(api, "/v1/deliveries?state=pending", 3)
    assert [d["id"] for d in pending] == [d["id"] for d in every]
    for state in ("in_flight", "scheduled", "delivered", "dead"):
        items, _ = await collect(api, f"/v1/deliveries?state={state}", 10)
        assert items == []
    both, _ = await collect(api, f"/v1/deliveries?destination_id={b['id']}&state=pending", 10)
    assert len(both) == 3
    of_event, _ = await collect(api, f"/v1/deliveries?event_id={created[0]['id']}", 10)
    assert {d["destination_id"] for d in of_event} == {a["id"], b["id"]}
    # A name works wherever an id does; an unknown one is a 404, not an empty page.
    by_name, _ = await collect(api, "/v1/deliveries?destination_id=b&state=pending", 10)
    assert [d["id"] for d in by_name] == [d["id"] for d in both]
    for unknown in ("dst_nope", "nobody"):
        reply = await send(api, "GET", f"/v1/deliveries?destination_id={unknown}")
        assert expect_error(reply, 404)["message"] == f"no destination {unknown!r}"

    status, body = await api.call("GET", "/v1/deliveries?limit=1000")
    assert status == 200
    status, body = await api.call("GET", "/v1/deliveries?limit=1")
    assert isinstance(body, dict)
    assert len(body["items"]) == 1 and body["next"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=bogus", "state"),
        ("state=PENDING", "state"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=1.5", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=%E2%9C%93", "cursor"),
    ],
)
async def test_list_deliveries_bad_query(api: Api, query: str, field: str) -> None:
    expect_error(await send(api, "GET", f"/v1/deliveries?{query}"), 400, field=field)


async def test_get_delivery(api: Api) -> None:
    hook = await create_destination(api)
    accepted = await publish(api, key="lane-1")
    items, _ = await collect(api, "/v1/deliveries", 10)
    (delivery,) = items
    status, body = await api.call("GET", f"/v1/deliveries/{delivery['id']}")
    assert status == 200
    assert isinstance(body, dict)
    assert body == {**delivery, "attempts": []}
    assert re.fullmatch(r"dlv_[0-9A-Z]{26}", body["id"])
    assert body["event_id"] == accepted["id"]
    assert body["destination_id"] == hook["id"]
    assert body["key"] == "lane-1"
    assert body["state"] == "pending"
    assert body["attempt_count"] == 0
    assert body["attempts"] == []
    assert body["last_error"] is None
    for name in ("next_attempt_at", "created_at", "updated_at"):
        assert_recent(body[name])


# --------------------------------------------------------------------------- OpenAPI


async def test_openapi_documents_every_route(api: Api) -> None:
    status, doc = await api.call("GET", "/openapi.json")
    assert status == 200
    assert isinstance(doc, dict)
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"] and doc["info"]["version"]
    paths = doc["paths"]

    app = create_app(api.settings, api.store, [])
    routes = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        routes.add((route.method.lower(), path))
    assert ("post", "/v1/events") in routes  # the walk above sees the routes at all
    # The dashboard's pages under /ui/ are HTML for a browser session, not API calls
    # (docs/dashboard.md lists them); `/` is declared, as the dashboard's entry.
    missing = sorted(
        (m, p) for m, p in routes if m not in paths.get(p, {}) and not p.startswith("/ui/")
    )
    assert missing == [], f"routes missing from /openapi.json: {missing}"

    # Every operation answers something, and every $ref points at a schema.
    schemas = doc["components"]["schemas"]
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    refs.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation.get("responses"), (method, path)
