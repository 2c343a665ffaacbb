"""Bodies the API must refuse with a 4xx naming the field, never a 500, over real HTTP.

- nesting beyond 64 levels (10,000 deep used to fail inside the decoder: a 500);
- strings no store keeps: lone surrogates (`"\\ud800"`, valid JSON text), NUL outside an
  event's payload (PostgreSQL refuses it in any `text`), in the body, query or path;
- Content-Encoding: gzip and deflate undone (within TIDINGS_MAX_REQUEST_BYTES: a zip bomb
  is a 413), garbled ones a 400, others a 415.
After every refusal the store holds nothing of it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import zlib
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from tests.api.test_api import create_destination, destination_body, expect_error, send
from tests.conftest import API_KEY, Api

JSON = {"Content-Type": "application/json"}
ACCEPTED = "gzip, deflate, identity"


def gz(data: bytes) -> bytes:
    """gzip with no timestamp: parameters read the same in every process (pytest-xdist)."""
    return gzip.compress(data, mtime=0)


def nest(n: int) -> str:
    return "[" * n + "]" * n


async def stored_events(api: Api) -> list[dict[str, Any]]:
    return [dict(msgspec.to_builtins(e)) async for e in api.sdk.iter_events()]


async def post_raw(api: Api, path: str, body: bytes, method: str = "POST", **headers: str) -> Any:
    return await send(api, method, path, data=body, headers={**JSON, **headers})


# --------------------------------------------------------------------------- nesting
async def _routes(api: Api) -> list[tuple[str, str, str, str]]:
    """(method, path, body with DEEP for the nested value, the field named)."""
    destination = await create_destination(api)
    one = f"/v1/destinations/{destination['id']}"
    return [
        ("POST", "/v1/events", '{"topic":"order.created","payload":DEEP}', "payload[0][0]"),
        (
            "POST",
            "/v1/events/batch",
            '{"events":[{"topic":"order.created"},{"topic":"order.created","payload":DEEP}]}',
            "events[1].payload",
        ),
        (
            "POST",
            "/v1/destinations",
            json.dumps(destination_body())[:-1] + ',"filter":DEEP}',
            "filter[0][0]",
        ),
        ("PATCH", one, '{"filter":DEEP}', "filter[0][0]"),
        ("POST", f"{one}/replay", '{"since":DEEP}', "since[0][0]"),
        ("POST", "/v1/deliveries/retry", '{"ids":DEEP}', "ids[0][0]"),
    ]


async def test_ten_thousand_deep_is_a_400_naming_the_field_on_every_json_route(api: Api) -> None:
    for method, path, template, field in await _routes(api):
        reply = await post_raw(api, path, template.replace("DEEP", nest(10_000)).encode(), method)
        error = expect_error(reply, 400, "invalid_field", field)
        assert "deeper than 64 levels" in error["message"], (path, error)
        # The whole body one deep nest: its first items are named.
        reply = await post_raw(api, path, nest(10_000).encode(), method)
        expect_error(reply, 400, "invalid_field", "[0][0][0]")
    assert await stored_events(api) == []
    status, page = await api.call("GET", "/v1/destinations")
    assert status == 200 and isinstance(page, dict)
    assert len(page["items"]) == 1  # the one the routes were made with
    assert page["items"][0]["filter"] is None


async def test_nesting_up_to_64_levels_in_all_is_taken(api: Api) -> None:
    # The body's object is level 1, so a payload may nest 63 levels (a batch's: 61).
    payload = nest(63)
    reply = await post_raw(
        api, "/v1/events", f'{{"topic":"order.created","payload":{payload}}}'.encode()
    )
    assert reply.status == 202, reply.body
    status, event = await api.call("GET", f"/v1/events/{reply.body['id']}")
    assert status == 200 and isinstance(event, dict)
    assert json.dumps(event["payload"], separators=(",", ":")) == payload
    reply = await post_raw(
        api, "/v1/events", f'{{"topic":"order.created","payload":{nest(64)}}}'.encode()
    )
    expect_error(reply, 400, "invalid_field", "payload[0][0]")
    batch = f'{{"events":[{{"topic":"order.created","payload":{nest(61)}}}]}}'
    assert (await post_raw(api, "/v1/events/batch", batch.encode())).status == 202
    batch = f'{{"events":[{{"topic":"order.created","payload":{nest(62)}}}]}}'
    expect_error(await post_raw(api, "/v1/events/batch", batch.encode()), 400, "invalid_field")
    # Brackets inside strings are text, however many.
    text = json.dumps({"topic": "order.created", "payload": {"s": "[{" * 5000, "t": '\\"[' * 99}})
    assert (await post_raw(api, "/v1/events", text.encode())).status == 202
    assert len(await stored_events(api)) == 3


# --------------------------------------------------------------------------- unstorable strings
LONE = "lone UTF-16 surrogate (\\u{})"
SURROGATES = [
    (
        '{"topic":"order.created","payload":{"\\ud800":1}}',
        "payload.\\ud800",
        "key holds a " + LONE.format("d800"),
    ),
    (
        '{"topic":"order.created","payload":{"a":["x","\\udc00"]}}',
        "payload.a[1]",
        LONE.format("dc00"),
    ),
    ('{"topic":"order.\\ud800"}', "topic", LONE.format("d800")),
    ('{"topic":"order.created","key":"k\\udbff"}', "key", LONE.format("dbff")),
    (
        '{"topic":"order.created","recipients":["a","\\ud800b"]}',
        "recipients[1]",
        LONE.format("d800"),
    ),
    (
        '{"topic":"order.created","idempotency_key":"\\udfff"}',
        "idempotency_key",
        LONE.format("dfff"),
    ),
]


async def test_a_surrogate_pair_is_a_character(api: Api) -> None:
    pair = b"\\ud83d\\ude00"
    body = b'{"topic":"order.created","key":"%s","payload":{"%s":"%s"}}' % (pair, pair, pair)
    reply = await post_raw(api, "/v1/events", body)
    assert reply.status == 202, reply.body
    (event,) = await stored_events(api)
    assert event["key"] == "😀"
    assert event["payload"] == {"😀": "😀"}


NULS = [  # outside the payload
    ('{"topic":"order.created\\u0000"}', "topic"),
    ('{"topic":"order.created","key":"a\\u0000"}', "key"),
    ('{"topic":"order.created","recipients":["a","\\u0000"]}', "recipients[1]"),
    ('{"topic":"order.created","causation_id":"x\\u0000"}', "causation_id"),
    ('{"topic":"order.created","correlation_id":"\\u0000"}', "correlation_id"),
    ('{"topic":"order.created","idempotency_key":"\\u0000"}', "idempotency_key"),
]


@pytest.mark.parametrize(
    ("body", "field", "what"),
    [*SURROGATES, *((body, field, "NUL character") for body, field in NULS)],
)
async def test_an_unstorable_string_is_a_400_naming_its_field(
    api: Api, body: str, field: str, what: str
) -> None:
    """Alone and as the second event of a batch; nothing of either is stored."""
    error = expect_error(
        await post_raw(api, "/v1/events", body.encode()), 400, "invalid_field", field
    )
    assert what in error["message"], error
    batch = '{"events":[{"topic":"order.created"},' + body + "]}"
    expect_error(
        await post_raw(api, "/v1/events/batch", batch.encode()),
        400,
        "invalid_field",
        "events[1]." + field,
    )
    assert await stored_events(api) == []


async def test_a_nul_in_a_payload_is_data(api: Api) -> None:
    """A payload is JSON kept as bytes on both stores: an escaped NUL is stored and sent
    as it came, like any other character."""
    body = b'{"topic":"order.created","payload":{"a\\u0000":"x\\u0000y"}}'
    assert (await post_raw(api, "/v1/events", body)).status == 202
    (event,) = await stored_events(api)
    assert event["payload"] == {"a\x00": "x\x00y"}


async def test_unstorable_strings_in_destinations(api: Api) -> None:
    for fields, field in [
        ({"name": "a\x00"}, "name"),
        ({"name": "a\ud800"}, "name"),
        ({"topics": ["order.*", "x\x00"]}, "topics[1]"),
        ({"url": "https://example.com/\x00"}, "url"),
        ({"filter": {"eq": ["$.a", "\ud800"]}}, "filter.eq[1]"),
    ]:
        body = json.dumps(destination_body(**fields)).encode()  # json.dumps escapes both
        expect_error(await post_raw(api, "/v1/destinations", body), 400, "invalid_field", field)
    destination = await create_destination(api, name="kept")
    path = f"/v1/destinations/{destination['id']}"
    for patch, field in [({"name": "b\x00"}, "name"), ({"alert_url": "\udc00"}, "alert_url")]:
        body = json.dumps(patch).encode()
        expect_error(await post_raw(api, path, body, "PATCH"), 400, "invalid_field", field)
    status, kept = await api.call("GET", path)
    assert status == 200 and isinstance(kept, dict)
    assert (kept["name"], kept["alert_url"]) == ("kept", None)
    status, page = await api.call("GET", "/v1/destinations")
    assert isinstance(page, dict) and len(page["items"]) == 1


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/events?key=%00", "key"),
        ("/v1/events?topic=a%00", "topic"),
        ("/v1/events?correlation_id=%00", "correlation_id"),
        ("/v1/deliveries?event_id=%00", "event_id"),
        ("/v1/deliveries?destination_id=x%00", "destination_id"),
        ("/v1/events/%00", "id"),
        ("/v1/events/evt_%00/chain", "id"),
        ("/v1/destinations/%00", "id"),
        ("/v1/deliveries/dlv%00", "id"),
    ],
)
async def test_a_nul_in_the_query_or_path_is_a_400(api: Api, path: str, field: str) -> None:
    """No store can look a NUL up (PostgreSQL refuses it in any text parameter)."""
    error = expect_error(await send(api, "GET", path), 400, "invalid_field", field)
    assert "NUL" in error["message"]


async def raw_exchange(api: Api, request: bytes) -> tuple[int, Any]:
    """One request written byte for byte; (status, JSON body) of the answer."""
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length:")
        )
        body = await asyncio.wait_for(reader.readexactly(length), 10)
        return int(lines[0].split()[1]), json.loads(body)
    finally:
        writer.close()


async def raw_event(api: Api, header: bytes) -> tuple[int, Any]:
    """POST /v1/events of a good event with one more header line, written byte for byte."""
    body = b'{"topic":"order.created"}'
    return await raw_exchange(
        api,
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + API_KEY.encode()
        + b"\r\nContent-Type: application/json\r\n"
        + header
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body,
    )


async def test_an_idempotency_key_header_that_is_not_utf8_is_a_400(api: Api) -> None:
    status, answer = await raw_event(api, b"Idempotency-Key: k\xed\xa0\x80\xff")
    assert status == 400, answer
    assert answer["error"]["code"] == "invalid_field"
    assert answer["error"]["field"] == "Idempotency-Key"
    assert "surrogate" in answer["error"]["message"]
    assert await stored_events(api) == []


# --------------------------------------------------------------------------- Content-Encoding
EVENT = {"topic": "order.created", "key": "k1", "payload": {"n": 1, "text": "héllo " * 50}}


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gz),
        ("x-gzip", gz),
        ("GZIP", gz),
        ("deflate", zlib.compress),  # the zlib format, as RFC 9110 means it
        ("deflate", raw_deflate),  # raw deflate, as some clients send it
        ("identity", lambda b: b),
        ("gzip, identity", gz),
        ("gzip", lambda b: gz(b[:10]) + gz(b[10:])),  # two members
    ],
)
async def test_a_coded_body_is_undone(api: Api, coding: str, encode: Any) -> None:
    body = json.dumps(EVENT).encode()
    reply = await post_raw(api, "/v1/events", encode(body), **{"Content-Encoding": coding})
    assert reply.status == 202, reply.body
    (event,) = await stored_events(api)
    assert (event["id"], event["key"], event["payload"]) == (
        reply.body["id"],
        "k1",
        EVENT["payload"],
    )


async def test_coded_bodies_on_every_body_route(api: Api) -> None:
    batch = {"events": [EVENT, {**EVENT, "key": "k2"}]}
    reply = await post_raw(
        api,
        "/v1/events/batch",
        gz(json.dumps(batch).encode()),
        **{"Content-Encoding": "gzip"},
    )
    assert reply.status == 202, reply.body
    assert sorted(e["key"] for e in await stored_events(api)) == ["k1", "k2"]

    body = zlib.compress(json.dumps(destination_body(name="zipped")).encode())
    reply = await post_raw(api, "/v1/destinations", body, **{"Content-Encoding": "deflate"})
    assert reply.status == 201, reply.body
    path = f"/v1/destinations/{reply.body['id']}"
    body = gz(b'{"name": "renamed"}')
    reply = await post_raw(api, path, body, "PATCH", **{"Content-Encoding": "gzip"})
    assert (reply.status, reply.body["name"]) == (200, "renamed")
    reply = await post_raw(
        api, f"{path}/replay", gz(b'{"state": "dead"}'), **{"Content-Encoding": "gzip"}
    )
    assert (reply.status, reply.body) == (202, {"replayed": 0})

    csv = b"u1,hello\nu2,there\n"
    gzipped = {"Content-Encoding": "gzip"}
    reply = await post_raw(
        api, "/v1/uploads?name=z.csv", gz(csv), **gzipped, **{"Content-Type": "text/csv"}
    )
    assert reply.status == 202, reply.body
    assert (reply.body["file"], reply.body["events"]) == ("z.csv", 2)
    form = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="file"; filename="form.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\n" + b"u3,hi\nu4,ho\n" + b"\r\n--XyZ--\r\n"
    )
    multipart = {"Content-Type": "multipart/form-data; boundary=XyZ"}
    reply = await post_raw(api, "/v1/uploads", gz(form), **gzipped, **multipart)
    assert reply.status == 202, reply.body
    assert (reply.body["file"], reply.body["events"]) == ("form.csv", 2)
    rows = [e for e in await stored_events(api) if e["topic"] == "file.row"]
    assert sorted(r["payload"]["user_id"] for r in rows) == ["u1", "u2", "u3", "u4"]

    # A body that may be left out is undone too: a token's ttl_s read from gzip.
    for ttl_s, most in ((60, 61), (7200, 7201)):
        reply = await post_raw(api, "/v1/users/u1/token", gz(b'{"ttl_s": %d}' % ttl_s), **gzipped)
        assert reply.status == 200, reply.body
        left = datetime.fromisoformat(reply.body["expires_at"]) - datetime.now(UTC)
        assert ttl_s - 5 < left.total_seconds() < most, (ttl_s, reply.body)


def bomb(size: int) -> bytes:
    """A gzip body that expands to `size` bytes of a valid event (most of them one string)."""
    c = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    out = [c.compress(b'{"topic":"order.created","payload":"')]
    chunk = b"a" * (1024 * 1024)
    for _ in range(size // len(chunk)):
        out.append(c.compress(chunk))
    out.append(c.compress(b'"}'))
    out.append(c.flush())
    return b"".join(out)


async def test_a_zip_bomb_is_a_413(api: Api) -> None:
    limit = api.settings.max_request_bytes
    body = bomb(200 * limit)  # 200 MiB undone, about 200 KiB sent
    assert len(body) < limit
    for path, content_type in [("/v1/events", "application/json"), ("/v1/uploads", "text/csv")]:
        reply = await send(
            api,
            "POST",
            path,
            data=body,
            headers={"Content-Type": content_type, "Content-Encoding": "gzip"},
        )
        error = expect_error(reply, 413, "payload_too_large", None)
        assert str(limit) in error["message"]
    # A compressed body over the limit as it is sent: refused as any body that size.
    noise = gz(os.urandom(limit + 1024))
    expect_error(
        await post_raw(api, "/v1/events", noise, **{"Content-Encoding": "gzip"}),
        413,
        "payload_too_large",
    )
    assert await stored_events(api) == []
    # A batch exactly at the limit once undone is taken.
    text = "a" * (api.settings.max_payload_bytes - 100)
    events = [{"topic": "order.created", "payload": text} for _ in range(limit // len(text) + 1)]
    exact = json.dumps({"events": events}, separators=(",", ":")).encode()
    events[-1]["payload"] = text[: len(text) - (len(exact) - limit)]
    exact = json.dumps({"events": events}, separators=(",", ":")).encode()
    assert len(exact) == limit
    reply = await post_raw(api, "/v1/events/batch", gz(exact), **{"Content-Encoding": "gzip"})
    assert reply.status == 202, reply.body
    assert len(await stored_events(api)) == len(events)
    reply = await post_raw(
        api, "/v1/events/batch", gz(exact + b" "), **{"Content-Encoding": "gzip"}
    )
    expect_error(reply, 413, "payload_too_large", None)


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", b'{"topic":"order.created"}'),  # not compressed at all
        ("gzip", gz(b'{"topic":"order.created"}')[:-6]),  # cut short
        ("gzip", gz(b'{"topic":"order.created"}') + b"trailing"),
        ("deflate", b"\x78\x9c garbage"),
        ("deflate", zlib.compress(b'{"topic":"order.created"}')[:8]),
        ("deflate", b"x"),
    ],
)
async def test_a_garbled_coded_body_is_a_400(api: Api, coding: str, body: bytes) -> None:
    reply = await post_raw(api, "/v1/events", body, **{"Content-Encoding": coding})
    error = expect_error(reply, 400, "bad_request", "Content-Encoding")
    assert coding in error["message"]
    assert await stored_events(api) == []


async def test_an_empty_coded_body_is_an_empty_body(api: Api) -> None:
    reply = await post_raw(api, "/v1/events", b"", **{"Content-Encoding": "gzip"})
    expect_error(reply, 400, "invalid_json", None)


@pytest.mark.parametrize("coding", ["br", "zstd", "x-foo", "gzip, gzip", "deflate, br", "compress"])
async def test_an_unknown_coding_is_a_415_naming_the_ones_taken(api: Api, coding: str) -> None:
    for path in ["/v1/events", "/v1/uploads"]:
        reply = await post_raw(api, path, b"\x00\x01 whatever", **{"Content-Encoding": coding})
        error = expect_error(reply, 415, "unsupported_media_type", "Content-Encoding")
        assert ACCEPTED in error["message"], error
    assert await stored_events(api) == []


async def test_a_coding_name_that_is_not_utf8_is_a_415(api: Api) -> None:
    status, answer = await raw_event(api, b"Content-Encoding: gz\xffip")
    assert status == 415, answer
    assert answer["error"]["field"] == "Content-Encoding"
    assert ACCEPTED in answer["error"]["message"]


async def test_an_api_key_that_is_not_utf8_is_a_401(api: Api) -> None:
    request = (
        b"GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tdk_\xff\xed\xa0\x80\r\n\r\n"
    )
    status, answer = await raw_exchange(api, request)
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
