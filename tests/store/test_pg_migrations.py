"""PostgreSQL schema migrations: a schema written by the version before opens, upgrades in
place, and keeps its data and its lanes working (migration 0008: tidings_complete's lane
probe, tidings_claim, and the index-only generic plans of both; 0009: inbox messages
written by tidings_append)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import msgspec
import pytest

from tests.conftest import POSTGRES_URL, drop_schema, postgres_schema, postgres_url
from tests.store.test_contract import spec
from tests.store.test_lanes import completion
from tidings.model import ClaimAsk, EventIn
from tidings.store import postgres
from tidings.store.postgres import PostgresStore
from tidings.store.sql import migrations
from tidings.timeutil import US, now_us

LEASE = 60 * US


def test_migrations_are_numbered_one_after_another() -> None:
    numbers = [number for number, _, _ in migrations("postgres")]
    assert numbers == list(range(1, len(numbers) + 1))


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


async def inbox_at_version(schema: str, version: int) -> None:
    """A schema at `version` holding two events (received at t=1 and 2) and three inbox
    messages: users a (offsets 1 and 2, 1 acked at t=5) and b (offset 1)."""
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path = "{schema}"')
        await create_at_version(conn, version)
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


async def function_settings(schema: str) -> dict[str, list[str] | None]:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        rows = await conn.fetch(
            "SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname = $1",
            schema,
        )
        return {r["proname"]: r["proconfig"] for r in rows}
    finally:
        await conn.close()


async def test_a_version_7_schema_upgrades_and_its_lanes_move_on(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres_url(schema)
    # Version 7, as the release before wrote it: a fifo lane of three deliveries and a
    # second lane of one.
    monkeypatch.setattr(
        postgres, "migrations", lambda dialect: [m for m in migrations(dialect) if m[0] <= 7]
    )
    old = PostgresStore(url)
    await old.open()
    try:
        dest = await old.create_destination(spec(), "whsec_" + "a" * 32)
    finally:
        await old.close()
    # The events through v7's own tidings_append (this code calls 0009's signature).
    keys = ["k1", "k1", "k2", "k1"]
    ids = [f"evt_v7_{n}" for n in range(len(keys))]
    conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
    try:
        rev = await conn.fetchval("SELECT value FROM meta WHERE key = 'destinations_rev'")
        await conn.fetch(
            "SELECT * FROM tidings_append($1::bigint[], $2::bigint[], $3, $4, $5, $6, $7, $8,"
            " $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            [], [], rev, "nobody", now_us(), ids,
            ["order.created"] * 4, keys, [b"{}"] * 4, [None] * 4, [None] * 4, [None] * 4,
            [f"dlv_v7_{n}" for n in range(4)], [1, 2, 3, 4], [dest.id] * 4, keys, [1] * 4,
        )  # fmt: skip
    finally:
        await conn.close()
    assert (await function_settings(schema))["tidings_complete"] is None
    monkeypatch.undo()

    store = PostgresStore(url)
    await store.open()
    try:
        assert await store.get_meta("schema_version") == str(len(migrations("postgres")))
        settings = await function_settings(schema)
        # The signatures of v7 and v9 keep custom plans; the newest, generic ones, no JIT
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            appends = await conn.fetch(
                "SELECT p.pronargs, p.proconfig FROM pg_proc p JOIN pg_namespace n"
                " ON n.oid = p.pronamespace WHERE n.nspname = $1"
                " AND p.proname = 'tidings_append' ORDER BY p.pronargs, p.proconfig NULLS FIRST",
                schema,
            )
        finally:
            await conn.close()
        assert [(r["pronargs"], r["proconfig"]) for r in appends] == [
            (17, None), (23, None), (23, ["jit=off", "plan_cache_mode=force_generic_plan"]),
        ]  # fmt: skip
        for name in ("tidings_complete", "tidings_claim"):
            assert settings[name] == [
                "plan_cache_mode=force_generic_plan",
                "enable_seqscan=off",
                "enable_hashjoin=off",
                "enable_mergejoin=off",
            ], name
        # The lanes written under version 7 hand out their heads, and as each completes,
        # its lane's next delivery becomes the head, in the lane's order.
        before = await store.claim(
            "w1", [ClaimAsk(destination_id=dest.id, limit=10, lease_us=LEASE)], now_us()
        )
        assert sorted(c.event_id for c in before.claims) == sorted([ids[0], ids[2]])
        written = await store.complete([completion(c) for c in before.claims], 100)
        assert written.applied == 2
        order: list[str] = []
        for _ in range(4):
            got = await store.claim(
                "w1", [ClaimAsk(destination_id=dest.id, limit=10, lease_us=LEASE)], now_us()
            )
            assert len(got.claims) <= 1, "one head per lane"
            if not got.claims:
                break
            order.extend(c.event_id for c in got.claims)
            await store.complete([completion(c) for c in got.claims], 100)
        assert order == [ids[1], ids[3]]
    finally:
        await store.close()


async def test_a_version_7_inbox_upgrades_and_goes_on_from_its_offsets(schema: str) -> None:
    # Two users' messages as v7 wrote them (statement by statement), one acked.
    await inbox_at_version(schema, 7)

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
        # v7's and v9's signatures stay for processes of the versions before, during an
        # upgrade.
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE p.proname = 'tidings_append' AND n.nspname = $1",
            schema,
        ) == 3  # fmt: skip
    finally:
        await conn.close()


async def test_a_version_9_inbox_upgrades_to_keys_by_user(schema: str) -> None:
    """Migration 0010: the inbox keyed by (user_id, pos), events found by a BRIN index.
    Messages v9 wrote read, ack, trim and sweep as before, offsets go on, and an event
    stays while a message names it."""
    # Three messages as v9 wrote them: user a's first acked long ago.
    await inbox_at_version(schema, 9)

    store = PostgresStore(postgres_url(schema))
    await store.open()
    try:
        assert await store.get_meta("schema_version") == str(len(migrations("postgres")))
        page = await store.read_inbox("a", 0, 10)
        assert ([m.id for m in page.messages], page.top, page.acked) == (
            ["evt_1", "evt_2"], 2, 1,
        )  # fmt: skip
        new = await store.append_events(
            [
                EventIn(topic="n.s", payload=msgspec.Raw(b"{}"), recipients=["b", "a"]),
                EventIn(topic="n.s", payload=msgspec.Raw(b"{}"), recipients=["a", "c"]),
            ]
        )
        assert [e.inbox for e in new] == [(("b", 2), ("a", 3)), (("a", 4), ("c", 1))]
        assert [m.offset for m in (await store.read_inbox("a", 0, 10)).messages] == [1, 2, 3, 4]
        # Events 1 and 2 are old and delivered (they have no deliveries): only messages
        # hold them.
        assert (await store.sweep(now_us(), 100)).deleted == 0
        # a's acked message goes; then every message of events received before t=3.
        assert await store.sweep_inbox(6, 0, 100) == 1
        assert await store.sweep_inbox(0, 3, 100) == 2
        assert [m.offset for m in (await store.read_inbox("a", 0, 10)).messages] == [3, 4]
        assert [m.offset for m in (await store.read_inbox("b", 0, 10)).messages] == [2]
        # Now nothing names events 1 and 2; the two new ones stay.
        assert (await store.sweep(now_us(), 100)).deleted == 2
        assert await store.get_event("evt_1") is None
        assert all([await store.get_event(e.id) for e in new])
    finally:
        await store.close()


async def test_a_version_9_process_appends_to_a_version_10_inbox(schema: str) -> None:
    """During a rolling upgrade a process of the version before calls v9's tidings_append
    on the v10 schema: its messages take the next offsets, and the new code's after."""
    store = PostgresStore(postgres_url(schema))
    await store.open()
    try:
        (first,) = await store.append_events(
            [EventIn(topic="n.s", payload=msgspec.Raw(b"{}"), recipients=["a", "b"])]
        )
        assert first.inbox == (("a", 1), ("b", 1))
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
        try:
            rev = await conn.fetchval("SELECT value FROM meta WHERE key = 'destinations_rev'")
            # v9's signature (0009): messages as event, user, later messages of the user
            row = await conn.fetchrow(
                "SELECT * FROM tidings_append($1::bigint[], $2::bigint[], $3::text, $4::bigint,"
                " $5::text[], $6::text[], $7::text[], $8::bytea[], $9::text[], $10::text[],"
                " $11::text[], $12::text[], $13::text[], $14::int[], $15::text[], $16::text[],"
                " $17::smallint[], $18::int[], $19::text[], $20::int[], $21::text[],"
                " $22::bigint[], $23::bigint)",
                [], [], rev, now_us(), ["evt_v9_1", "evt_v9_2"], ["n.s"] * 2, ["", ""],
                [b"{}"] * 2, [None] * 2, [None] * 2, [None] * 2,
                ['["b","a","c"]', '["a"]'], [], [], [], [], [],
                [1, 1, 1, 2], ["b", "a", "c", "a"], [0, 1, 0, 0], ["a", "b", "c"], [2, 1, 1], 0,
            )  # fmt: skip
            assert dict(zip(row["users"], row["tops"], strict=True)) == {"a": 3, "b": 2, "c": 1}
        finally:
            await conn.close()
        (last,) = await store.append_events(
            [EventIn(topic="n.s", payload=msgspec.Raw(b"{}"), recipients=["c", "a"])]
        )
        assert last.inbox == (("c", 2), ("a", 4))
        for user, ids in (
            ("a", [first.id, "evt_v9_1", "evt_v9_2", last.id]),
            ("b", [first.id, "evt_v9_1"]),
            ("c", ["evt_v9_1", last.id]),
        ):
            page = await store.read_inbox(user, 0, 10)
            assert [m.id for m in page.messages] == ids, user
            assert [m.offset for m in page.messages] == list(range(1, len(ids) + 1)), user
    finally:
        await store.close()
