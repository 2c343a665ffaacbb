"""Rows of ingested CSV files (pure: tidings.ingest.rows)."""

from __future__ import annotations

import csv
import io
import json

from hypothesis import given
from hypothesis import strategies as st

from tidings.ingest.rows import (
    MAX_USER_ID,
    BadRow,
    Row,
    file_identity,
    is_header,
    read_row,
    row_event,
    row_key,
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
    assert not is_header([])


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
        "file": "alerts.csv",
        "line": 12,
    }


@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != ""),
            st.text(max_size=40),
        ),
        max_size=30,
    )
)
def test_what_csv_writes_reads_back(rows: list[tuple[str, str]]) -> None:
    """Any (user, message) written by a CSV writer comes back, trimmed, one row each."""
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    parsed = [
        read_row(fields, n) for n, fields in enumerate(csv.reader(io.StringIO(out.getvalue())), 1)
    ]
    got = [(r.user_id, r.message) for r in parsed if isinstance(r, Row)]
    assert got == [(u.strip(), m.strip()) for u, m in rows if len(u.strip()) <= MAX_USER_ID]
