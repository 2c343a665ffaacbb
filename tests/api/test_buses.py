"""Bus destinations over the API: each kind is created with its own fields and answered
with them (credentials in its URL masked), a bad kind-specific field is a 400 naming it,
a bus URL outside TIDINGS_BUS_ALLOWED_URLS (or with the setting unset) is a
`400 forbidden_target` naming the setting, and a PATCH keeps the kind and the stored
credentials."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_api import expect_error, send
from tests.conftest import Api

ALLOWED = {"bus_allowed_urls": "redis://10.0.0.5:6379,nats://bus.internal:4222"}
STREAM = {"kind": "redis_stream", "url": "redis://:s3cret@10.0.0.5:6379/2", "stream": "orders"}
CHANNEL = {"kind": "redis_channel", "url": "redis://10.0.0.5/0", "channel": "sample-queue"}
NATS = {"kind": "nats", "url": "nats://app:pa55@bus.internal", "subject": "orders.{key}"}
COMMON_OUT = {
    "id", "name", "topics", "filter", "ordering", "on_dead", "retry", "timeout_ms",
    "rate_limit_per_s", "max_in_flight", "alert_url", "enabled", "state", "paused_reason",
    "secret", "created_at", "updated_at", "kind", "url",
}  # fmt: skip


def body(kind: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**kind, "topics": ["order.*"], **fields}


async def create(api: Api, kind: dict[str, Any], **fields: Any) -> dict[str, Any]:
    reply = await send(api, "POST", "/v1/destinations", json=body(kind, **fields))
    assert reply.status == 201, reply.body
    assert isinstance(reply.body, dict)
    return reply.body


@pytest.mark.parametrize("api", [ALLOWED], indirect=True)
@pytest.mark.parametrize(
    ("kind", "own", "url_shown"),
    [
        (STREAM, {"stream": "orders", "maxlen": None}, "redis://***@10.0.0.5:6379/2"),
        (CHANNEL, {"channel": "sample-queue", "body": "envelope"}, "redis://10.0.0.5/0"),
        (NATS, {"subject": "orders.{key}", "body": "envelope"}, "nats://***@bus.internal"),
    ],
)
async def test_each_bus_kind_is_created_and_answered_with_its_fields(
    api: Api, kind: dict[str, Any], own: dict[str, Any], url_shown: str
) -> None:
    created = await create(api, kind)
    assert set(created) == COMMON_OUT | set(own), created
    assert created["kind"] == kind["kind"] and created["url"] == url_shown
    assert {k: created[k] for k in own} == own
    for path in (f"/v1/destinations/{created['id']}", "/v1/destinations"):
        reply = await send(api, "GET", path)
        assert "s3cret" not in str(reply.body) and "pa55" not in str(reply.body)
    shown = (await send(api, "GET", f"/v1/destinations/{created['id']}")).body
    assert shown == created
    # The store keeps the credentials: the transport needs them.
    stored = await api.store.get_destination(created["id"])
    assert stored is not None and stored.spec.url == kind["url"]


@pytest.mark.parametrize("api", [ALLOWED], indirect=True)
async def test_maxlen_and_body_are_kept(api: Api) -> None:
    stream = await create(api, STREAM, maxlen=1000)
    assert stream["maxlen"] == 1000
    nats = await create(api, NATS, body="data")
    assert nats["body"] == "data"


@pytest.mark.parametrize("api", [ALLOWED], indirect=True)
@pytest.mark.parametrize(
    ("sent", "field"),
    [
        (body(STREAM, stream=None), "stream"),
        ({**body(STREAM), "stream": ""}, "stream"),
        (body(STREAM, maxlen=0), "maxlen"),
        (body(STREAM, maxlen="many"), "maxlen"),
        (body(STREAM, body="data"), "body"),  # a stream entry has fields, not a body
        (body(STREAM, url="http://10.0.0.5:6379"), "url"),
        (body(STREAM, url="redis://10.0.0.5:6379/0?password=x"), "url"),
        (body(STREAM, url="redis://10.0.0.5:6379/db"), "url"),
        (body(STREAM, stream="a\nb"), "stream"),
        ({k: v for k, v in body(STREAM).items() if k != "url"}, "url"),
        (body(CHANNEL, channel=7), "channel"),
        (body(CHANNEL, subject="x"), "subject"),
        (body(NATS, subject="orders.*"), "subject"),
        (body(NATS, subject="orders..x"), "subject"),
        (body(NATS, subject="orders.{user}"), "subject"),
        (body(NATS, url="redis://10.0.0.5:6379"), "url"),
        (body(NATS, url="nats://bus.internal/x"), "url"),
        (body(NATS, stream="s"), "stream"),
        (body(NATS, alert_url="ftp://x"), "alert_url"),
        (body({"kind": "kafka", "url": "kafka://h"}), "kind"),
    ],
)
async def test_bad_kind_fields_are_named(api: Api, sent: dict[str, Any], field: str) -> None:
    sent = {k: v for k, v in sent.items() if v is not None}
    expect_error(await send(api, "POST", "/v1/destinations", json=sent), 400, field=field)
    assert (await api.store.list_destinations(10, None)).items == []


@pytest.mark.parametrize(
    "url",
    [
        "redis://10.0.0.6:6379/0",  # another host
        "redis://10.0.0.5:6380/0",  # another port
        "rediss://10.0.0.5:6379",  # another scheme
        "redis://:pw@127.0.0.1:6379",
    ],
)
@pytest.mark.parametrize("api", [ALLOWED], indirect=True)
async def test_a_bus_url_outside_the_allow_list_is_forbidden(api: Api, url: str) -> None:
    for kind in (STREAM, CHANNEL):
        reply = await send(api, "POST", "/v1/destinations", json=body(kind, url=url))
        error = expect_error(reply, 400, "forbidden_target", "url")
        assert "TIDINGS_BUS_ALLOWED_URLS" in error["message"] and "pw" not in error["message"]


async def test_bus_destinations_are_refused_without_the_setting(api: Api) -> None:
    for kind in (STREAM, CHANNEL, NATS):
        reply = await send(api, "POST", "/v1/destinations", json=body(kind))
        error = expect_error(reply, 400, "forbidden_target", "url")
        assert "TIDINGS_BUS_ALLOWED_URLS" in error["message"]
        assert "s3cret" not in error["message"] and "pa55" not in error["message"]


@pytest.mark.parametrize("api", [ALLOWED], indirect=True)
async def test_private_bus_urls_pass_and_alert_urls_stay_guarded(api: Api) -> None:
    # 10.0.0.5 is private: the SSRF guard does not judge bus URLs, the allow-list does.
    await create(api, CHANNEL)
    reply = await send(
        api, "POST", "/v1/destinations", json=body(CHANNEL, alert_url="http://10.0.0.5/alert")
    )
    expect_error(reply, 400, "forbidden_target", "alert_url")


@pytest.mark.parametrize("api", [ALLOWED], indirect=True)
async def test_patch_keeps_the_kind_and_the_stored_credentials(api: Api) -> None:
    created = await create(api, STREAM)
    path = f"/v1/destinations/{created['id']}"
    # Sent back as answered (masked): the stored URL, password included, stays.
    reply = await send(api, "PATCH", path, json={"url": created["url"], "maxlen": 50})
    assert reply.status == 200, reply.body
    assert reply.body["maxlen"] == 50 and reply.body["url"] == created["url"]
    stored = await api.store.get_destination(created["id"])
    assert stored is not None and stored.spec.url == STREAM["url"]
    # A new URL replaces it, and passes the allow-list again.
    reply = await send(api, "PATCH", path, json={"url": "redis://:n3w@10.0.0.5:6379/3"})
    assert reply.status == 200 and reply.body["url"] == "redis://***@10.0.0.5:6379/3"
    reply = await send(api, "PATCH", path, json={"url": "redis://10.9.9.9:6379"})
    expect_error(reply, 400, "forbidden_target", "url")
    expect_error(await send(api, "PATCH", path, json={"kind": "nats"}), 400, field="kind")
    expect_error(await send(api, "PATCH", path, json={"subject": "x"}), 400, field="subject")
    expect_error(await send(api, "PATCH", path, json={"stream": ""}), 400, field="stream")
    same = await send(api, "PATCH", path, json={"kind": "redis_stream", "stream": "other"})
    assert same.status == 200 and same.body["stream"] == "other"


async def test_openapi_describes_each_kind(api: Api) -> None:
    document = (await send(api, "GET", "/openapi.json")).body
    schemas = document["components"]["schemas"]
    for union, members in (
        (
            "DestinationSpec",
            ("WebhookSpec", "RedisStreamSpec", "RedisChannelSpec", "NatsSpec", "GroupSpec"),
        ),
        (
            "DestinationOut",
            ("WebhookOut", "RedisStreamOut", "RedisChannelOut", "NatsOut", "GroupOut"),
        ),
    ):
        mapping = schemas[union]["discriminator"]["mapping"]
        assert schemas[union]["discriminator"]["propertyName"] == "kind"
        assert sorted(mapping) == ["group", "nats", "redis_channel", "redis_stream", "webhook"]
        assert {ref.rsplit("/", 1)[1] for ref in mapping.values()} == set(members)
    assert set(schemas["RedisStreamSpec"]["required"]) == {"kind", "url", "stream", "topics"}
    assert set(schemas["NatsSpec"]["required"]) == {"kind", "url", "subject", "topics"}
    assert schemas["RedisChannelSpec"]["additionalProperties"] is False
