"""The blocking `tidings.Client` against a real `tidings serve` (SQLite, its workers
running), every call of the API: what it answers, as Structs, and the errors it raises.

A webhook to a port nothing listens on, with one attempt, gives dead letters within a
second, so retry, purge and replay are exercised on real dead deliveries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tidings
from tests.e2e.procs import API_KEY, TidingsProcess, free_port
from tidings import Client, EventIn, TidingsError

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsProcess]:
    workdir: Path = tmp_path_factory.mktemp("sdk-serve")
    proc = TidingsProcess(
        workdir,
        f"sqlite:///{workdir / 'tidings.db'}",
        extra_env={"TIDINGS_ALLOW_PRIVATE_TARGETS": "1"},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def client(server: TidingsProcess) -> Iterator[Client]:
    with Client(server.url, api_key=API_KEY, timeout=10) as c:
        yield c


def dead_soon(client: Client, destination_id: str, count: int) -> list[tidings.Delivery]:
    """The destination's dead deliveries once there are `count` (bounded wait)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        dead = list(client.iter_deliveries(destination_id=destination_id, state="dead"))
        if len(dead) >= count:
            return dead
        time.sleep(0.05)
    raise AssertionError(f"{count} dead deliveries never came")


def test_health_and_ready(client: Client) -> None:
    assert client.health() == tidings.Health(status="ok", version=tidings.__version__)
    assert client.ready().status == "ready"


def test_destinations_crud_rotate(client: Client) -> None:
    created = client.create_destination(
        "webhook",
        ["order.*"],
        url=f"http://127.0.0.1:{free_port()}/hook",
        name="sdk-crud",
        retry={"max_attempts": 3},
    )
    assert isinstance(created, tidings.Destination)
    assert (created.kind, created.name, created.topics) == ("webhook", "sdk-crud", ["order.*"])
    assert created.retry == tidings.RetryPolicy(max_attempts=3)
    assert created.secret.startswith("whsec_") and created.state == "active"
    assert client.get_destination("sdk-crud") == created  # by name as by id

    changed = client.update_destination(created.id, state="paused", retry={"initial_ms": 50})
    assert changed.state == "paused"
    assert (changed.retry.max_attempts, changed.retry.initial_ms) == (3, 50)  # merged
    cleared = client.update_destination(created.id, extra={"name": None})
    assert cleared.name is None

    rotated = client.rotate_secret(created.id)
    assert rotated.secret != created.secret

    ids = [d.id for d in client.iter_destinations(page_size=1)]
    assert created.id in ids
    page = client.list_destinations(limit=1)
    assert len(page.items) == 1 and (page.next is not None) == (len(ids) > 1)

    client.delete_destination(created.id)
    with pytest.raises(TidingsError) as err:
        client.get_destination(created.id)
    assert (err.value.status, err.value.code) == (404, "not_found")


def test_publish_batch_list_get_chain(client: Client) -> None:
    first = client.publish("sdk.made", {"n": 1}, key="k1", recipients=["sdk-user"])
    assert isinstance(first, tidings.Published) and not first.duplicate
    again = client.publish("sdk.made", {"n": 1}, key="k1", idempotency_key="sdk-key-1")
    repeat = client.publish("sdk.made", {"n": 2}, idempotency_key="sdk-key-1")
    assert repeat.duplicate and repeat.id == again.id  # the first event's id, nothing new

    follow = client.publish(
        "sdk.followed", causation_id=first.id, correlation_id=first.id, key="k1"
    )
    batch = client.publish_batch(
        [EventIn(topic="sdk.batch", payload=i) for i in range(3)]
        + [{"topic": "sdk.batch", "payload": "as a dict"}]
    )
    assert len(batch.ids) == 4 and batch.duplicates == 0

    event = client.get_event(first.id)
    assert (event.topic, event.key, event.payload) == ("sdk.made", "k1", {"n": 1})
    assert event.recipients == ["sdk-user"] and event.deliveries == []
    assert event.idempotency_key  # the key the SDK made for it

    listed = [e.id for e in client.iter_events(topic="sdk.batch", page_size=3)]
    assert listed == list(reversed(batch.ids))  # newest first, across two pages
    page = client.list_events(topic="sdk.*", limit=2)
    assert len(page.items) == 2 and page.next is not None
    assert [e.payload for e in client.iter_events(topic="sdk.made")] == [{"n": 1}, {"n": 1}]

    chain = client.get_chain(follow.id)
    assert chain.correlation_id == first.id and not chain.truncated
    assert [(n.id, n.depth, n.parent_id) for n in chain.items] == [
        (first.id, 0, None),
        (follow.id, 1, first.id),
    ]


