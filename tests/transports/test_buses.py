"""The bus transports against real servers of the tests' own (tests/bus_servers.py): what
lands in Redis and in JetStream byte for byte, what each failure comes to, and that a
pooled connection comes back by itself after the server restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import nats
import pytest
import redis.asyncio as aioredis
from nats.js.api import StreamConfig

from tests.bus_servers import NatsServer, RedisServer
from tidings.model import (
    Claim,
    Destination,
    DestinationSpec,
    NatsSpec,
    RedisChannelSpec,
    RedisStreamSpec,
)
from tidings.policy.buses import parse_allowed
from tidings.transports.envelope import envelope
from tidings.transports.nats_jetstream import NatsJetStream
from tidings.transports.redis_channel import RedisChannels
from tidings.transports.redis_stream import RedisStreams

RECEIVED_AT = 1_700_000_000_123_456
PAYLOAD = b'{"amount": 12.50, "note":"caf\\u00e9"}'  # spacing and escapes kept as sent


def claim(n: int = 1, key: str = "user-1", topic: str = "order.created") -> Claim:
    return Claim(
        delivery_id=f"dlv_{n}",
        destination_id="dst_1",
        lane_key=key,
        attempt=1,
        event_id=f"evt_{n}",
        topic=topic,
        payload=PAYLOAD,
        received_at=RECEIVED_AT,
    )


def destination(spec: DestinationSpec) -> Destination:
    return Destination(
        id="dst_1", spec=spec, secrets=[], state="active", created_at=0, updated_at=0
    )


def stream_spec(url: str, **fields: Any) -> RedisStreamSpec:
    return RedisStreamSpec(topics=["*"], url=url, stream="orders", **fields)


# ------------------------------------------------------------------ redis_stream


@pytest.fixture
async def streams(redis_server: RedisServer) -> AsyncIterator[RedisStreams]:
    transport = RedisStreams(parse_allowed(redis_server.prefix))
    await transport.start()
    try:
        yield transport
    finally:
        await transport.close()


async def test_xadd_writes_the_fields_and_answers_the_entry_id(
    redis_server: RedisServer, streams: RedisStreams
) -> None:
    result = await streams.deliver(claim(), destination(stream_spec(redis_server.url)))
    assert result.outcome == "delivered", result
    assert result.answer is not None and result.answer.status_code is None
    client = aioredis.from_url(redis_server.url)
    try:
        ((entry_id, fields),) = await client.xrange("orders")
    finally:
        await client.aclose()
    assert entry_id.decode() == result.answer.body
    assert fields == {
        b"id": b"evt_1",
        b"topic": b"order.created",
        b"key": b"user-1",
        b"payload": PAYLOAD,
        b"received_at": b"2023-11-14T22:13:20.123456Z",
    }


async def test_maxlen_trims_the_stream_about_there(
    redis_server: RedisServer, streams: RedisStreams
) -> None:
    spec = stream_spec(redis_server.url, maxlen=100)
    results = await asyncio.gather(
        *(streams.deliver(claim(n), destination(spec)) for n in range(1000))
    )
    assert {r.outcome for r in results} == {"delivered"}
    client = aioredis.from_url(redis_server.url)
    try:
        length = await client.xlen("orders")
    finally:
        await client.aclose()
    assert 100 <= length < 300  # approximate: whole macro nodes go


async def test_redis_failures_are_classified_and_the_pool_comes_back(
    redis_server: RedisServer, streams: RedisStreams
) -> None:
    spec = stream_spec(redis_server.url, timeout_ms=500)
    assert (await streams.deliver(claim(1), destination(spec))).outcome == "delivered"
    client = aioredis.from_url(redis_server.url)
    try:
        await client.set("a-string", "x")
        wrong = await streams.deliver(
            claim(2), destination(msgspec.structs.replace(spec, stream="a-string"))
        )
        assert wrong.outcome == "rejected" and "WRONGTYPE" in (wrong.error or ""), wrong
        await client.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        slow = await streams.deliver(claim(3), destination(spec))
        assert slow.outcome == "timeout" and "0.5 s" in (slow.error or ""), slow
    finally:
        await client.aclose()
    await asyncio.sleep(1.1)
    await asyncio.to_thread(redis_server.kill)
    down = await streams.deliver(claim(4), destination(spec))
    assert down.outcome in ("connection_error", "timeout"), down
    await asyncio.to_thread(redis_server.start)
    # The pool reconnects by itself: at most the stale connections fail once each.
    outcomes = [(await streams.deliver(claim(5 + i), destination(spec))).outcome for i in range(3)]
    assert outcomes[-1] == "delivered", outcomes


async def test_deliveries_of_one_turn_share_a_pipeline_each_with_its_own_answer(
    redis_server: RedisServer, streams: RedisStreams
) -> None:
    """200 deliveries started together, one of them to a key that is not a stream: the
    others land in the order they were started, in one round trip or a few, and only the
    wrong one is rejected, with Redis's own error (not the pipeline's, which quotes the
    command and so the payload)."""
    client = aioredis.from_url(redis_server.url)
    try:
        await client.set("a-string", "x")
        before = await client.info("stats")
        spec = stream_spec(redis_server.url)
        wrong = msgspec.structs.replace(spec, stream="a-string")
        results = await asyncio.gather(
            *(
                streams.deliver(claim(n), destination(wrong if n == 77 else spec))
                for n in range(200)
            )
        )
        after = await client.info("stats")
        entries = await client.xrange("orders")
    finally:
        await client.aclose()
    outcomes = [r.outcome for r in results]
    assert outcomes[77] == "rejected" and outcomes.count("delivered") == 199, outcomes
    error = results[77].error or ""
    assert "WRONGTYPE" in error and "caf" not in error and "pipeline" not in error, error
    assert [e[1][b"id"].decode() for e in entries] == [f"evt_{n}" for n in range(200) if n != 77]
    kept = [r.answer.body for r in results if r.outcome == "delivered" and r.answer]
    assert kept == [e[0].decode() for e in entries]
    # One XADD each, read by the server in a few socket reads, not one per command.
    assert after["total_commands_processed"] - before["total_commands_processed"] <= 200 + 3
    assert after["total_reads_processed"] - before["total_reads_processed"] <= 20


async def test_a_command_is_not_sent_after_its_attempt_timed_out(
    redis_server: RedisServer, streams: RedisStreams
) -> None:
    """Two destinations on one server, timeouts of 0.3 s and 5 s, started together while
    the server holds writes for 1 s: the short one's attempt times out and its XADD is
    cut with it (a retry would otherwise be overtaken by the stale one); the long one
    lands."""
    client = aioredis.from_url(redis_server.url)
    try:
        short = stream_spec(redis_server.url, timeout_ms=300)
        long = stream_spec(redis_server.url, timeout_ms=5000)
        await client.execute_command("CLIENT", "PAUSE", "1000", "WRITE")
        results = await asyncio.gather(
            streams.deliver(claim(1), destination(short)),
            streams.deliver(claim(2), destination(long)),
        )
        entries = await client.xrange("orders")
    finally:
        await client.aclose()
    assert [r.outcome for r in results] == ["timeout", "delivered"], results
    assert [e[1][b"id"] for e in entries] == [b"evt_2"]


async def test_a_password_in_the_url_is_used_and_never_shown(tmp_path: Any) -> None:
    server = RedisServer(workdir=tmp_path / "redis-auth", password="hunter2")
    server.start()
    transport = RedisStreams(parse_allowed(server.prefix))
    try:
        good = await transport.deliver(claim(), destination(stream_spec(server.url)))
        assert good.outcome == "delivered", good
        bad_url = server.url.replace("hunter2", "wrong-pw")
        bad = await transport.deliver(claim(), destination(stream_spec(bad_url)))
        assert bad.outcome == "rejected", bad
        assert "wrong-pw" not in (bad.error or "") and "***@" in (bad.error or ""), bad
    finally:
        await transport.close()
        server.kill()


async def test_a_url_the_allow_list_no_longer_admits_is_refused_unsent(
    redis_server: RedisServer,
) -> None:
    transport = RedisStreams(parse_allowed("redis://127.0.0.1:1"))
    try:
        result = await transport.deliver(claim(), destination(stream_spec(redis_server.url)))
    finally:
        await transport.close()
    assert result.outcome == "refused" and "TIDINGS_BUS_ALLOWED_URLS" in (result.error or "")
    client = aioredis.from_url(redis_server.url)
    try:
        assert await client.exists("orders") == 0
    finally:
        await client.aclose()


# ------------------------------------------------------------------ redis_channel


@pytest.mark.parametrize("shape", ["envelope", "data"])
async def test_publish_sends_the_webhook_body(redis_server: RedisServer, shape: str) -> None:
    transport = RedisChannels(parse_allowed(redis_server.prefix))
    client = aioredis.from_url(redis_server.url)
    spec = RedisChannelSpec(topics=["*"], url=redis_server.url, channel="sample-queue")
    try:
        nobody = await transport.deliver(claim(0), destination(spec))
        assert nobody.outcome == "delivered"  # nobody listens: pub/sub keeps nothing
        assert nobody.answer is not None and nobody.answer.body == "0 subscribers"
        async with client.pubsub() as pubsub:
            await pubsub.subscribe("sample-queue")
            await pubsub.get_message(timeout=1)  # the subscribe confirmation
            spec = RedisChannelSpec(
                topics=["*"], url=redis_server.url, channel="sample-queue", body=shape
            )
            heard = await transport.deliver(claim(1), destination(spec))
            assert heard.answer is not None and heard.answer.body == "1 subscriber"
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    finally:
        await client.aclose()
        await transport.close()
    assert message is not None
    expected = envelope("order.created", RECEIVED_AT, PAYLOAD) if shape == "envelope" else PAYLOAD
    assert message["data"] == expected


# ------------------------------------------------------------------ nats


@pytest.fixture
async def jetstream(nats_server: NatsServer) -> AsyncIterator[NatsJetStream]:
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
    await nc.close()
    transport = NatsJetStream(parse_allowed(nats_server.prefix))
    try:
        yield transport
    finally:
        await transport.close()


async def stored(url: str) -> list[Any]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("ORDERS")
        return [await js.get_msg("ORDERS", s) for s in range(1, info.state.last_seq + 1)]
    finally:
        await nc.close()


async def test_jetstream_publish_is_acked_and_deduplicated_by_event_id(
    nats_server: NatsServer, jetstream: NatsJetStream
) -> None:
    spec = NatsSpec(topics=["*"], url=nats_server.url, subject="orders.{topic}.{key}")
    first = await jetstream.deliver(claim(key="user 1"), destination(spec))
    assert first.outcome == "delivered" and first.answer is not None, first
    assert first.answer.body == "stream ORDERS seq 1"
    again = await jetstream.deliver(claim(key="user 1"), destination(spec))  # a retry
    assert again.outcome == "delivered" and again.answer is not None
    assert again.answer.body == "stream ORDERS seq 1 (duplicate)"
    (msg,) = await stored(nats_server.url)
    assert msg.subject == "orders.order.created.user%201"
    assert msg.data == envelope("order.created", RECEIVED_AT, PAYLOAD)
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == "evt_1"
    assert msg.headers["Tidings-Topic"] == "order.created"
    assert msg.headers["Tidings-Key"] == "user 1"


async def test_jetstream_body_data_and_a_subject_no_stream_captures(
    nats_server: NatsServer, jetstream: NatsJetStream
) -> None:
    spec = NatsSpec(topics=["*"], url=nats_server.url, subject="orders.raw", body="data")
    assert (await jetstream.deliver(claim(), destination(spec))).outcome == "delivered"
    (msg,) = await stored(nats_server.url)
    assert msg.data == PAYLOAD and json.loads(msg.data)["amount"] == 12.5
    nowhere = NatsSpec(topics=["*"], url=nats_server.url, subject="elsewhere.x")
    result = await jetstream.deliver(claim(2), destination(nowhere))
    assert result.outcome == "rejected" and "elsewhere.x" in (result.error or ""), result


async def test_jetstream_across_a_restart(
    nats_server: NatsServer, jetstream: NatsJetStream
) -> None:
    spec = NatsSpec(topics=["*"], url=nats_server.url, subject="orders.{key}", timeout_ms=700)
    assert (await jetstream.deliver(claim(1), destination(spec))).outcome == "delivered"
    await asyncio.to_thread(nats_server.stop)
    down = await jetstream.deliver(claim(2), destination(spec))
    assert down.outcome in ("timeout", "connection_error"), down
    await asyncio.to_thread(nats_server.start)
    # The connection comes back by itself; the publish that timed out may have been
    # stored after all (nats-py sent it on reconnecting): its retry is stored once.
    for _ in range(20):
        result = await jetstream.deliver(claim(2), destination(spec))
        if result.outcome == "delivered":
            break
        await asyncio.sleep(0.2)
    assert result.outcome == "delivered", result
    ids = [m.headers["Nats-Msg-Id"] for m in await stored(nats_server.url)]
    assert ids == ["evt_1", "evt_2"]


async def test_nats_credentials_are_used_and_never_shown(tmp_path: Any) -> None:
    server = NatsServer(workdir=tmp_path / "nats-auth", user="app", password="pa55word")
    server.start()
    nc = await nats.connect(server.url)
    await nc.jetstream().add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
    await nc.close()
    transport = NatsJetStream(parse_allowed(server.prefix))
    try:
        spec = NatsSpec(topics=["*"], url=server.url, subject="orders.x", timeout_ms=1000)
        assert (await transport.deliver(claim(), destination(spec))).outcome == "delivered"
        wrong = NatsSpec(
            topics=["*"],
            url=server.url.replace("pa55word", "bad-pass"),
            subject="orders.x",
            timeout_ms=1000,
        )
        result = await transport.deliver(claim(2), destination(wrong))
        assert result.outcome == "connection_error", result
        assert "bad-pass" not in (result.error or "") and "***@" in (result.error or "")
    finally:
        await transport.close()
        server.kill()
