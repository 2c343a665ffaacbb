"""SQLite group commit: concurrent ingest jobs that share one transaction.

The writer thread runs consecutive ingest jobs of a group as one append; these tests hold
the writer busy so that a known set of jobs lands in one group, then check that each
caller gets its own answer, that idempotency holds across the merged jobs, and that a job
that fails takes none of its neighbours with it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest

from tidings.model import EventIn, WebhookSpec
from tidings.store.base import Conflict, StoreUnavailable
from tidings.store.sqlite import SQLiteStore


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store


def ev(key: str, payload: bytes = b"{}", idempotency_key: str | None = None) -> EventIn:
    return EventIn(
        topic="order.created",
        key=key,
        payload=msgspec.Raw(payload),
        idempotency_key=idempotency_key,
    )


def broken(key: str) -> EventIn:
    """An event that makes its ingest job raise inside the writer (a payload that is not
    bytes: the API never builds one); it stands for any job that fails in a merged group."""
    return EventIn(topic="order.created", key=key, payload="not bytes")  # type: ignore[arg-type]


async def in_one_group(
    store: SQLiteStore, calls: list[list[EventIn] | Callable[[], Awaitable[Any]]]
) -> list[Any]:
    """Run the appends (and other calls) while the writer is held, so they queue up in
    this order and form one group."""
    release = threading.Event()
    held = asyncio.ensure_future(store._write(lambda conn: release.wait(5)))
    await asyncio.sleep(0.05)  # the writer is now inside the holding job
    tasks = [
        asyncio.ensure_future(store.append_events(c) if isinstance(c, list) else c()) for c in calls
    ]
    await asyncio.sleep(0.05)  # every append is queued behind it
    release.set()
    await held
    return list(await asyncio.gather(*tasks, return_exceptions=True))


async def test_merged_jobs_get_their_own_answers(store: SQLiteStore) -> None:
    await store.create_destination(
        WebhookSpec(url="https://example.com/h", topics=["order.*"]),
        "whsec_" + "a" * 32,
    )
    calls = [[ev(f"k{i}", f'{{"n": {i}}}'.encode())] for i in range(20)]
    calls.append([ev("b1", b"[1]"), ev("b2", b"[2]"), ev("k0", b"[3]")])  # a batch
    results = await in_one_group(store, calls)
    ids: list[str] = []
    for events, result in zip(calls, results, strict=True):
        assert isinstance(result, list)
        assert len(result) == len(events)
        for event, appended in zip(events, result, strict=True):
            assert not appended.duplicate
            assert appended.deliveries == 1
            stored = await store.get_event(appended.id)
            assert stored is not None
            assert stored.key == event.key
            assert bytes(stored.payload) == bytes(event.payload)
            ids.append(appended.id)
    assert ids == sorted(ids)  # ids (and seqs) follow the queue order
    # One delivery per event, the two of lane k0 included.
    page = await store.list_deliveries(limit=100)
    assert len(page.items) == 23


async def test_idempotency_across_merged_jobs(store: SQLiteStore) -> None:
    calls = [[ev("a", b"1", idempotency_key="same")], [ev("b", b"2", idempotency_key="same")]]
    calls += [[ev("c", b"3", idempotency_key="other")]]
    first, second, third = await in_one_group(store, calls)
    assert isinstance(first, list) and isinstance(second, list) and isinstance(third, list)
    assert not first[0].duplicate
    assert second[0].duplicate
    assert second[0].id == first[0].id
    assert not third[0].duplicate
    page = await store.list_events(None, 100, None)
    assert sorted(e.id for e in page.items) == sorted([first[0].id, third[0].id])


async def test_a_failing_job_fails_alone(store: SQLiteStore) -> None:
    calls = [[ev("ok1")], [broken("bad")], [ev("ok2")], [ev("ok3"), ev("ok4")]]
    ok1, bad, ok2, ok34 = await in_one_group(store, calls)
    assert isinstance(bad, TypeError)
    for result in (ok1, ok2, ok34):
        assert isinstance(result, list)
        for appended in result:
            assert await store.get_event(appended.id) is not None
    page = await store.list_events(None, 100, None)
    assert sorted(e.key for e in page.items) == ["ok1", "ok2", "ok3", "ok4"]


async def test_a_row_the_database_refuses_fails_its_request_alone(store: SQLiteStore) -> None:
    """The merged append is one INSERT for the whole group: a row SQLite refuses (NOT NULL)
    fails that statement, and the group runs again job by job, so only its request fails."""
    nameless = EventIn(topic="order.created", key=None)  # type: ignore[arg-type]
    surrogate = EventIn(topic="order.created", key="k\ud800")
    calls = [[ev("ok1")], [ev("bad1"), nameless], [ev("ok2")], [surrogate], [ev("ok3")]]
    ok1, bad1, ok2, bad2, ok3 = await in_one_group(store, calls)
    assert isinstance(bad1, sqlite3.IntegrityError)
    assert isinstance(bad2, UnicodeEncodeError)
    for result in (ok1, ok2, ok3):
        assert isinstance(result, list)
        assert await store.get_event(result[0].id) is not None
    page = await store.list_events(None, 100, None)
    assert sorted(e.key for e in page.items) == ["ok1", "ok2", "ok3"]


async def test_a_failing_job_fails_alone_beside_other_jobs(store: SQLiteStore) -> None:
    """Ingest jobs merged on either side of another job: the failing one fails alone, the
    other job and the destination it creates count for the ingest jobs after it."""
    spec = WebhookSpec(url="https://example.com/h", topics=["order.*"])
    calls: list[list[EventIn] | Callable[[], Awaitable[Any]]] = [
        [ev("ok1")],
        [broken("bad")],
        lambda: store.create_destination(spec, "whsec_" + "a" * 32),
        [ev("ok2")],
        [ev("ok3")],
    ]
    ok1, bad, created, ok2, ok3 = await in_one_group(store, calls)
    assert isinstance(bad, TypeError)
    assert created.id.startswith("dst_")
    assert ok1[0].deliveries == 0  # before the destination existed
    assert ok2[0].deliveries == 1
    assert ok3[0].deliveries == 1
    page = await store.list_events(None, 100, None)
    assert sorted(e.key for e in page.items) == ["ok1", "ok2", "ok3"]


async def test_a_conflict_fails_alone_and_the_rest_of_its_group_commits(
    store: SQLiteStore,
) -> None:
    """A job that fails as designed (a name already taken) in a group of others: they
    commit, each answered as if it had been alone, and the failed one wrote nothing."""
    spec = WebhookSpec(url="https://example.com/h", topics=["order.*"], name="taken")
    await store.create_destination(spec, "whsec_" + "a" * 32)
    other = msgspec.structs.replace(spec, name="free")
    calls: list[list[EventIn] | Callable[[], Awaitable[Any]]] = [
        [ev("a")],
        lambda: store.create_destination(spec, "whsec_" + "b" * 32),  # Conflict
        lambda: store.create_destination(other, "whsec_" + "c" * 32),
        [ev("b")],
    ]
    a, conflict, created, b = await in_one_group(store, calls)
    assert isinstance(conflict, Conflict)
    assert created.spec.name == "free"
    assert a[0].deliveries == 1  # "taken" only
    assert b[0].deliveries == 2  # "taken" and "free"
    names = sorted(d.spec.name or "" for d in (await store.list_destinations(100, None)).items)
    assert names == ["free", "taken"]


# ------------------------------------------------------------------ syncing the WAL


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(500):  # 5 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_answers_wait_for_the_sync_of_the_wal_in_commit_order(store: SQLiteStore) -> None:
    """A durable write is answered only once the WAL is synced after its commit; a write
    that needs no sync, committed behind it, is not answered before it either; with
    nothing waiting, such a write is answered with no sync at all."""
    syncs: list[int] = []
    release = threading.Event()

    def held_sync(fd: int) -> None:
        syncs.append(fd)
        release.wait(5)

    store._sync_wal = held_sync
    append = asyncio.ensure_future(store.append_events([ev("a")]))
    await wait_for(lambda: len(syncs) == 1)
    bookkeeping = asyncio.ensure_future(store._write(lambda conn: "done", durable=False))
    await asyncio.sleep(0.1)
    assert not append.done()
    assert not bookkeeping.done()  # committed, but behind a write that waits for the disk
    release.set()
    appended = await append
    assert await bookkeeping == "done"
    assert await store.get_event(appended[0].id) is not None
    await wait_for(lambda: store._answers_waiting == 0)
    assert await store._write(lambda conn: "alone", durable=False) == "alone"
    assert len(syncs) == 1  # the second durable-free write needed no sync


async def test_a_failed_sync_fails_the_durable_callers(store: SQLiteStore) -> None:
    def broken_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    store._sync_wal = broken_sync
    with pytest.raises(StoreUnavailable, match="could not sync"):
        await store.append_events([ev("a")])
    assert await store._write(lambda conn: "fine", durable=False) == "fine"
    store._sync_wal = os.fdatasync
    appended = await store.append_events([ev("b")])
    assert appended[0].id.startswith("evt_")