def test_deliveries_dead_letters_retry_purge_replay(client: Client) -> None:
    dest = client.create_destination(
        "webhook",
        ["dlq.*"],
        url=f"http://127.0.0.1:{free_port()}/nobody",
        retry={"max_attempts": 1},
        timeout_ms=1000,
    )
    published = [client.publish("dlq.fail", i, key=f"k{i}") for i in range(3)]
    dead = dead_soon(client, dest.id, 3)
    assert {d.event_id for d in dead} == {p.id for p in published}

    one = client.get_delivery(dead[0].id)
    assert one.state == "dead" and one.attempts is not None
    assert one.attempts[0].outcome == "connection_error"

    retried = client.retry_delivery(dead[0].id)
    assert retried.id == dead[0].id and retried.attempt_count == 0
    many = client.retry_deliveries([dead[1].id, "dlv_nothing"])
    assert (many.retried, many.not_found) == (1, ["dlv_nothing"])
    dead_soon(client, dest.id, 3)  # each failed its one attempt again

    client.purge_delivery(dead[2].id)
    with pytest.raises(TidingsError) as err:
        client.get_delivery(dead[2].id)
    assert err.value.code == "not_found"
    assert client.replay(dest.id).replayed == 2
    page = client.list_deliveries(destination_id=dest.id, limit=1)
    assert len(page.items) == 1 and page.next is not None


def test_uploads(client: Client) -> None:
    report = client.upload(b"user_id,message\nu1,hello\nu2,hi\n,empty\n", name="rows.csv")
    assert (report.state, report.rows, report.events, report.bad_rows) == ("done", 2, 2, 1)
    assert report.bad[0].line == 4
    assert client.get_upload(report.upload_id) == report
    streamed = client.upload(iter([b"u3,a\n", b"u4,b\n"]), format="csv", name="more.csv")
    assert streamed.events == 2


def test_inbox_ack_token_presence(client: Client) -> None:
    for i in range(3):
        client.publish("note", {"i": i}, recipients=["inbox-user"])
    inbox = client.inbox("inbox-user", limit=2)
    assert [m.offset for m in inbox.messages] == [1, 2]
    assert (inbox.next, inbox.top) == (2, 3)
    assert [m.payload for m in client.inbox("inbox-user", after=2).messages] == [{"i": 2}]
    assert client.ack_inbox("inbox-user", 2).acked == 2
    token = client.create_token("inbox-user", ttl_s=60)
    assert token.token and token.expires_at.endswith("Z")
    assert client.presence("inbox-user") == tidings.Presence(
        user_id="inbox-user", online=False, connections=0
    )


def test_errors_carry_code_field_status(client: Client, server: TidingsProcess) -> None:
    with pytest.raises(TidingsError) as err:
        client.create_destination(
            "webhook", ["a"], url="http://127.0.0.1/", retry={"max_attempts": 0}
        )
    assert (err.value.status, err.value.code, err.value.field) == (
        400,
        "invalid_field",
        "retry.max_attempts",
    )
    with pytest.raises(TidingsError) as err:
        client.publish("")
    assert (err.value.status, err.value.field) == (400, "topic")
    client.create_destination("webhook", ["a"], url="http://127.0.0.1/x", name="taken")
    with pytest.raises(TidingsError) as err:
        client.create_destination("webhook", ["a"], url="http://127.0.0.1/x", name="taken")
    assert (err.value.status, err.value.code) == (409, "conflict")
    with Client(server.url, api_key="tdk_wrong") as wrong, pytest.raises(TidingsError) as err:
        wrong.list_events()
    assert (err.value.status, err.value.code) == (401, "unauthorized")
    assert "unauthorized" in str(err.value) and "HTTP 401" in str(err.value)


def test_pull_group(client: Client) -> None:
    client.create_destination("group", ["job.*"], name="workers", ordering="none")
    sent = client.publish_batch([EventIn(topic="job.run", payload=i) for i in range(3)])
    leased = client.lease("workers", max=2, wait_ms=1000).items
    assert len(leased) == 2 and {x.event.id for x in leased} <= set(sent.ids)
    assert client.extend("workers", [leased[0].lease_id], lease_ms=10_000).lost == []
    settled = client.ack("workers", [x.lease_id for x in leased])
    assert sorted(settled.ok) == sorted(x.lease_id for x in leased)
    (last,) = client.lease("workers", max=10).items
    assert client.nack("workers", [last.lease_id], delay_ms=60_000, error="later").ok
    assert client.lease("workers", wait_ms=0).items == []  # the nacked one waits its delay
