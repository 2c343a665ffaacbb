"""Rows of ingested CSV files (pure: tidings.ingest.rows)."""

from __future__ import annotations

import csv
import io
import json

from hypothesis import given
from hypothesis import strategies as st

from tidings.ingest.rows import (
    MAX_LINE,
    MAX_USER_ID,
    BadRow,
    Header,
    Row,
    clean_name,
    file_identity,
    is_header,
    parse_lines,
    read_row,
    row_event,
    row_key,
    split_line,
)


def test_rows() -> None:
    assert read_row(["u1", "hello"], 3) == Row(3, "u1", "hello")
    assert read_row([" u1 ", " hello "], 3) == Row(3, "u1", "hello")
    assert read_row(["u1"], 4) == Row(4, "u1", "")  # bare ids: a common export
    assert read_row(["u1", "a", " b"], 5) == Row(5, "u1", "a, b")  # unquoted commas
    assert read_row([], 6) is None
    assert read_row(["", " "], 7) is None
    assert read_row(["", "orphan message"], 8) == BadRow(8, "the user id (first field) is empty")
    bad = read_row(["x" * (MAX_USER_ID + 1), "m"], 9)
    assert isinstance(bad, BadRow) and bad.line == 9


def test_headers() -> None:
    for header in (["user_id", "message"], ["userId", "alertMessage"], ["User-Id"], ["user"]):
        assert is_header(header)
    assert not is_header(["u1", "message"])
    assert not is_header(["user", "hello there"])  # a user called "user"
    assert not is_header([])


def test_split_line() -> None:
    assert split_line('u1,"a, quoted ""message"""') == ["u1", 'a, quoted "message"']
    assert split_line("") == []
    assert isinstance(split_line("u1,caf\udce9"), str)  # a byte that was not UTF-8
    assert isinstance(split_line("u1,a\x00b"), str)
    assert isinstance(split_line("u1," + "x" * MAX_LINE), str)
    assert split_line("u1," + "x" * 200_000) == ["u1", "x" * 200_000]  # over csv's default limit
    assert isinstance(split_line('u1,"He said "hi"'), str)  # a broken quote: strict


def csv_fields(text: str) -> list[str] | str:
    """What the csv module alone makes of a line (split_line's reference)."""
    try:
        return next(csv.reader([text], strict=True), [])
    except csv.Error as exc:
        return f"the line is not valid CSV: {exc}"


@given(st.text(alphabet=st.sampled_from(list(",\"ab \t\r\n;'\\é")), max_size=30))
def test_split_line_reads_every_line_as_the_csv_module(text: str) -> None:
    """The split on commas of a line without quotes, and csv for the others, read every
    line exactly as the csv module does (the characters csv treats apart among them)."""
    assert split_line(text) == csv_fields(text)


@given(st.text(st.characters(exclude_characters='"\r\n\x00', exclude_categories=["Cs"])))
def test_split_line_of_any_text_without_quotes(text: str) -> None:
    assert split_line(text) == csv_fields(text)


def test_split_line_of_undecodable_bytes() -> None:
    # Any byte that was not UTF-8 spoils its line, and no other surrogate does.
    for ch in ("\udc80", "\udce9", "\udcff"):
        assert split_line(f"u1,caf{ch}") == "the line is not UTF-8"
    assert split_line("u1,\udc7f") == ["u1", "\udc7f"]


def test_parse_lines_one_row_per_line() -> None:
    text = "\r\n".join(
        [
            "",
            "userId,alertMessage",
            'u1,"Order placed',  # a stray quote spoils its own line only
            "u2,hello",
            "",
            "user,a user called user",
            ",nobody",
            "u3,caf\udce9",
            "u4",
        ]
    )
    assert list(parse_lines(text.splitlines(keepends=True))) == [
        Header(2),
        BadRow(3, "the line is not valid CSV: unexpected end of data"),
        Row(4, "u2", "hello"),
        Row(6, "user", "a user called user"),
        BadRow(7, "the user id (first field) is empty"),
        BadRow(8, "the line is not UTF-8"),
        Row(9, "u4", ""),
    ]
    # Only the first line with content may be a header.
    assert list(parse_lines(["u1,x\n", "user_id,message\n"])) == [
        Row(1, "u1", "x"),
        Row(2, "user_id", "message"),
    ]


def test_clean_name() -> None:
    assert clean_name("alerts.csv") == "alerts.csv"
    assert clean_name("caf\udce9.csv") == "caf?.csv"


def test_the_key_names_the_content_and_the_line() -> None:
    a, b = file_identity(bytes(range(32))), file_identity(bytes(32))
    assert a != b and len(a) == 32
    assert row_key(a, 7) != row_key(a, 8) != row_key(b, 7)


def test_row_event() -> None:
    e = row_event(Row(12, "u-9", 'say "hi"'), "file.row", "abc", "alerts.csv")
    assert (e.topic, e.key, e.recipients, e.idempotency_key) == (
        "file.row",
        "u-9",
        ["u-9"],
        "file:abc:12",
    )
    assert json.loads(bytes(e.payload)) == {
        "user_id": "u-9",
        "message": 'say "hi"',
        "userId": "u-9",
        "alertMessage": 'say "hi"',
        "file": "alerts.csv",
        "line": 12,
    }


