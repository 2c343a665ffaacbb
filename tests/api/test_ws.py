"""The WebSocket gateway on a real socket (aiohttp's client against the in-test server):
tokens, the welcome frame, catch-up then live without gap or repeat, acks, refusals."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.api.test_api import expect_error, publish, send
from tests.conftest import Api
from tidings.realtime import tokens

UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def token_for(api: Api, user: str, ttl_s: int | None = None) -> str:
    return (await api.sdk.create_token(user, ttl_s=ttl_s)).token


async def next_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    frame: dict[str, Any] = json.loads(msg.data)
    return frame


async def test_catch_up_then_live_then_ack(api: Api) -> None:
    for n in range(1, 4):
        await publish(api, recipients=["u1"], payload={"n": n})
    tok = await token_for(api, "u1")
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{api.url}/v1/ws?user_id=u1&token={tok}&after=1") as ws,
    ):
        assert await next_frame(ws) == {"type": "welcome", "top": 3}
        got = [await next_frame(ws) for _ in range(2)]
        assert [(f["type"], f["offset"], f["payload"]) for f in got] == [
            ("message", 2, {"n": 2}),
            ("message", 3, {"n": 3}),
        ]
        assert set(got[0]) == {"type", "offset", "id", "topic", "payload", "received_at"}
        live = await publish(api, recipients=["u1", "u2"], payload={"n": 4})
        frame = await next_frame(ws)
        assert (frame["offset"], frame["id"], frame["payload"]) == (4, live["id"], {"n": 4})
        _status, presence = await api.call("GET", "/v1/presence?user_id=u1")
        assert presence == {"user_id": "u1", "online": True, "connections": 1}
        await ws.send_json({"type": "ack", "up_to": 3})
        assert await next_frame(ws) == {"type": "acked", "up_to": 3}
        await ws.send_json({"type": "ping"})
        assert await next_frame(ws) == {"type": "pong"}
        # Nothing a client sends reads another user's inbox.
        await ws.send_json({"type": "ack", "up_to": 1, "user_id": "u2"})
        assert (await next_frame(ws))["type"] == "error"
    _, acked = await api.call("POST", "/v1/users/u2/inbox/ack", {"up_to": 0})
    assert acked == {"acked": 0}
    for _ in range(50):  # the socket's close reaches the server's hub
        _, presence = await api.call("GET", "/v1/presence?user_id=u1")
        if presence["connections"] == 0:  # type: ignore[index]
            break
        await asyncio.sleep(0.05)
    assert presence == {"user_id": "u1", "online": False, "connections": 0}


async def test_without_after_only_new_messages_come(api: Api) -> None:
    await publish(api, recipients=["u1"])
    tok = await token_for(api, "u1", ttl_s=60)
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{api.url}/ws/u1?token={tok}") as ws:
        assert await next_frame(ws) == {"type": "welcome", "top": 1}
        await api.call("POST", "/notifications", {"user_id": "u1", "title": "t"})
        frame = await next_frame(ws)
        assert (frame["offset"], frame["topic"], frame["payload"]) == (
            2,
            "notification",
            {"title": "t"},
        )


async def test_bad_tokens_are_refused_before_the_upgrade(api: Api) -> None:
    good = await token_for(api, "u1")
    other = await token_for(api, "u2")
    expired = tokens.sign(b"wrong" * 8, "u1", 1)
    user, stamp, mac = good.split(".")
    forged = f"{user}.{int(stamp) + 1000}.{mac}"
    async with aiohttp.ClientSession() as anon:
        for path in (
            "/v1/ws?user_id=u1",
            f"/v1/ws?user_id=u1&token={other}",
            f"/v1/ws?user_id=u1&token={expired}",
            f"/v1/ws?user_id=u1&token={forged}",
            f"/ws/u1?token={other}",
        ):
            async with anon.get(api.url + path) as r:
                assert r.status == 401, path
                body = await r.json()
                assert body["error"]["code"] == "unauthorized"
    expect_error(
        await send(api, "POST", "/v1/users/u1/token", json={"ttl_s": 0}), 400, field="ttl_s"
    )
    reply = await send(api, "POST", "/v1/users/u1/token", json={"ttl_s": 86_401})
    expect_error(reply, 400, field="ttl_s")
    expect_error(await send(api, "GET", "/v1/ws?user_id=u1&token=x&bogus=1"), 400, field="bogus")
    async with aiohttp.ClientSession() as anon, anon.post(api.url + "/v1/users/u1/token") as r:
        assert r.status == 401  # a token needs the API key


@pytest.mark.parametrize("api", [{"ws_max_connections": 1}], indirect=True)
async def test_past_the_connection_cap_a_socket_is_503(api: Api) -> None:
    tok = await token_for(api, "u1")
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{api.url}/v1/ws?user_id=u1&token={tok}") as ws,
    ):
        await next_frame(ws)
        async with s.get(f"{api.url}/v1/ws?user_id=u1&token={tok}") as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "1"


@pytest.mark.parametrize("api", [{"ws_connect_rate": 2.0}], indirect=True)
async def test_past_the_connect_rate_a_socket_is_503(api: Api) -> None:
    tok = await token_for(api, "u1")
    statuses = []
    async with aiohttp.ClientSession() as s:
        for _ in range(5):
            async with s.get(
                f"{api.url}/v1/ws?user_id=u1&token={tok}",
                headers=UPGRADE,
            ) as r:
                statuses.append(r.status)
    assert statuses.count(503) >= 2 and 101 in statuses, statuses


async def test_uploaded_rows_reach_an_open_socket(api: Api) -> None:
    """Rows from `POST /v1/uploads` land in inboxes and are pushed live, like events."""
    tok = await token_for(api, "u7")
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{api.url}/v1/ws?user_id=u7&token={tok}") as ws,
    ):
        assert await next_frame(ws) == {"type": "welcome", "top": 0}
        body = "userId,alertMessage\nu7,first\nu8,other\nu7,second\n"
        status, _ = await api.call(
            "POST", "/v1/uploads?name=a.csv", data=body, headers={"Content-Type": "text/csv"}
        )
        assert status == 202
        got = [await next_frame(ws) for _ in range(2)]
        assert [(f["offset"], f["payload"]["message"]) for f in got] == [
            (1, "first"),
            (2, "second"),
        ]


@pytest.mark.parametrize("api", [{"ws_send_queue": 4}], indirect=True)
async def test_a_slow_client_is_closed_with_4008_and_the_others_go_on(api: Api) -> None:
    """A client that stops reading (websockets' small max_queue stops reading the TCP
    socket) backs the server up until its send queue fills: it is closed with 4008; a
    client of the same user on the same node gets every message meanwhile."""
    tok = await token_for(api, "slow")
    ws_url = api.url.replace("http://", "ws://") + f"/v1/ws?user_id=slow&token={tok}"
    big = "x" * 60_000
    count = 150  # ~9 MB: more than the loopback socket buffers hold
    async with (
        connect(ws_url, max_queue=1, max_size=None) as slow,
        aiohttp.ClientSession() as s,
        s.ws_connect(ws_url, max_msg_size=0) as fast,
    ):
        assert await next_frame(fast) == {"type": "welcome", "top": 0}

        async def read_all() -> list[dict[str, Any]]:
            return [await next_frame(fast) for _ in range(count)]

        reader = asyncio.create_task(read_all())
        for n in range(1, count + 1):
            await publish(api, recipients=["slow"], payload={"n": n, "pad": big})
        got = await reader
        assert [f["offset"] for f in got] == list(range(1, count + 1))
        # The slow one now reads what was buffered, then the close.
        offsets = []
        with pytest.raises(websockets.ConnectionClosed) as closed:
            for _ in range(count + 2):
                frame = json.loads(await asyncio.wait_for(slow.recv(), 10))
                if frame["type"] == "message":
                    offsets.append(frame["offset"])
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008
        assert len(offsets) < count and offsets == list(range(1, len(offsets) + 1))


async def metric(api: Api, line_start: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(api.url + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(line_start + " "):
                return float(line.split()[-1])
    return 0.0


async def test_socket_metrics(api: Api) -> None:
    """tidings_ws_sockets, tidings_ws_frames by source, tidings_ws_refused by reason."""
    frames_store = await metric(api, 'tidings_ws_frames_total{source="store"}')
    frames_live = await metric(api, 'tidings_ws_frames_total{source="live"}')
    refused = await metric(api, 'tidings_ws_refused_total{reason="token"}')
    await publish(api, recipients=["m1"])
    tok = await token_for(api, "m1")
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{api.url}/v1/ws?user_id=m1&token={tok}&after=0") as ws,
    ):
        assert (await next_frame(ws))["type"] == "welcome"
        assert (await next_frame(ws))["offset"] == 1  # from the store
        await publish(api, recipients=["m1"])
        assert (await next_frame(ws))["offset"] == 2  # live
        assert await metric(api, "tidings_ws_sockets") >= 1
        assert await metric(api, 'tidings_ws_frames_total{source="store"}') == frames_store + 1
        assert await metric(api, 'tidings_ws_frames_total{source="live"}') == frames_live + 1
        reply = await send(api, "GET", "/v1/ws?user_id=m1&token=forged", headers=UPGRADE)
        assert reply.status == 401
    assert await metric(api, 'tidings_ws_refused_total{reason="token"}') == refused + 1
