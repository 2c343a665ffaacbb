"""PostgreSQL schema migrations: a schema written by an older version opens, upgrades in
place, and keeps its data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import msgspec
import pytest

from tests.conftest import POSTGRES_URL, drop_schema, postgres_schema, postgres_url
from tidings.model import EventIn
from tidings.store.postgres import PostgresStore
from tidings.store.sql import migrations


@pytest.fixture
async def schema(tmp_path: Path, require_service: Callable[[str, int], None]) -> AsyncIterator[str]:
    require_service("PostgreSQL", 5432)
    name = postgres_schema(tmp_path)
    try:
        yield name
    finally:
        await drop_schema(name)


async def create_at_version(conn: asyncpg.Connection[asyncpg.Record], version: int) -> None:
    for number, _name, script in migrations("postgres"):
        if number > version:
            break
        await conn.execute(script)
    await conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', $1)", str(version))


def test_migrations_are_numbered_one_after_another() -> None:
    numbers = [number for number, _, _ in migrations("postgres")]
    assert numbers == list(range(1, len(numbers) + 1))


async def test_a_version_7_inbox_upgrades_and_goes_on_from_its_offsets(schema: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path = "{schema}"')
        await create_at_version(conn, 7)
        # Two users' messages as v7 wrote them (statement by statement), one acked.
        await conn.execute(
            "INSERT INTO events (seq, id, topic, key, payload, recipients, received_at)"
            " VALUES (1, 'evt_1', 'n.s', '', '{}', '[\"a\",\"b\"]', 1),"
            " (2, 'evt_2', 'n.s', '', '{}', '[\"a\"]', 2)"
        )
        await conn.execute("SELECT setval(pg_get_serial_sequence('events', 'seq'), 2)")
        await conn.execute(
            "INSERT INTO inbox_users (user_id, top, acked) VALUES ('a', 2, 1), ('b', 1, 0)"
        )
        await conn.execute(
            "INSERT INTO inbox (event_seq, user_id, pos, acked_at)"
            " VALUES (1, 'a', 1, 5), (1, 'b', 1, NULL), (2, 'a', 2, NULL)"
        )
    finally:
        await conn.close()

    store = PostgresStore(postgres_url(schema))
    await store.open()
    try:
        page = await store.read_inbox("a", 0, 10)
        assert ([m.id for m in page.messages], page.top, page.acked) == (
            ["evt_1", "evt_2"], 2, 1,
        )  # fmt: skip
        (third,) = await store.append_events(
            [EventIn(topic="n.s", payload=msgspec.Raw(b"{}"), recipients=["b", "a", "c"])]
        )
        assert third.inbox == (("b", 2), ("a", 3), ("c", 1))
        assert [m.offset for m in (await store.read_inbox("a", 0, 10)).messages] == [1, 2, 3]
        event = await store.get_event(third.id)
        assert event is not None and event.recipients == ["b", "a", "c"]
        assert await store.get_meta("schema_version") == str(len(migrations("postgres")))
    finally:
        await store.close()

    conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
    try:
        # v7's signature stays for processes of the version before, during an upgrade.
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE p.proname = 'tidings_append' AND n.nspname = $1",
            schema,
        ) == 2  # fmt: skip
    finally:
        await conn.close()
