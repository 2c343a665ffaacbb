"""tidings.commands.args (times as typed: ISO-8601 or a duration ago) and the CLI's
progress lines (tidings.commands.common.Progress) with a fake clock and stream."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tidings.commands.args import duration_s, iso, time_arg
from tidings.commands.common import Progress

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def test_durations() -> None:
    assert duration_s("90s") == 90
    assert duration_s("30m") == 1800
    assert duration_s("1h30m") == 5400
    assert duration_s("7d") == 7 * 86400
    assert duration_s("2w") == 14 * 86400
    for not_one in ("", "h", "1", "1x", "-1h", "1.5h", "1 h", "2026-11-26"):
        assert duration_s(not_one) is None, not_one


def test_time_args() -> None:
    assert time_arg("2h", NOW) == "2026-11-26T10:00:00.000000Z"
    assert time_arg(" 1d ", NOW) == "2026-11-25T12:00:00.000000Z"
    assert time_arg("now", NOW) == "2026-11-26T12:00:00.000000Z"
    # ISO-8601 goes as typed: the API validates it and names the field when it is wrong.
    assert time_arg("2026-11-01T00:00:00Z", NOW) == "2026-11-01T00:00:00Z"
    assert time_arg("yesterday", NOW) == "yesterday"


@given(st.integers(min_value=0, max_value=10_000), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_a_duration_ago_is_that_long_before_now(n: int, unit: str) -> None:
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit] * n
    moment = datetime.strptime(time_arg(f"{n}{unit}", NOW), "%Y-%m-%dT%H:%M:%S.%fZ")
    assert moment.replace(tzinfo=UTC) == NOW - timedelta(seconds=seconds)


def test_iso_is_utc_with_a_z() -> None:
    local = datetime(2026, 1, 2, 5, 4, 5, 123, tzinfo=UTC).astimezone()
    assert iso(local) == "2026-01-02T05:04:05.000123Z"


class _Pipe(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_off_a_terminal_is_a_line_a_second_and_the_last() -> None:
    stream, clock = _Pipe(tty=False), _Clock()
    progress = Progress("retrying", total=2000, stream=stream, clock=clock)
    progress.advance(500)  # the first is shown at once
    clock.t = 0.5
    progress.advance(500)  # too soon
    clock.t = 1.2
    progress.advance(500)
    clock.t = 1.3
    progress.advance(500)
    progress.finish()
    assert stream.getvalue().splitlines() == [
        "retrying: 500/2000",
        "retrying: 1500/2000",
        "retrying: 2000/2000",
    ]


def test_progress_without_updates_still_says_where_it_ended() -> None:
    stream = _Pipe(tty=False)
    progress = Progress("finding dead deliveries", stream=stream, clock=_Clock())
    progress.finish()
    assert stream.getvalue() == "finding dead deliveries: 0\n"


def test_progress_on_a_terminal_redraws_one_line() -> None:
    stream = _Pipe(tty=True)
    progress = Progress("reading rows.csv, lines read", stream=stream, clock=_Clock())
    progress.advance(10)
    progress.advance(5)
    progress.finish()
    assert stream.getvalue() == (
        "\rreading rows.csv, lines read: 10\rreading rows.csv, lines read: 15\n"
    )
