"""`tidings.AsyncClient` against the real API in-process (tests/conftest.py `api`: no
delivery workers, so deliveries stay pending), every call: what it answers, as Structs,
and the errors it raises. The blocking client's run on dead letters is in
test_client_serve.py; the two share their code (the sync one is generated).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

import tidings
from tests.conftest import API_KEY, Api
from tidings import AsyncClient, EventIn, TidingsError

pytestmark = pytest.mark.parametrize("api", [{"allow_private_targets": True}], indirect=True)


@pytest.fixture
async def client(api: Api) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(api.url, api_key=API_KEY) as c:
        yield c


async def test_every_call(api: Api, client: AsyncClient) -> None:
    assert (await client.health()).version == tidings.__version__
    assert (await client.ready()).status == "ready"

    dest = await client.create_destination(
        "webhook", ["order.*"], url="http://127.0.0.1:9/hook", name="billing", ordering="none"
    )
    assert (dest.name, dest.ordering, dest.body) == ("billing", "none", "envelope")
    assert dest.stream is None and dest.lease_ms is None  # other kinds' fields
    assert await client.get_destination("billing") == dest
    assert (await client.update_destination("billing", enabled=False)).enabled is False
    assert (await client.update_destination("billing", enabled=True)).enabled is True
    assert (await client.rotate_secret(dest.id)).secret != dest.secret
    assert [d.id async for d in client.iter_destinations()] == [dest.id]
    assert (await client.list_destinations(limit=1)).next is None

    first = await client.publish("order.created", {"total": 12}, key="u1", recipients=["u1"])
    assert first.deliveries == 1 and not first.duplicate
    batch = await client.publish_batch([EventIn(topic="order.paid", key="u1")] * 2)
    assert batch.deliveries == [1, 1] and batch.duplicates == 0
    again = await client.publish_batch([EventIn(topic="order.paid")], idempotency_key="b1")
    repeat = await client.publish_batch([EventIn(topic="order.paid")], idempotency_key="b1")
    assert repeat.ids == again.ids and repeat.duplicates == 1

    events = [e async for e in client.iter_events(topic="order.*", page_size=2)]
    assert [e.id for e in events] == [*again.ids, *reversed(batch.ids), first.id]
    page = await client.list_events(key="u1", limit=1)
    assert page.items[0].id == batch.ids[1] and page.next
    event = await client.get_event(first.id)
    assert event.payload == {"total": 12} and event.deliveries is not None
    (delivery,) = event.deliveries
    assert (delivery.destination_id, delivery.state) == (dest.id, "pending")
    assert (await client.get_chain(first.id)).items[0].id == first.id

    listed = [d.id async for d in client.iter_deliveries(destination_id="billing", page_size=2)]
    assert len(listed) == 4 and delivery.id in listed
    assert (await client.list_deliveries(state="dead")).items == []
    got = await client.get_delivery(delivery.id)
    assert got.attempts == [] and got.attempt_count == 0
    with pytest.raises(TidingsError) as err:
        await client.retry_delivery(delivery.id)  # pending: not yet
    assert (err.value.status, err.value.code) == (409, "conflict")
    many = await client.retry_deliveries([delivery.id])
    assert (many.retried, many.conflicts) == (0, [delivery.id])
    with pytest.raises(TidingsError) as err:
        await client.purge_delivery(delivery.id)  # not dead
    assert err.value.code == "conflict"
    assert (await client.replay("billing", state="dead")).replayed == 0

    report = await client.upload(b"u7,hello\n", name="one.csv")
    assert (report.state, report.events) == ("done", 1)
    assert (await client.get_upload(report.upload_id)).file == "one.csv"

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"user_id": "u8", "message": "a"}\n'
        yield b'{"user_id": "u9", "message": "b"}\n'

    assert (await client.upload(chunks(), format="jsonl")).events == 2

    inbox = await client.inbox("u1")
    assert [(m.offset, m.id) for m in inbox.messages] == [(1, first.id)] and inbox.top == 1
    assert (await client.ack_inbox("u1", 1)).acked == 1
    assert (await client.create_token("u1")).token
    assert (await client.presence("u1")).online is False

    await client.delete_destination("billing")
    assert (await client.list_destinations()).items == []


async def test_structs_encode_back_to_the_answers(api: Api, client: AsyncClient) -> None:
    """A Struct turned back into JSON is the API's answer, field for field and in order
    (what `tidings ... --json` prints)."""
    dest = await client.create_destination("webhook", ["a"], url="http://127.0.0.1:9/x")
    published = await client.publish("a", [1, "two"], key="k")
    for path, struct in (
        (f"/v1/destinations/{dest.id}", dest),
        (f"/v1/events/{published.id}", await client.get_event(published.id)),
        ("/v1/events", await client.list_events()),
    ):
        status, raw = await api.call("GET", path)
        assert status == 200
        assert list(msgspec.to_builtins(struct)) == list(raw)  # type: ignore[arg-type]
        assert msgspec.to_builtins(struct) == raw


async def test_any_payload_the_server_keeps_decodes(api: Api, client: AsyncClient) -> None:
    # Valid JSON the server stores as sent, though no double holds 1e400.
    status, _ = await api.call(
        "POST",
        "/v1/events",
        data=b'{"topic": "odd", "payload": [1e400, 0.5, 12345678901234567890123]}',
    )
    assert status == 202
    (event,) = (await client.list_events(topic="odd")).items
    assert event.payload == [float("inf"), 0.5, 12345678901234567890123]


async def test_errors(api: Api, client: AsyncClient) -> None:
    with pytest.raises(TidingsError) as err:
        await client.publish_batch([{"topic": "ok"}, {"topic": "bad topic"}])
    assert (err.value.status, err.value.code, err.value.field) == (
        400,
        "invalid_field",
        "events[1].topic",
    )
    with pytest.raises(TidingsError) as err:
        await client.list_deliveries(destination_id="nobody")
    assert (err.value.status, err.value.code) == (404, "not_found")
    with pytest.raises(TidingsError) as err:
        await client.inbox("u1", limit=5000)
    assert (err.value.field, err.value.status) == ("limit", 400)
    async with AsyncClient(api.url) as keyless:
        with pytest.raises(TidingsError) as err:
            await keyless.get_event("evt_x")
    assert (err.value.status, err.value.code) == (401, "unauthorized")
    assert repr(err.value).startswith("TidingsError(code='unauthorized', status=401")


def test_bad_base_url(api: Api) -> None:
    with pytest.raises(ValueError, match="not an http"):
        AsyncClient("localhost:8080")
