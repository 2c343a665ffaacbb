"""SQLite schema migrations: a database written by an older schema opens, upgrades in
place, and keeps its data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec

from tidings.model import EventIn, WebhookSpec
from tidings.store.sql import migrations
from tidings.store.sqlite import SQLiteStore


def create_at_version(path: Path, version: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for number, _name, script in migrations("sqlite"):
            if number > version:
                break
            conn.executescript(script)
            conn.execute(f"PRAGMA user_version = {number}")
    finally:
        conn.close()


def indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
        return {r[0] for r in rows}
    finally:
        conn.close()


def test_migrations_are_numbered_one_after_another() -> None:
    numbers = [number for number, _, _ in migrations("sqlite")]
    assert numbers == list(range(1, len(numbers) + 1))


async def test_a_version_2_database_upgrades_and_keeps_its_deliveries(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    create_at_version(path, 2)
    assert "deliveries_by_state" in indexes(path)

    store = SQLiteStore(str(path))
    await store.open()
    try:
        spec = WebhookSpec(url="https://example.com/h", topics=["a.*"])
        dest = await store.create_destination(spec, "whsec_" + "a" * 32)
        appended = await store.append_events(
            [EventIn(topic="a.b", key=f"k{i % 2}", payload=msgspec.Raw(b"{}")) for i in range(5)]
        )
        assert [a.deliveries for a in appended] == [1] * 5
        (backlog,) = await store.backlog()
        assert backlog.destination_id == dest.id
        assert backlog.pending == 5
    finally:
        await store.close()

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations("sqlite"))
    finally:
        conn.close()
    assert "deliveries_by_state" not in indexes(path)
    assert "deliveries_by_destination" in indexes(path)


async def test_a_version_7_inbox_upgrades_into_generation_0(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    create_at_version(path, 7)
    conn = sqlite3.connect(path, isolation_level=None)
    try:  # two users' messages as v7 wrote them, one of them acked
        conn.execute(
            "INSERT INTO events (seq, id, topic, key, payload, received_at) VALUES"
            " (1, 'evt_1', 'n.s', '', X'7B7D', 1), (2, 'evt_2', 'n.s', '', X'7B7D', 2)"
        )
        conn.execute(
            "INSERT INTO inbox_users (user_id, top, acked) VALUES ('a', 2, 1), ('b', 1, 0)"
        )
        conn.execute(
            "INSERT INTO inbox (event_seq, user_id, pos, acked_at) VALUES"
            " (1, 'a', 1, 5), (1, 'b', 1, NULL), (2, 'a', 2, NULL)"
        )
    finally:
        conn.close()
    store = SQLiteStore(str(path))
    await store.open()
    try:
        page = await store.read_inbox("a", 0, 10)
        assert [(m.offset, m.id) for m in page.messages] == [(1, "evt_1"), (2, "evt_2")]
        assert (page.top, page.acked) == (2, 1)
        (appended,) = await store.append_events(
            [EventIn(topic="n.s", payload=msgspec.Raw(b"{}"), recipients=["a", "b"])]
        )
        assert appended.inbox == (("a", 3), ("b", 2))
        assert [m.offset for m in (await store.read_inbox("b", 0, 10)).messages] == [1, 2]
        assert await store.sweep_inbox(6, 0, 100) == 1  # the acked one, kept from v7
    finally:
        await store.close()


def index_sql(path: Path, name: str) -> str:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()
        return str(row[0])
    finally:
        conn.close()


async def test_a_version_8_key_index_upgrades_into_generations(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    create_at_version(path, 8)
    assert ">>" not in index_sql(path, "events_by_key")
    conn = sqlite3.connect(path, isolation_level=None)
    try:  # events of two keys as v8 wrote them, across three generations of 8,192 seqs
        conn.executemany(
            "INSERT INTO events (seq, id, topic, key, payload, received_at)"
            " VALUES (?, ?, 'a.b', ?, X'7B7D', ?)",
            [(s, f"evt_{s:06d}", f"k{s % 2}", s) for s in (1, 2, 8191, 8192, 17000, 17001)],
        )
    finally:
        conn.close()
    store = SQLiteStore(str(path))
    await store.open()
    try:
        first = await store.list_events(None, 2, None, key="k0")
        assert [e.id for e in first.items] == ["evt_017000", "evt_008192"]
        rest = await store.list_events(None, 2, first.next, key="k0")
        assert [e.id for e in rest.items] == ["evt_000002"]
        assert rest.next is None
        ones = await store.list_events("a.*", 10, None, key="k1")
        assert [e.id for e in ones.items] == ["evt_017001", "evt_008191", "evt_000001"]
        (appended,) = await store.append_events(
            [EventIn(topic="a.b", key="k1", payload=msgspec.Raw(b"{}"))]
        )
        newest = await store.list_events(None, 1, None, key="k1")
        assert [e.id for e in newest.items] == [appended.id]
        assert (await store.list_events(None, 5, None, key="absent")).items == []
    finally:
        await store.close()
    assert "seq >> 13" in index_sql(path, "events_by_key")
