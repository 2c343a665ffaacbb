"""Fixtures the end-to-end tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.receiver import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real webhook receiver on 127.0.0.1 (tests/e2e/receiver.py), closed afterwards."""
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.close()
