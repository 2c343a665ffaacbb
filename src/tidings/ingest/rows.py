"""What a line of an ingested file means: a CSV `user_id[,message]` line, or a JSON-lines
object with `user_id`/`userId` and `message`/`alertMessage`, into an event.

Owns the rules for one line (blank lines, a header, bare user ids, quoting, commas in an
unquoted message, a file-wide message for bare ids, bad rows with their raw text:
undecodable bytes, NUL, oversize, broken quotes, JSON that is not an object of those
fields) and the idempotency key of a row, which is what makes a file ingested once
however often it is read. One row is one line: a quoted message cannot span lines, so a
stray quote spoils its own line only, never the rows after it (in a multi-line CSV reader
it would swallow them into one message, to the wrong user). Pure: no files, no store.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

import msgspec

from tidings.model import EventIn

MAX_USER_ID = 255
MAX_MESSAGE = 64 * 1024
MAX_LINE = 4 * MAX_MESSAGE  # longer lines are bad rows, never parsed
USER_HEADERS = frozenset({"user_id", "userid", "user", "user id", "id"})
MESSAGE_HEADERS = frozenset({"message", "alertmessage", "alert_message", "msg", "text", "body"})
USER_FIELDS = ("user_id", "userId")  # of a JSON-lines object, in this order
MESSAGE_FIELDS = ("message", "alertMessage")
FileFormat = Literal["csv", "jsonl"]
SUFFIXES: dict[str, FileFormat] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

# A line is at most MAX_LINE long, so no field exceeds this (the module default, 128 KiB,
# would make a long message a csv.Error instead of a row).
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE + 1))


class Row(msgspec.Struct, frozen=True):
    """A good line. A Struct, not a dataclass: one is made per line, and a frozen
    dataclass takes ten times as long to make."""

    line: int  # 1-based line of the file
    user_id: str
    message: str


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str
    # The line as read (at most MAX_LINE + 1 characters), for rejects.csv.
    raw: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Header:
    line: int


# Bytes that were not UTF-8 arrive as lone surrogates (errors="surrogateescape").
_escaped_byte = re.compile("[\udc80-\udcff]")
# What makes csv read a line otherwise than a split on commas does (NUL is refused first).
_csv_special = re.compile('["\r\n]')


def _undecodable(text: str) -> bool:
    return _escaped_byte.search(text) is not None


def split_line(text: str) -> list[str] | str:
    """The fields of one line (its end of line already removed), or why it is bad."""
    if len(text) > MAX_LINE:
        return f"the line is longer than {MAX_LINE} characters"
    if _undecodable(text):
        return "the line is not UTF-8"
    if "\x00" in text:
        return "the line holds a NUL character"
    if _csv_special.search(text) is None:
        # Most lines: no quotes, so csv would split on the commas alone (in a third of
        # the time, the csv module's cost per line being mostly that of a new reader).
        return text.split(",") if text else []
    try:
        return next(csv.reader([text], strict=True), [])
    except csv.Error as exc:
        return f"the line is not valid CSV: {exc}"


def read_row(fields: list[str], line: int) -> Row | BadRow | None:
    """One line's fields: a Row, a BadRow saying why, or None for a blank line.

    `user_id` alone is a row with an empty message (files of bare ids are a common
    export); more than two fields are a message with unquoted commas, joined back.
    """
    if not fields or all(not f.strip() for f in fields):
        return None
    user_id = fields[0].strip()
    message = ",".join(fields[1:]).strip()
    if not user_id:
        return BadRow(line, "the user id (first field) is empty")
    if len(user_id) > MAX_USER_ID:
        return BadRow(line, f"the user id is longer than {MAX_USER_ID} characters")
    if len(message) > MAX_MESSAGE:
        return BadRow(line, f"the message is longer than {MAX_MESSAGE} characters")
    return Row(line, user_id, message)


def is_header(fields: list[str]) -> bool:
    """A first record that names the columns (`user_id,message`, `userId,alertMessage`):
    a user-id column name alone, or followed by a message column name."""

    def norm(f: str) -> str:
        return f.strip().lower().replace("-", "_")

    if not fields or norm(fields[0]) not in USER_HEADERS:
        return False
    return len(fields) == 1 or norm(fields[1]) in MESSAGE_HEADERS


class _Readable(Protocol):
    def readline(self, size: int = -1, /) -> str: ...


def bounded_lines(f: _Readable, limit: int = MAX_LINE) -> Iterator[str]:
    """The lines of a text stream (opened with newline=""), none longer in memory than
    `limit` + 1 characters: the rest of a longer line is read and dropped in bounded
    pieces (its first `limit` + 1 characters still make it a bad row, too long)."""
    while line := f.readline(limit + 1):
        if len(line) > limit and not line.endswith(("\n", "\r")):
            while (rest := f.readline(limit)) and not rest.endswith(("\n", "\r")):
                pass
        yield line


def parse_lines(lines: Iterable[str]) -> Iterator[Row | BadRow | Header]:
    """Every row of a file's text, given line by line (ends of line kept or not): rows,
    bad rows, and the header if the first non-blank line is one. Blank lines vanish."""
    seen_content = False
    for number, raw in enumerate(lines, 1):
        text = raw.rstrip("\r\n")
        fields = split_line(text)
        if isinstance(fields, str):
            seen_content = True
            yield BadRow(number, fields, text)
            continue
        if not seen_content and fields and any(f.strip() for f in fields):
            seen_content = True
            if is_header(fields):
                yield Header(number)
                continue
        row = read_row(fields, number)
        if isinstance(row, BadRow):
            yield BadRow(row.line, row.reason, text)
        elif row is not None:
            yield row


_json_line = msgspec.json.Decoder()


def read_json_line(text: str, line: int) -> Row | BadRow | None:
    """One JSON-lines line: an object with a user id (`user_id` or `userId`, a string or
    an integer) and an optional message (`message` or `alertMessage`, a string)."""
    if not text.strip():
        return None
    if len(text) > MAX_LINE:
        return BadRow(line, f"the line is longer than {MAX_LINE} characters", text)
    if _undecodable(text):
        return BadRow(line, "the line is not UTF-8", text)
    try:
        obj = _json_line.decode(text.encode("utf-8", "surrogatepass"))
    except msgspec.DecodeError as exc:
        return BadRow(line, f"the line is not JSON: {exc}", text)
    if not isinstance(obj, dict):
        return BadRow(line, "the line is not a JSON object", text)
    user = next((obj[f] for f in USER_FIELDS if f in obj), None)
    message = next((obj[f] for f in MESSAGE_FIELDS if f in obj), "")
    if isinstance(user, int) and not isinstance(user, bool):
        user = str(user)
    if not isinstance(user, str) or not user.strip():
        return BadRow(line, "the object has no user_id (or userId) string", text)
    if message is None:
        message = ""
    if not isinstance(message, str):
        return BadRow(line, "message (or alertMessage) is not a string", text)
    fields = [user, message]
    if any("\x00" in f for f in fields) or any(_unstorable(f) for f in fields):
        return BadRow(line, "the line holds a NUL or a lone surrogate", text)
    row = read_row(fields, line)
    return BadRow(row.line, row.reason, text) if isinstance(row, BadRow) else row


def _unstorable(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def parse_json_lines(lines: Iterable[str]) -> Iterator[Row | BadRow]:
    """Every row of a JSON-lines file's text, given line by line. Blank lines vanish."""
    for number, raw in enumerate(lines, 1):
        row = read_json_line(raw.rstrip("\r\n"), number)
        if row is not None:
            yield row


