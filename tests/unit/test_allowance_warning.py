"""The first thing a server logs when a switch lifts the SSRF guard."""

from __future__ import annotations

import logging

import pytest

from tidings.config import Settings
from tidings.server import warn_about_allowances


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (Settings(), []),
        (
            Settings(allow_loopback_targets=True),
            [
                "loopback targets allowed (TIDINGS_ALLOW_LOOPBACK_TARGETS=1): webhooks may "
                "reach 127.0.0.0/8 and ::1 on this host; for development only"
            ],
        ),
        (
            Settings(allow_private_targets=True),
            [
                "private targets allowed (TIDINGS_ALLOW_PRIVATE_TARGETS=1): webhooks may reach "
                "loopback, private and link-local addresses; for development and tests only"
            ],
        ),
        (
            Settings(allow_private_targets=True, allow_loopback_targets=True),
            [
                "private targets allowed (TIDINGS_ALLOW_PRIVATE_TARGETS=1): webhooks may reach "
                "loopback, private and link-local addresses; for development and tests only"
            ],
        ),
    ],
)
def test_the_switches_are_announced(
    caplog: pytest.LogCaptureFixture, settings: Settings, expected: list[str]
) -> None:
    with caplog.at_level(logging.INFO, logger="tidings.server"):
        warn_about_allowances(settings)
    assert [r.getMessage() for r in caplog.records] == expected
    assert all(r.levelno == logging.WARNING for r in caplog.records)
