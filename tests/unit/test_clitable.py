"""tidings.clitable: cells, truncation by display width, tables with a header row,
records, masked secrets."""

from __future__ import annotations

import unicodedata
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tidings.clitable import (
    ELLIPSIS,
    Column,
    cell,
    clean,
    mask_secret,
    masked,
    plural,
    record,
    table,
    truncate,
    when,
    width,
)


def test_cells_of_each_kind() -> None:
    assert cell(None) == "-"
    assert cell("") == "-"
    assert cell(True) == "yes" and cell(False) == "no"
    assert cell(3) == "3" and cell(2.5) == "2.5"
    assert cell(["order.*", "user.created"]) == "order.*,user.created"
    assert cell([]) == "-"
    assert cell({"total": 12, "items": [1, 2]}) == '{"total":12,"items":[1,2]}'
    assert cell([1, {"a": None}]) == '[1,{"a":null}]'
    assert cell({"name": "Zoë"}) == '{"name":"Zoë"}'  # not \u00eb


def test_control_characters_cannot_reach_the_terminal() -> None:
    # A receiver's error text or response body: ESC sequences, bidi overrides, newlines.
    assert clean("line one\nline two\r\n\tend") == "line one line two   end"
    assert clean("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert clean("abc\u202edef") == "abc\\u202edef"
    assert clean("nul\x00 bell\x07 del\x7f") == "nul\\x00 bell\\x07 del\\x7f"
    assert clean("keep  two spaces") == "keep  two spaces"
    # Emoji sequences keep their joiners.
    assert clean("👩\u200d💻") == "👩\u200d💻"


@given(st.text())
def test_clean_leaves_one_printable_line(text: str) -> None:
    out = clean(text)
    assert "\n" not in out and "\r" not in out and "\x1b" not in out
    # No control, format (but the joiners) or surrogate character, no line separator.
    unsafe = {"Cc", "Cf", "Cs", "Zl", "Zp"}
    assert all(unicodedata.category(ch) not in unsafe or ch in "\u200c\u200d" for ch in out)


def test_times_to_the_second() -> None:
    assert when("2026-11-26T10:11:12.123456Z") == "2026-11-26T10:11:12Z"
    assert when("2026-11-26T10:11:12Z") == "2026-11-26T10:11:12Z"
    assert when("2026-11-26T10:11:12.5+02:00") == "2026-11-26T10:11:12+02:00"
    assert when("not a time") == "not a time"


def test_display_width_counts_wide_characters_twice() -> None:
    assert width("abc") == 3
    assert width("日本") == 4
    assert width("e\u0301") == 1  # e + a combining accent


def test_truncate() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("exactly10!", 10) == "exactly10!"
    assert truncate("a bit too long", 10) == "a bit too" + ELLIPSIS
    assert truncate("anything", None) == "anything"
    assert truncate("日本語のテキスト", 7) == "日本語" + ELLIPSIS  # 6 columns + 1
    assert truncate("abc", 1) == ELLIPSIS
    assert truncate("abc", 0) == ""


@given(st.text(), st.integers(min_value=1, max_value=80))
def test_truncate_never_exceeds_its_width_and_keeps_a_prefix(text: str, most: int) -> None:
    out = truncate(text, most)
    assert width(out) <= most
    if out == text:
        assert width(text) <= most
    else:
        assert out.endswith(ELLIPSIS)
        assert text.startswith(out[: -len(ELLIPSIS)])


COLUMNS = [
    Column("ID", "id"),
    Column("NAME", "name", most=8),
    Column("ATTEMPTS", "n", align="right"),
    Column("AT", "at", time=True),
]


def test_a_table_has_a_header_row_and_aligned_columns() -> None:
    rows: list[dict[str, Any]] = [
        {"id": "dst_1", "name": "billing", "n": 3, "at": "2026-11-26T10:11:12.5Z"},
        {"id": "dst_22", "name": "a name far too long", "n": 12, "at": None},
    ]
    assert table(rows, COLUMNS).splitlines() == [
        "ID      NAME      ATTEMPTS  AT",
        "dst_1   billing          3  2026-11-26T10:11:12Z",
        "dst_22  a name …        12  -",
    ]


def test_an_empty_table_is_its_header_row() -> None:
    assert table([], COLUMNS) == "ID  NAME  ATTEMPTS  AT"


def test_a_column_may_compute_its_value() -> None:
    indented = [Column("EVENT", lambda r: "  " * r["depth"] + r["id"]), Column("TOPIC", "t")]
    rows = [{"id": "e1", "depth": 0, "t": "a"}, {"id": "e2", "depth": 1, "t": "b"}]
    assert table(rows, indented).splitlines() == ["EVENT  TOPIC", "e1     a", "  e2   b"]


def test_tables_align_wide_characters_by_display_width() -> None:
    rows = [{"id": "日本", "name": "x"}, {"id": "abcd", "name": "y"}]
    lines = table(rows, [Column("ID", "id"), Column("NAME", "name")]).splitlines()
    assert lines == ["ID    NAME", "日本  x", "abcd  y"]


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "id": st.text(max_size=20),
                "name": st.none() | st.text(max_size=30),
                "n": st.integers(),
            }
        ),
        max_size=8,
    )
)
def test_every_table_line_is_one_clean_line_without_trailing_spaces(
    rows: list[dict[str, Any]],
) -> None:
    lines = table(rows, COLUMNS[:3]).split("\n")
    assert len(lines) == 1 + len(rows)
    assert lines[0].startswith("ID")
    for line in lines:
        assert line == line.rstrip()
    # NAME is cut at 8 columns: no line is wider than the widest ID, NAME and ATTEMPTS.
    id_width = max([2, *(width(clean(r["id"]) or "-") for r in rows)])
    n_width = max([8, *(len(str(r["n"])) for r in rows)])
    assert all(width(line) <= id_width + 2 + 8 + 2 + n_width for line in lines)


