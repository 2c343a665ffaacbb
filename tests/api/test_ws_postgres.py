"""The gateway on PostgreSQL, one node: the store works out offsets only for the users a
socket here waits for (Store.want_offsets), and those users get their messages live, in
order, with no read of the store to fill a gap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.api.test_ws import next_frame, token_for
from tests.conftest import API_KEY, Api, drop_schema, postgres_schema, postgres_url, served_api
from tidings.config import Settings
from tidings.model import InboxPage
from tidings.store.postgres import PostgresStore


@pytest.fixture
async def pg_api(tmp_path: Path, require_service: Callable[[str, int], None]) -> AsyncIterator[Api]:
    require_service("PostgreSQL", 5432)
    schema = postgres_schema(tmp_path)
    settings = Settings(
        database_url=postgres_url(schema), port=0, api_key=API_KEY, upload_dir=str(tmp_path)
    )
    try:
        async with served_api(PostgresStore(postgres_url(schema)), settings) as api:
            yield api
    finally:
        await drop_schema(schema)


async def test_a_socket_gets_its_messages_live_from_a_batch_to_others_too(
    pg_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = pg_api.store
    reads: list[tuple[str, int]] = []
    read = store.read_inbox

    async def counted(user: str, after: int, limit: int) -> InboxPage:
        reads.append((user, after))
        return await read(user, after, limit)

    monkeypatch.setattr(store, "read_inbox", counted)
    token = await token_for(pg_api, "u1")
    url = f"{pg_api.url}/v1/ws?user_id=u1&token={token}&after=0"
    async with pg_api.session.ws_connect(url) as ws:
        assert (await next_frame(ws)) == {"type": "welcome", "top": 0}
        caught_up = len(reads)
        named = (["u2", "u1"], ["u3"], ["u1", "u4", "u1"], ["u1"])
        body = {
            "events": [
                {"topic": "t.x", "payload": {"i": i}, "recipients": users}
                for i, users in enumerate(named)
            ]
        }
        status, answer = await pg_api.call("POST", "/v1/events/batch", body)
        assert status == 202, answer
        frames = [await next_frame(ws) for _ in range(3)]
        assert [(f["offset"], f["payload"]["i"]) for f in frames] == [(1, 0), (2, 2), (3, 3)]
        assert reads[caught_up:] == []  # all three came live: no gap to fill
    for user, top in (("u2", 1), ("u3", 1), ("u4", 1), ("u1", 3)):
        page = await store.read_inbox(user, 0, 10)
        assert [m.offset for m in page.messages] == list(range(1, top + 1))
