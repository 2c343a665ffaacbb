"""The SSRF guard at create and patch time, over real HTTP: every spelling of an internal
target is a `400 forbidden_target` naming the field (`url` or `alert_url`), and nothing
is stored; TIDINGS_ALLOW_LOOPBACK_TARGETS lets loopback through and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_api import create_destination, destination_body, expect_error, send
from tests.conftest import Api

# The probes of issue 13, and their kin. Every one resolves (or reads) to loopback,
# private or link-local: none needs DNS beyond /etc/hosts' `localhost`.
FORBIDDEN = [
    "http://127.0.0.1:9000/hook",
    "http://localhost:9000/hook",
    "http://ip6-localhost:9000/hook",
    "http://localhost.localdomain:9000/hook",
    "http://foo.localhost/hook",
    "http://LOCALHOST./hook",
    "http://%31%32%37.0.0.1:9000/hook",
    "http://127.0.0.1%2e:9000/hook",
    "http://\u0661\u0662\u0667.\u0660.\u0660.\u0661:9000/hook",  # Arabic-Indic digits
    "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11:9000/hook",  # fullwidth
    "http://l\u043ecalhost:9000/hook",  # a Cyrillic o
    "http://loc\u0430lhost:9000/hook",  # a Cyrillic a
    "http://xn--lcalhost-nbh:9000/hook",
    "http://2130706433:9000/hook",
    "http://0177.0.0.1:9000/hook",
    "http://0x7f.0.0.1:9000/hook",
    "http://0x7f000001/hook",
    "http://127.1:9000/hook",
    "http://[::1]:9000/hook",
    "http://[::ffff:127.0.0.1]:9000/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://[::127.0.0.1]/hook",
    "http://10.0.0.1/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://0xa9fea9fe/latest/meta-data/",
    "http://[fe80::1%25eth0]/hook",
    "http://0.0.0.0:9000/hook",
    "http://receiver:8080/hook",
    "http://printer.local/hook",
    "http://metadata.google.internal/computeMetadata/v1/",
]


async def destinations(api: Api) -> list[dict[str, Any]]:
    reply = await send(api, "GET", "/v1/destinations?limit=100")
    assert reply.status == 200, reply.body
    items: list[dict[str, Any]] = reply.body["items"]
    return items


@pytest.mark.parametrize("url", FORBIDDEN)
@pytest.mark.parametrize("field", ["url", "alert_url"])
async def test_forbidden_targets_are_refused_at_creation(api: Api, url: str, field: str) -> None:
    reply = await send(api, "POST", "/v1/destinations", json=destination_body(**{field: url}))
    error = expect_error(reply, 400, "forbidden_target", field)
    assert error["message"].startswith(f"{field} host "), error
    assert "which webhooks may not target" in error["message"], error
    assert "TIDINGS_ALLOW_PRIVATE_TARGETS=1" in error["message"], error
    assert await destinations(api) == []


@pytest.mark.parametrize("url", FORBIDDEN)
@pytest.mark.parametrize("field", ["url", "alert_url"])
async def test_forbidden_targets_are_refused_on_patch(api: Api, url: str, field: str) -> None:
    created = await create_destination(api)
    reply = await send(api, "PATCH", f"/v1/destinations/{created['id']}", json={field: url})
    expect_error(reply, 400, "forbidden_target", field)
    assert await destinations(api) == [created]  # unchanged


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1:9000/hook", "url host 127.0.0.1 is 127.0.0.1 (loopback)"),
        ("http://ip6-localhost:9000/hook", "url host ip6-localhost is a loopback name"),
        (
            "http://%31%32%37.0.0.1:9000/hook",
            "url host %31%32%37.0.0.1 reads as 127.0.0.1 (loopback) to other URL parsers",
        ),
        (
            "http://l\u043ecalhost:9000/hook",
            "url host l\u043ecalhost reads as localhost, a loopback name,",
        ),
        ("http://2130706433:9000/hook", "url host 2130706433 is 127.0.0.1 (loopback)"),
        ("http://10.0.0.1/hook", "url host 10.0.0.1 is 10.0.0.1 (private)"),
    ],
)
async def test_the_refusal_says_what_the_host_is(api: Api, url: str, fragment: str) -> None:
    reply = await send(api, "POST", "/v1/destinations", json=destination_body(url=url))
    error = expect_error(reply, 400, "forbidden_target", "url")
    assert fragment in error["message"], error


@pytest.mark.parametrize(
    "url",
    [
        "http://\u0661.\u0661.\u0661.\u0661/hook",  # 1.1.1.1 in Arabic-Indic digits
        "http://134744072/hook",  # 8.8.8.8 as one number
        "http://8.8.8.8%2e/hook",
        "http://a.b.c.1/hook",
    ],
)
async def test_public_hosts_that_clients_read_differently_are_invalid(api: Api, url: str) -> None:
    created = await create_destination(api)
    reply = await send(api, "POST", "/v1/destinations", json=destination_body(url=url))
    error = expect_error(reply, 400, "invalid_field", "url")
    assert "write the host the way every client reads it" in error["message"], error
    reply = await send(api, "PATCH", f"/v1/destinations/{created['id']}", json={"url": url})
    expect_error(reply, 400, "invalid_field", "url")
    assert await destinations(api) == [created]


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",  # does not resolve here: the send-time guard stays
        "https://b\u00fccher.example/hook",
        "http://8.8.8.8/hook",
        "https://[2606:4700:4700::1111]/hook",
    ],
)
async def test_public_targets_are_accepted(api: Api, url: str) -> None:
    created = await create_destination(api, url=url, alert_url=url)
    reply = await send(api, "PATCH", f"/v1/destinations/{created['id']}", json={"url": url})
    assert reply.status == 200, reply.body


LOOPBACK = [{"allow_loopback_targets": True}]


@pytest.mark.parametrize("api", LOOPBACK, indirect=True)
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://127.0.0.2/hook",
        "http://[::1]:9000/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost:9000/hook",  # /etc/hosts: every address of it is loopback
        "http://ip6-localhost:9000/hook",
        "http://localhost.localdomain/hook",
    ],
)
async def test_allow_loopback_accepts_loopback(api: Api, url: str) -> None:
    created = await create_destination(api, url=url, alert_url=url)
    assert created["url"] == url
    other = await create_destination(api, name="other")
    reply = await send(api, "PATCH", f"/v1/destinations/{other['id']}", json={"url": url})
    assert reply.status == 200, reply.body
    assert reply.body["url"] == url


@pytest.mark.parametrize("api", LOOPBACK, indirect=True)
@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://192.168.1.1:8080/hook",
        "http://172.16.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1%25eth0]/hook",
        "http://[fd00::1]/hook",
        "http://[::127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://metadata.google.internal/",
    ],
)
@pytest.mark.parametrize("field", ["url", "alert_url"])
async def test_allow_loopback_refuses_the_rest(api: Api, url: str, field: str) -> None:
    reply = await send(api, "POST", "/v1/destinations", json=destination_body(**{field: url}))
    error = expect_error(reply, 400, "forbidden_target", field)
    assert error["message"].endswith("set TIDINGS_ALLOW_PRIVATE_TARGETS=1 for development")
    assert "TIDINGS_ALLOW_LOOPBACK_TARGETS" not in error["message"]
    created = await create_destination(api)
    reply = await send(api, "PATCH", f"/v1/destinations/{created['id']}", json={field: url})
    expect_error(reply, 400, "forbidden_target", field)
    assert await destinations(api) == [created]


@pytest.mark.parametrize("api", LOOPBACK, indirect=True)
@pytest.mark.parametrize(
    "url", ["http://%31%32%37.0.0.1/hook", "http://127.1/hook", "http://l\u043ecalhost/hook"]
)
async def test_allow_loopback_refuses_ambiguous_loopback(api: Api, url: str) -> None:
    reply = await send(api, "POST", "/v1/destinations", json=destination_body(url=url))
    expect_error(reply, 400, "invalid_field", "url")


@pytest.mark.parametrize("api", [{"allow_private_targets": True}], indirect=True)
@pytest.mark.parametrize("url", ["http://10.0.0.1/hook", "http://127.0.0.1:9/", "http://vm/"])
async def test_allow_private_accepts_everything(api: Api, url: str) -> None:
    created = await create_destination(api, url=url)
    assert created["url"] == url