def parse(lines: Iterable[str], file_format: FileFormat) -> Iterator[Row | BadRow | Header]:
    return parse_json_lines(lines) if file_format == "jsonl" else parse_lines(lines)


def format_of(name: str, default: FileFormat | None = "csv") -> FileFormat | None:
    """A file's format by its suffix (`.csv`, `.jsonl`, `.ndjson`), else `default`."""
    dot = name.rfind(".")
    return SUFFIXES.get(name[dot:].lower(), default) if dot >= 0 else default


def rejects_csv(bad: Iterable[BadRow]) -> str:
    """The text of a `NAME.rejects.csv`: a header, then line, reason and the raw text of
    every bad row, so that the rows can be fixed and dropped again."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    writer.writerow(["line", "reason", "raw"])
    for b in bad:
        writer.writerow([b.line, b.reason, b.raw])
    return out.getvalue()


def clean_name(name: str) -> str:
    """A file name fit for a JSON payload: bytes that were not UTF-8 (lone surrogates, as
    Python spells undecodable file names) become `?`."""
    return name.encode("utf-8", "replace").decode("utf-8")


def file_identity(digest: bytes, message: str = "") -> str:
    """The part of every row's key that names the file: its content (and the message
    given for its bare ids), not its name, so the same file dropped twice (or renamed) is
    ingested once, and the same ids with another message are new rows."""
    if message:
        digest = hashlib.sha256(digest + b"\x00message:" + message.encode()).digest()
    return digest.hex()[:32]


def row_key(identity: str, line: int) -> str:
    return f"file:{identity}:{line}"


class _Payload(msgspec.Struct):
    """A row's payload; encoded from a Struct, which msgspec does faster than a dict."""

    user_id: str
    message: str
    userId: str  # the names WDS notifiers read, beside ours
    alertMessage: str
    file: str
    line: int


_payload = msgspec.json.Encoder()


def row_event(
    row: Row, topic: str, identity: str, file_name: str, default_message: str = ""
) -> EventIn:
    """The event of a row: keyed by its user (FIFO per user), for that user, deduplicated
    by (file content, line). A row without a message takes `default_message`. The payload
    names each field twice, `user_id`/`message` and `userId`/`alertMessage`, so that a
    notifier written for either spelling reads it unchanged (with `"body": "data"`)."""
    message = row.message or default_message
    payload = _Payload(row.user_id, message, row.user_id, message, file_name, row.line)
    return EventIn(
        topic=topic,
        key=row.user_id,
        payload=msgspec.Raw(_payload.encode(payload)),
        recipients=[row.user_id],
        idempotency_key=row_key(identity, row.line),
    )