def test_a_record_is_labelled_lines_with_whole_values() -> None:
    long = "x" * 300
    text = record([("id", "dst_1"), ("topics", ["a", "b"]), ("url", long), ("filter", None)])
    assert text.splitlines() == [
        "id      dst_1",
        "topics  a,b",
        f"url     {long}",
        "filter  -",
    ]
    assert record([]) == ""


def test_secrets_are_masked_but_their_kind_shows() -> None:
    assert mask_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == "whsec_" + ELLIPSIS
    assert mask_secret("something-else") == ELLIPSIS
    assert mask_secret("") == ""


def test_masked_hides_every_secret_field_at_any_depth() -> None:
    value = {
        "items": [{"id": "d1", "secret": "whsec_abc"}, {"id": "d2", "secret": "whsec_def"}],
        "next": None,
        "secret": "whsec_top",
        "note": "whsec_in_text_is_not_a_field",
    }
    assert masked(value) == {
        "items": [{"id": "d1", "secret": "whsec_…"}, {"id": "d2", "secret": "whsec_…"}],
        "next": None,
        "secret": "whsec_…",
        "note": "whsec_in_text_is_not_a_field",
    }
    assert value["secret"] == "whsec_top"  # a copy: the original is untouched


def test_plural() -> None:
    assert plural(1, "delivery", "deliveries") == "1 delivery"
    assert plural(0, "delivery", "deliveries") == "0 deliveries"
    assert plural(2, "event") == "2 events"


def test_durations_and_rates() -> None:
    from tidings.clitable import duration, rate_and_eta

    assert [duration(s) for s in (0, 4.4, 59.6, 65, 3599, 7800)] == [
        "0 s",
        "4 s",
        "1 min 0 s",
        "1 min 5 s",
        "59 min 59 s",
        "2 h 10 min",
    ]
    assert rate_and_eta(0, 100, 1.0, "rows") == "- rows/s"
    assert rate_and_eta(10, 100, 0.0, "rows") == "- rows/s"
    assert rate_and_eta(20_000, 100_000, 2.0, "rows") == "10,000 rows/s, ETA 8 s"
    assert rate_and_eta(100, 100, 2.0, "rows") == "50 rows/s"
    assert rate_and_eta(100, None, 4.0, "rows") == "25 rows/s"
