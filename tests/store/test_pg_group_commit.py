"""PostgreSQL's ingest group commit (issue 18): concurrent ingest calls of one store share
one round trip, a call at fault fails alone, and two stores (two API processes) writing
the same lanes and idempotency keys never deadlock, keep one head per lane and FIFO."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from tests.conftest import POSTGRES_URL, drop_schema, postgres_schema, postgres_url
from tests.store.test_contract import all_deliveries, all_events, ev, spec
from tests.store.test_lanes import completion
from tidings.model import Appended, ClaimAsk, EventIn
from tidings.store.base import StoreError
from tidings.store.postgres import PostgresStore, Q, int_array, text_array
from tidings.timeutil import US, now_us


@pytest.fixture
async def stores(
    tmp_path: Path, require_service: Callable[[str, int], None]
) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one schema: two API processes."""
    require_service("PostgreSQL", 5432)
    url = postgres_url(postgres_schema(tmp_path))
    a, b = PostgresStore(url), PostgresStore(url)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()
        await drop_schema(postgres_schema(tmp_path))


def count_groups(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the groups `store` writes from now on (one round trip each)."""
    groups: list[int] = []
    real = store._append_group

    async def counted(events: Any, drawn: Any) -> list[Appended]:
        groups.append(len(events))
        return await real(events, drawn)

    monkeypatch.setattr(store, "_append_group", counted)
    return groups


async def test_concurrent_calls_share_a_round_trip(
    stores: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = stores
    await store.create_destination(spec(["order.*"]), "whsec_a")
    groups = count_groups(store, monkeypatch)
    results = await asyncio.gather(*(store.append_events([ev(key=f"k{i}")]) for i in range(50)))
    assert all(len(r) == 1 and not r[0].duplicate for r in results)
    assert sum(groups) == 50
    assert len(groups) <= 4  # the first alone, the others waited for it together
    assert len(await all_events(store)) == 50
    assert len(await all_deliveries(store)) == 50


async def test_offsets_are_answered_only_while_wanted(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """Store.want_offsets: while nothing registered wants them (no socket to push to),
    an append answers no (user, offset) pairs, and writes the messages all the same;
    once wanted, only the users a push can reach have theirs, as tidings_append
    numbered them."""
    store, _ = stores
    wanted = [False]
    reached = {"a", "b"}
    store.want_offsets(lambda: wanted[0], lambda: reached.__contains__)
    batch = [
        EventIn(topic="n.s", payload=msgspec.Raw(b"{}"), recipients=users)
        for users in (["a", "b"], ["b", "b"], ["c"])
    ]
    quiet = await store.append_events(batch)
    assert [a.inbox for a in quiet] == [(), (), ()]
    wanted[0] = True
    (heard,) = await store.append_events(
        [EventIn(topic="n.s", payload=msgspec.Raw(b"{}"), recipients=["b", "a"])]
    )
    assert heard.inbox == (("b", 3), ("a", 2))
    some = await store.append_events(
        [
            EventIn(topic="n.s", payload=msgspec.Raw(b"{}"), recipients=users)
            for users in (["c", "a"], ["c"], ["a", "c", "d"])
        ]
    )
    assert [a.inbox for a in some] == [(("a", 3),), (), (("a", 4),)]
    reached.clear()  # nobody reachable, though a hub is open
    (none,) = await store.append_events(
        [EventIn(topic="n.s", payload=msgspec.Raw(b"{}"), recipients=["a", "d"])]
    )
    assert none.inbox == ()
    for user, offsets in (("a", [1, 2, 3, 4, 5]), ("b", [1, 2, 3]), ("c", [1, 2, 3, 4])):
        page = await store.read_inbox(user, 0, 10)
        assert [m.offset for m in page.messages] == offsets


async def test_a_call_the_database_refuses_fails_alone(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    store, _ = stores
    await store.create_destination(spec(["order.*"]), "whsec_a")
    # A NUL cannot be stored in a TEXT column (the API refuses it before the store).
    calls = [store.append_events([ev(key="bad\x00" if i == 7 else f"k{i}")]) for i in range(20)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [7]
    assert sorted(e.key for e in await all_events(store)) == sorted(
        f"k{i}" for i in range(20) if i != 7
    )


async def test_two_processes_on_shared_lanes_keep_one_head_and_fifo(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = stores
    d = await a.create_destination(spec(["order.*"]), "whsec_a")
    rng = random.Random(18)
    keys = [f"lane-{i}" for i in range(6)]

    async def burst(store: PostgresStore, tag: str) -> None:
        # Every group locks many of the same lanes, in whatever order its events came.
        for round_ in range(5):
            calls: list[list[EventIn]] = []
            for i in range(12):
                picked = rng.sample(keys, 3)
                calls.append([ev(key=k, payload=b'{"t": "%s-%d-%d"}' % (tag.encode(), round_, i))
                              for k in picked])  # fmt: skip
            await asyncio.gather(*(store.append_events(c) for c in calls))

    await asyncio.wait_for(asyncio.gather(burst(a, "a"), burst(b, "b")), timeout=60)
    events = await all_events(a)
    assert len(events) == 2 * 5 * 12 * 3
    seq_of = {e.id: e.seq for e in events}
    lane_of = {e.id: e.key for e in events}
    delivered: dict[str, list[str]] = {k: [] for k in keys}
    for _ in range(len(events) + 5):
        batch = await a.claim(
            "w1", [ClaimAsk(destination_id=d.id, limit=100, lease_us=60 * US)], now_us()
        )
        if not batch.claims:
            break
        lanes = [c.lane_key for c in batch.claims]
        assert len(lanes) == len(set(lanes))  # one head per lane
        for c in batch.claims:
            delivered[c.lane_key].append(c.event_id)
        await a.complete([completion(c, release=True) for c in batch.claims], pause_after=0)
    for key, ids in delivered.items():
        assert len(ids) == sum(1 for lane in lane_of.values() if lane == key)
        assert [seq_of[i] for i in ids] == sorted(seq_of[i] for i in ids)  # FIFO by seq


async def test_two_processes_racing_on_idempotency_keys_store_each_once(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = stores
    await a.create_destination(spec(["order.*"]), "whsec_a")
    for round_ in range(10):
        keys = [f"r{round_}-{i}" for i in range(5)]
        got = await asyncio.gather(
            a.append_events([ev(key="x", idempotency_key=k) for k in keys]),
            b.append_events([ev(key="y", idempotency_key=k) for k in reversed(keys)]),
            *(b.append_events([ev(idempotency_key=k)]) for k in keys),
        )
        ids: dict[str, set[str]] = {k: set() for k in keys}
        fresh: dict[str, int] = dict.fromkeys(keys, 0)
        for call, answers in zip(
            [keys, list(reversed(keys)), *([k] for k in keys)], got, strict=True
        ):
            for k, answer in zip(call, answers, strict=True):
                ids[k].add(answer.id)
                fresh[k] += not answer.duplicate
        assert all(len(v) == 1 for v in ids.values())
        assert all(n == 1 for n in fresh.values())
    assert len(await all_events(a)) == 50
    assert len(await all_deliveries(a)) == 50


async def test_ingest_wakes_other_processes_after_its_commit(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """The wake-up is sent after the group's commit (migration 0007), so a listener that
    claims on it finds the work."""
    a, b = stores
    d = await a.create_destination(
        msgspec.structs.replace(spec(["order.*"]), ordering="none"), "whsec_a"
    )
    woken = asyncio.Event()
    await b.listen(woken.set, lambda: None)
    await asyncio.wait_for(woken.wait(), timeout=10)  # listening (it wakes once on start)
    for round_ in range(3):
        woken.clear()
        await asyncio.gather(*(a.append_events([ev(key=f"w{round_}-{i}")]) for i in range(20)))
        await asyncio.wait_for(woken.wait(), timeout=10)
        batch = await b.claim(
            "w", [ClaimAsk(destination_id=d.id, limit=100, lease_us=60 * US)], now_us()
        )
        assert len(batch.claims) == 20


async def test_deleting_a_destination_while_another_process_ingests_leaves_no_orphans(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """Deliveries have no foreign key (migration 0007): every ingest takes each routed
    destination's lock shared, so a deletion either waits for it and deletes what it
    wrote, or it routes again."""
    a, b = stores
    for round_ in range(8):
        ordering = "fifo" if round_ % 2 else "none"
        doomed = await a.create_destination(
            msgspec.structs.replace(spec(["race.*"]), ordering=ordering), "whsec_a"
        )
        calls = [a.append_events([ev("race.x", key=f"k{i % 3}")]) for i in range(30)]
        calls.insert(10, b.delete_destination(doomed.id))
        results = await asyncio.wait_for(asyncio.gather(*calls), timeout=30)
        assert results[10] is True
        assert await all_deliveries(a, destination_id=doomed.id) == []
        assert await all_deliveries(b) == []
    assert len(await all_events(a)) == 8 * 30


async def test_appends_with_recipients_share_groups_and_keep_offsets_contiguous(
    stores: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events with recipients go through the group commit too (migration 0009): two
    processes, each with many concurrent requests naming the same users (and their own),
    some repeating an idempotency key; offsets stay 1, 2, 3... per user, in commit order,
    and a duplicate gets no message."""
    a, b = stores
    await a.create_destination(spec(["order.*"]), "whsec_a")
    groups = count_groups(a, monkeypatch)
    shared = ["s1", "s2", "s3"]

    async def request(store: PostgresStore, tag: str, i: int) -> list[Appended]:
        batch = [
            EventIn(topic="order.created", key=f"{tag}{i}", payload=msgspec.Raw(b"{}"),
                    recipients=[*shared[: 1 + (i + j) % 3], f"own-{tag}{i}", "s1"],
                    idempotency_key=f"key-{i % 7}-{j}" if j == 0 else None)
            for j in range(1 + i % 4)
        ]  # fmt: skip
        return await store.append_events(batch)

    calls = [request(s, tag, i) for s, tag in ((a, "a"), (b, "b")) for i in range(30)]
    answers = [x for r in await asyncio.wait_for(asyncio.gather(*calls), 60) for x in r]
    assert len(groups) < 30  # a's 30 requests shared groups
    handed: dict[str, list[int]] = {}
    for answer in answers:
        if answer.duplicate:
            assert answer.inbox == ()
        for user, pos in answer.inbox:
            handed.setdefault(user, []).append(pos)
    assert sum(not x.duplicate for x in answers) == len(await all_events(a))
    for user, got in handed.items():
        assert sorted(got) == list(range(1, len(got) + 1)), user
        page = await a.read_inbox(user, 0, 10_000)
        assert [m.offset for m in page.messages] == sorted(got)
        assert page.top == len(got)
    assert len(handed["s1"]) == sum(1 for x in answers if not x.duplicate)


@pytest.mark.parametrize(
    "values", [[], [0], [1, -2, 3], [2**63 - 1, -(2**63)], list(range(-500, 500, 7))]
)
async def test_integer_arrays_go_as_literals_the_server_reads_back(
    values: list[int], require_service: Callable[[str, int], None]
) -> None:
    """int_array: the literal a `$n::text::bigint[]` parameter is sent as."""
    require_service("PostgreSQL", 5432)
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        assert await conn.fetchval("SELECT $1::text::bigint[]", int_array(values)) == values
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["a"],
        ["", "NULL", "null", " spaced ", "a,b", "{x}", '"quoted"', "back\\slash", '\\"'],
        ["ünï", "日本", "tab\there", "line\nbreak", "x" * 255],
    ],
)
async def test_text_arrays_go_as_literals_the_server_reads_back(
    values: list[str], require_service: Callable[[str, int], None]
) -> None:
    """text_array: user ids of any characters come back as they went."""
    require_service("PostgreSQL", 5432)
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        assert await conn.fetchval("SELECT $1::text::text[]", text_array(values)) == values
    finally:
        await conn.close()


