"""The log formatters: JSON with extra fields, readable text, both redacted."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from tidings.observability import JsonFormatter, TextFormatter, configure_logging

SECRET = "whsec_c2VjcmV0c2VjcmV0c2VjcmV0"
KEY = "tdk_abcdefghijklmnop"


def _record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"boom with {SECRET}")
        except RuntimeError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("tidings.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_has_the_message_and_every_extra_as_a_field() -> None:
    record = _record(
        "delivery dead: %s",
        "dlv_1",
        event="delivery.dead",
        destination_id="dst_1",
        attempt=5,
        status_code=None,
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["msg"] == "delivery dead: dlv_1"
    assert entry["level"] == "warning" and entry["logger"] == "tidings.test"
    assert entry["ts"].endswith("Z")
    assert {k: entry[k] for k in ("event", "destination_id", "attempt", "status_code")} == {
        "event": "delivery.dead",
        "destination_id": "dst_1",
        "attempt": 5,
        "status_code": None,
    }


def test_json_skips_what_other_formatters_add_to_a_record() -> None:
    record = _record("m")
    TextFormatter().format(record)  # sets record.message and record.asctime
    assert set(json.loads(JsonFormatter().format(record))) == {"ts", "level", "logger", "msg"}


def test_json_redacts_message_fields_and_traceback() -> None:
    record = _record(
        "calling %s with %s",
        f"https://u:pw@h/p?token={KEY}",
        f"Authorization: Bearer {KEY}",
        exc=True,
        secret=SECRET,
        headers={"Authorization": "Bearer hunter2hunter2"},
    )
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    for leaked in (SECRET[6:], KEY[4:], "hunter2", "u:pw"):
        assert leaked not in line, line
    assert entry["msg"] == "calling https://h/p?*** with Authorization: ***"
    assert entry["secret"] == "whsec_***"
    assert "RuntimeError: boom with whsec_***" in entry["exc"]


def test_text_is_readable_and_redacted() -> None:
    line = TextFormatter().format(_record("paused %s: key %s", "billing", KEY, exc=True))
    assert " WARNING tidings.test: paused billing: key tdk_***" in line
    assert SECRET[6:] not in line and KEY[4:] not in line
    assert "Traceback" in line


@pytest.fixture
def root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


@pytest.mark.parametrize(("fmt", "formatter"), [("json", JsonFormatter), ("text", TextFormatter)])
def test_configure_logging_picks_the_format(
    fmt: str, formatter: type[logging.Formatter], root_handlers: None
) -> None:
    configure_logging("warning", fmt)
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, formatter)
    assert logging.getLogger().level == logging.WARNING


def test_auto_is_json_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch, root_handlers: None
) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    configure_logging("info", "auto")
    logging.getLogger("tidings.test").info("hello %s", KEY, extra={"n": 1})
    entry = json.loads(sys.stderr.getvalue())
    assert entry["msg"] == "hello tdk_***" and entry["n"] == 1
