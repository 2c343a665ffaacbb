"""Retries of the SDK against a real Tidings behind a front that loses answers, answers
503/429 or cuts connections (tests/sdk/lossy.py): a publish whose answer is lost is sent
again with the same Idempotency-Key and creates one event; 503 waits its Retry-After;
what is not safe to send twice is not; every retry is bounded.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from tests.conftest import API_KEY, Api
from tests.sdk.lossy import Lossy
from tidings import AsyncClient, Client, Retries, TidingsError

FAST = Retries(max_retries=3, backoff_s=0.01, max_backoff_s=0.05)
# Webhook destinations to 127.0.0.1 (never sent to: the API has no workers here).
PRIVATE = pytest.mark.parametrize("api", [{"allow_private_targets": True}], indirect=True)


@pytest.fixture
async def lossy(api: Api) -> AsyncIterator[Lossy]:
    front = await Lossy(api.url).start()
    try:
        yield front
    finally:
        await front.close()


@pytest.fixture
async def client(lossy: Lossy) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(lossy.url, api_key=API_KEY, retries=FAST, timeout=5) as c:
        yield c


async def events_of(api: Api, topic: str) -> list[str]:
    async with AsyncClient(api.url, api_key=API_KEY) as direct:
        return [e.id async for e in direct.iter_events(topic=topic)]


async def test_a_publish_whose_answer_is_lost_is_sent_again_and_stored_once(
    api: Api, lossy: Lossy, client: AsyncClient
) -> None:
    # Given the first answer to a publish is lost after the server stored the event
    lossy.fault("POST /v1/events", "drop")
    # When the SDK publishes (with no key of the caller's)
    published = await client.publish("lost.answer", {"n": 1})
    # Then it sent the same generated key twice, and one event exists: the one it returned
    keys = lossy.tried("POST /v1/events")
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0] is not None
    assert await events_of(api, "lost.answer") == [published.id]
    assert published.duplicate  # the second attempt found the first's event


async def test_the_blocking_client_keeps_the_key_too(api: Api, lossy: Lossy) -> None:
    lossy.fault("POST /v1/events", "drop", "drop")
    lossy.fault("POST /v1/events/batch", "drop")

    def publish() -> tuple[str, list[str]]:
        with Client(lossy.url, api_key=API_KEY, retries=FAST, timeout=5) as c:
            one = c.publish("lost.sync", idempotency_key="caller-key")
            batch = c.publish_batch([{"topic": "lost.sync"}, {"topic": "lost.sync"}])
            return one.id, batch.ids

    one, batch = await asyncio.to_thread(publish)
    assert lossy.tried("POST /v1/events") == ["caller-key"] * 3
    batch_keys = lossy.tried("POST /v1/events/batch")
    assert len(batch_keys) == 2 and batch_keys[0] == batch_keys[1]
    assert sorted(await events_of(api, "lost.sync")) == sorted([one, *batch])


async def test_503_waits_its_retry_after(lossy: Lossy, client: AsyncClient) -> None:
    lossy.fault("GET /v1/events", "503")
    started = time.monotonic()
    page = await client.list_events(limit=1)
    assert page.items == []
    assert time.monotonic() - started >= 0.9  # Retry-After: 1, not the 10 ms backoff
    assert len(lossy.tried("GET /v1/events")) == 2


@PRIVATE
async def test_429_without_retry_after_backs_off_and_goes_again(
    lossy: Lossy, client: AsyncClient
) -> None:
    lossy.retry_after = None
    lossy.fault("POST /v1/destinations", "429", "429")
    created = await client.create_destination("webhook", ["a"], url="http://127.0.0.1:9/x")
    assert created.kind == "webhook"
    assert len(lossy.tried("POST /v1/destinations")) == 3


async def test_retries_are_bounded(lossy: Lossy, client: AsyncClient) -> None:
    lossy.retry_after = "0"
    lossy.fault("GET /v1/events", *["503"] * 10)
    with pytest.raises(TidingsError) as err:
        await client.list_events()
    assert (err.value.status, err.value.code) == (503, "unavailable")
    assert len(lossy.tried("GET /v1/events")) == 1 + FAST.max_retries


@PRIVATE
async def test_what_is_not_safe_twice_is_not_sent_twice(
    api: Api, lossy: Lossy, client: AsyncClient
) -> None:
    # A create whose answer is lost: the server made it; sending it again would make two.
    lossy.fault("POST /v1/destinations", "drop")
    with pytest.raises(TidingsError) as err:
        await client.create_destination("webhook", ["a"], url="http://127.0.0.1:9/x")
    assert (err.value.code, err.value.status) == ("connection_error", None)
    assert len(lossy.tried("POST /v1/destinations")) == 1
    # A connection cut before the request was forwarded, on a GET: safe, so tried again.
    lossy.fault("GET /v1/destinations", "cut", "cut")
    page = await client.list_destinations()
    assert len(page.items) == 1 and len(lossy.tried("GET /v1/destinations")) == 3
    # A 4xx is an answer, never retried.
    with pytest.raises(TidingsError) as err:
        await client.get_event("evt_missing")
    assert err.value.status == 404 and len(lossy.tried("GET /v1/events/evt_missing")) == 1


async def test_nothing_listening_is_a_connection_error_after_the_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    async with AsyncClient(f"http://127.0.0.1:{port}", retries=FAST) as c:
        started = time.monotonic()
        with pytest.raises(TidingsError) as err:
            await c.health()
    assert (err.value.code, err.value.status) == ("connection_error", None)
    assert f"127.0.0.1:{port}" in err.value.message
    assert time.monotonic() - started < 2