async def test_a_database_whose_text_order_differs_is_refused(
    require_service: Callable[[str, int], None],
) -> None:
    """WIN1252 sorts bytes unlike Python sorts str: ingest could pair users with other
    users' tops, so the store refuses to open on it."""
    require_service("PostgreSQL", 5432)
    name = "tidings_win1252_" + secrets.token_hex(4)
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(
            f"CREATE DATABASE {name} ENCODING 'WIN1252' TEMPLATE template0"
            " LC_COLLATE 'C' LC_CTYPE 'C'"
        )
        store = PostgresStore(POSTGRES_URL.rsplit("/", 1)[0] + "/" + name)
        with pytest.raises(StoreError, match="WIN1252"):
            await store.open()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.close()


async def test_retention_finds_inbox_messages_by_generation(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """The sweeps that look inbox messages up by event read the index by generation
    (migration 0010), not the whole table, on a table the planner has statistics of."""
    store, _ = stores
    for _ in range(3):
        await store.append_events(
            [
                EventIn(topic="n.s", payload=msgspec.Raw(b"{}"), recipients=[f"u{i % 97}", "all"])
                for i in range(300)
            ]
        )
    assert store._pool is not None
    async with store._pool.acquire() as conn:
        await conn.execute("ANALYZE")
        window = "\n".join(
            r[0] for r in await conn.fetch("EXPLAIN " + Q["sweep_window"], 0, 10**12, 1000)
        )
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")  # as sweep_inbox does
            aged = "\n".join(
                r[0]
                for r in await conn.fetch("EXPLAIN " + Q["sweep_inbox_aged"], now_us(), 450, 1000)
            )
    for plan in (window, aged):
        assert "inbox_by_event" in plan, plan
        assert "Seq Scan on inbox " not in plan, plan


async def test_a_retention_pass_looks_its_cutoff_up_once(
    stores: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last seq before a cutoff is a binary search of ~25 queries: a pass asks it
    once for all its chunks, and again only for a new cutoff."""
    import tidings.store.postgres as pg

    store, _ = stores
    await store.append_events([ev(key=f"k{i}") for i in range(30)])
    searched: list[int] = []
    search = pg._last_seq_before

    async def counted(conn: Any, cutoff: int) -> int | None:
        searched.append(cutoff)
        return await search(conn, cutoff)

    monkeypatch.setattr(pg, "_last_seq_before", counted)
    cutoff = now_us() + 1
    after, deleted = 0, 0
    for _ in range(10):  # chunks of 4 events: 8 chunks
        swept = await store.sweep(cutoff, 4, after)
        deleted += swept.deleted
        if swept.upto is None:
            break
        after = swept.upto
    assert deleted == 30 and searched == [cutoff]
    await store.append_events([ev(key="later")])
    later = now_us() + 1
    assert (await store.sweep(later, 4, 0)).deleted == 1
    assert searched == [cutoff, later]
