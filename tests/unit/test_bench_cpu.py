"""bench/cpu.py's PostgreSQL accounting: the CPU of the run's database's backends counts,
that of a backend of another database does not, and a backend that starts and ends
inside the window still counts (real server; the bench's figures rest on this)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import POSTGRES_URL

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import cpu

from ingest import pg_call

# ~0.3-0.8 s of a backend's CPU (1,500,000 rows once came to 0.08 s on a quiet machine,
# the bound below)
BURN = "SELECT count(*) FROM generate_series(1, 4000000)"


def burn(url: str) -> None:
    """A new connection (a backend that starts and ends now) busy for a while."""

    async def go(conn: Any) -> None:
        await conn.fetchval(BURN)

    pg_call(url, None, go)


@pytest.fixture
def database(require_service: Callable[[str, int], None]) -> Iterator[str]:
    require_service("PostgreSQL", 5432)
    name = cpu.create_database(POSTGRES_URL)
    try:
        yield name
    finally:
        cpu.drop_database(POSTGRES_URL, name)


def test_only_the_runs_backends_count(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "SAMPLE_EVERY_S", 0.03)  # sees a short-lived backend at once
    sampler = cpu.PgSampler(POSTGRES_URL, database)
    sampler.start()
    try:
        sampler.begin()
        burn(POSTGRES_URL)  # the server's `postgres` database: someone else's work
        other = sampler.end()
        sampler.begin()
        burn(cpu.database_url(POSTGRES_URL, database))
        mine = sampler.end()
    finally:
        sampler.stop()
    assert other["pg"] < 0.05, other
    assert mine["pg"] > 0.08, mine
    assert any(k.startswith("pg:client backend") for k in sampler.by_type)