_one_line = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=40,
)


@given(
    st.lists(
        st.tuples(_one_line.filter(lambda s: s.strip() != ""), _one_line),
        max_size=30,
    )
)
def test_what_csv_writes_reads_back(rows: list[tuple[str, str]]) -> None:
    """Any (user, message) of one line written by a CSV writer comes back, trimmed, one
    row per line, numbered as the file's lines (a header-like first row aside)."""
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    parsed = list(parse_lines(io.StringIO(out.getvalue(), newline="")))
    expected = [
        (n, u.strip(), m.strip())
        for n, (u, m) in enumerate(rows, 1)
        if len(u.strip()) <= MAX_USER_ID and not (n == 1 and is_header([u, m]))
    ]
    assert [(r.line, r.user_id, r.message) for r in parsed if isinstance(r, Row)] == expected


# ------------------------------------------------------------------------- JSON lines
def test_json_lines() -> None:
    from tidings.ingest.rows import parse_json_lines, read_json_line

    assert read_json_line('{"user_id": "u1", "message": "hi"}', 1) == Row(1, "u1", "hi")
    assert read_json_line('{"userId": "125", "alertMessage": "x"}', 2) == Row(2, "125", "x")
    assert read_json_line('{"userId": 125}', 3) == Row(3, "125", "")
    assert read_json_line('{"user_id": "u", "message": null}', 4) == Row(4, "u", "")
    assert read_json_line("   ", 5) is None
    for text, why in [
        ("[1, 2]", "not a JSON object"),
        ("{oops", "not JSON"),
        ('{"message": "m"}', "no user_id"),
        ('{"user_id": true}', "no user_id"),
        ('{"user_id": " "}', "no user_id"),
        ('{"user_id": "u", "message": 5}', "not a string"),
        ('{"user_id": "u\\u0000", "message": "m"}', "NUL"),
        ('{"user_id": "u", "message": "\\ud800"}', "not JSON"),
        ('{"user_id": "u", "message": "caf\udce9"}', "not UTF-8"),
    ]:
        bad = read_json_line(text, 9)
        assert isinstance(bad, BadRow) and why in bad.reason, (text, bad)
        assert bad.raw == text
    rows = list(parse_json_lines(['{"user_id": "a"}\n', "\n", '{"user_id": "b"}\r\n', "x"]))
    assert [(r.line, type(r).__name__) for r in rows] == [(1, "Row"), (3, "Row"), (4, "BadRow")]


def test_formats_by_suffix() -> None:
    from tidings.ingest.rows import format_of

    assert format_of("a.csv") == "csv"
    assert format_of("a.JSONL") == "jsonl"
    assert format_of("a.ndjson") == "jsonl"
    assert format_of("a.txt") == "csv"
    assert format_of("a.txt", None) is None
    assert format_of("noext", None) is None


def test_bad_rows_keep_their_raw_text_for_the_rejects_file() -> None:
    from tidings.ingest.rows import rejects_csv

    bad = [
        b for b in parse_lines(['u1,"broken\n', ",orphan\n", "ok,fine\n"]) if isinstance(b, BadRow)
    ]
    assert [(b.line, b.raw) for b in bad] == [(1, 'u1,"broken'), (2, ",orphan")]
    back = list(csv.reader(io.StringIO(rejects_csv(bad), newline="")))
    assert back[0] == ["line", "reason", "raw"]
    assert [(int(r[0]), r[2]) for r in back[1:]] == [(1, 'u1,"broken'), (2, ",orphan")]


@given(
    st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40), max_size=8)
)
def test_rejects_csv_round_trips_any_raw_text(raws: list[str]) -> None:
    from tidings.ingest.rows import rejects_csv

    bad = [BadRow(i + 1, 'why, "quoted"', raw) for i, raw in enumerate(raws)]
    back = list(csv.reader(io.StringIO(rejects_csv(bad), newline="")))
    assert [r[2] for r in back[1:]] == raws


def test_a_message_for_bare_ids_and_both_spellings_in_the_payload() -> None:
    event = row_event(Row(1, "125", ""), "file.row", "abc", "f.csv", "Server down")
    assert json.loads(bytes(event.payload)) == {
        "user_id": "125",
        "message": "Server down",
        "userId": "125",
        "alertMessage": "Server down",
        "file": "f.csv",
        "line": 1,
    }
    own = row_event(Row(1, "125", "own"), "file.row", "abc", "f.csv", "Server down")
    assert json.loads(bytes(own.payload))["alertMessage"] == "own"
    digest = b"\x01" * 32
    assert file_identity(digest) != file_identity(digest, "Server down")
    assert file_identity(digest, "a") != file_identity(digest, "b")
    assert file_identity(digest, "") == file_identity(digest)
