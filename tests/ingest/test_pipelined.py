"""A file's chunks go to the store one behind the other's commit, not its answer
(`Store.append_events_pipelined`): on SQLite the writer stores the next chunk while the
last one's WAL is synced, and the chunks are still answered, counted and stored in order.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable

import pytest

from tidings.ingest import files
from tidings.ingest.files import FileReport, parse_text, store_chunks
from tidings.store.base import StoreUnavailable
from tidings.store.sqlite import SQLiteStore

ROWS = 9


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store


def stored_lines(store: SQLiteStore) -> list[int]:
    with sqlite3.connect(store.path) as conn:
        rows = conn.execute("SELECT payload ->> '$.line' FROM events ORDER BY seq").fetchall()
    return [int(r[0]) for r in rows]


async def wait_for(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5.0
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_chunks_commit_while_the_first_sync_is_held(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "BATCH", 3)  # 9 rows: 3 chunks
    release = threading.Event()
    syncs: list[int] = []

    def held_sync(fd: int) -> None:
        syncs.append(fd)
        release.wait(5)

    store._sync_wal = held_sync
    text = "".join(f"user-{i},message {i}\n" for i in range(1, ROWS + 1))
    report = FileReport(file="f.csv")
    answered: list[int] = []

    async def after(wake: bool) -> None:
        answered.append(report.rows)

    async def noop(exc: Exception) -> None:
        raise AssertionError(exc)

    run = asyncio.ensure_future(
        store_chunks(
            store, iter(list(parse_text(text))), "file.row", "ident", "f.csv", report,
            max_payload_bytes=1 << 20, wait_for_store=noop, default_message="", after=after,
        )
    )  # fmt: skip
    # The second chunk is committed while the first still waits for its sync; the third
    # waits for the first one's answer (two chunks in the store at most). Nothing is
    # answered or counted yet.
    await wait_for(lambda: len(stored_lines(store)) == 6)
    await asyncio.sleep(0.2)
    assert stored_lines(store) == list(range(1, 7))
    assert answered == [] and report.rows == 0
    release.set()
    await asyncio.wait_for(run, 5)
    # One `after` per chunk, in order; a chunk is counted once answered (one sync may
    # answer two chunks, so the first `after` can see both).
    assert len(answered) == 3 and answered == sorted(answered) and answered[-1] == ROWS
    assert (report.rows, report.events) == (ROWS, ROWS)


async def test_a_chunk_whose_commit_fails_holds_the_next_back(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first chunk's append fails (the store is unavailable) and is retried: the
    second chunk is not appended before the first is committed, so the rows stay in file
    order."""
    monkeypatch.setattr(files, "BATCH", 3)
    real = store.append_events_pipelined
    calls: list[int] = []

    async def flaky(events: object, committed: Callable[[], None]) -> object:
        calls.append(len(stored_lines(store)))
        if len(calls) == 1:
            raise StoreUnavailable("disk unplugged")
        return await real(events, committed)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "append_events_pipelined", flaky)
    waited: list[str] = []

    async def wait_for_store(exc: Exception) -> None:
        waited.append(str(exc))

    async def after(wake: bool) -> None:
        pass

    text = "".join(f"user-{i},message {i}\n" for i in range(1, 7))
    report = FileReport(file="f.csv")
    await store_chunks(
        store, iter(list(parse_text(text))), "file.row", "ident", "f.csv", report,
        max_payload_bytes=1 << 20, wait_for_store=wait_for_store, default_message="",
        after=after,
    )  # fmt: skip
    assert waited == ["disk unplugged"]
    assert calls == [0, 0, 3]  # the retry first; the second chunk after its commit
    assert stored_lines(store) == [1, 2, 3, 4, 5, 6]
    assert report.rows == 6
