"""Shared fixtures.

- `store`: an open store, once per backend (SQLite, and PostgreSQL in a schema of its
  own on the local server). Every test using it is a contract test both backends pass.
- `api`: the real aiohttp application served on 127.0.0.1 (random port) over a fresh
  SQLite store: `api.sdk` (the SDK's AsyncClient of it) and `api.call` (raw requests).
- `require_service(name, port)`: skip with a clear reason when a local server is down,
  or fail when TIDINGS_REQUIRE_SERVICES=1 (CI), so a missing server never passes silently.
- `redis_server`, `nats_server`: a bus server of the test's own (tests/bus_servers.py),
  skipped, or failed under TIDINGS_REQUIRE_SERVICES=1, when its binary is missing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
import asyncpg
import pytest

from tests.bus_servers import NatsServer, RedisServer
from tidings import AsyncClient
from tidings.api.app import create_app, start_site
from tidings.api.auth import digest
from tidings.config import Settings
from tidings.store.base import Store
from tidings.store.postgres import PostgresStore
from tidings.store.sqlite import SQLiteStore

API_KEY = "tdk_test_key"
S = TypeVar("S", RedisServer, NatsServer)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def require_service() -> Callable[[str, int], None]:
    def check(name: str, port: int) -> None:
        if _port_open(port):
            return
        message = f"{name} is not reachable on 127.0.0.1:{port}"
        if os.environ.get("TIDINGS_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " and TIDINGS_REQUIRE_SERVICES=1")
        pytest.skip(message + " (set TIDINGS_REQUIRE_SERVICES=1 to make this a failure)")

    return check


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `slow` tests first (a stable sort: the rest keep their order), so that with
    several processes (`make test`) the rest of the suite runs beside them, not after."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


POSTGRES_URL = os.environ.get(
    "TIDINGS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def postgres_schema(tmp_path: Path) -> str:
    """A schema of its own for each test (the same one for the same tmp_path)."""
    return "t_" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:16]


def postgres_url(schema: str) -> str:
    return f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def make_store(backend: str, tmp_path: Path) -> Store:
    if backend == "sqlite":
        return SQLiteStore(str(tmp_path / "tidings.db"))
    if backend == "postgresql":
        return PostgresStore(postgres_url(postgres_schema(tmp_path)))
    raise AssertionError(f"unknown backend {backend}")


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An open SQLite store alone: for what only the SQLite store does."""
    s = SQLiteStore(str(tmp_path / "tidings.db"))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    require_service: Callable[[str, int], None],
) -> AsyncIterator[Store]:
    if request.param == "postgresql":
        require_service("PostgreSQL", 5432)
    s = make_store(request.param, tmp_path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
        if request.param == "postgresql":
            await drop_schema(postgres_schema(tmp_path))


@dataclass
class Api:
    """The in-process API: `sdk`, the SDK's `AsyncClient` of it (the typed calls), and
    `call`, a raw request answering (status, body), for the tests of the HTTP protocol
    itself (status codes, malformed requests, exact bodies)."""

    url: str
    session: aiohttp.ClientSession
    store: Store
    settings: Settings

    @functools.cached_property
    def sdk(self) -> AsyncClient:
        return AsyncClient(self.url, api_key=API_KEY)

    async def close_sdk(self) -> None:
        if "sdk" in self.__dict__:
            await self.sdk.aclose()

    async def call(
        self, method: str, path: str, json: object = None, **kwargs: object
    ) -> tuple[int, object]:
        async with self.session.request(method, self.url + path, json=json, **kwargs) as r:  # type: ignore[arg-type]
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body


@pytest.fixture
async def api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    """The API on a fresh SQLite store; parametrize it indirectly with a dict of settings
    to change (`@pytest.mark.parametrize("api", [{...}], indirect=True)`)."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        port=0,
        api_key=API_KEY,
        max_payload_bytes=64 * 1024,
        max_request_bytes=1024 * 1024,
        upload_dir=str(tmp_path / "spool"),
        **getattr(request, "param", {}),
    )
    async with served_api(SQLiteStore(str(tmp_path / "api.db")), settings) as api:
        yield api


@contextlib.asynccontextmanager
async def served_api(store: Store, settings: Settings) -> AsyncIterator[Api]:
    """The API app on `store` (opened here, closed after) at a free port of 127.0.0.1."""
    await store.open()
    try:
        runner, port = await start_site(
            create_app(settings, store, [digest(API_KEY)]), "127.0.0.1", 0
        )
        session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"})
        api = Api(f"http://127.0.0.1:{port}", session, store, settings)
        try:
            yield api
        finally:
            await api.close_sdk()
            await session.close()
            await runner.cleanup()
    finally:
        await store.close()


def _running(server: S) -> Iterator[S]:
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own on a free port (append-only file in tmp_path)."""
    yield from _running(RedisServer(workdir=tmp_path / "redis"))


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server with JetStream of the test's own on a free port (store in tmp_path)."""
    yield from _running(NatsServer(workdir=tmp_path / "nats"))
