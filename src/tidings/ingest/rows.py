"""What a row of an ingested CSV file means: `user_id[,message]` into an event.

Owns the rules for one row (blank lines, an optional header, bare user ids, commas in an
unquoted message, bad rows) and the idempotency key of a row, which is what makes a file
ingested once however often it is read. Pure: no files, no store.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from tidings.model import EventIn

MAX_USER_ID = 255
MAX_MESSAGE = 64 * 1024
HEADERS = frozenset({"user_id", "userid", "user", "user id"})


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # 1-based line of the file where the row starts
    user_id: str
    message: str


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str


def read_row(fields: list[str], line: int) -> Row | BadRow | None:
    """One parsed CSV record: a Row, a BadRow saying why, or None for a blank line.

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
    """A first record that names the columns (`user_id,message`, `userId,alertMessage`)."""
    return bool(fields) and fields[0].strip().lower().replace("-", "_") in HEADERS


def file_identity(digest: bytes) -> str:
    """The part of every row's key that names the file: its content, not its name, so the
    same file dropped twice (or renamed) is ingested once."""
    return digest.hex()[:32]


def row_key(identity: str, line: int) -> str:
    return f"file:{identity}:{line}"


_payload = msgspec.json.Encoder()


def row_event(row: Row, topic: str, identity: str, file_name: str) -> EventIn:
    """The event of a row: keyed by its user (FIFO per user), for that user, deduplicated
    by (file content, line)."""
    payload = {"user_id": row.user_id, "message": row.message, "file": file_name, "line": row.line}
    return EventIn(
        topic=topic,
        key=row.user_id,
        payload=msgspec.Raw(_payload.encode(payload)),
        recipients=[row.user_id],
        idempotency_key=row_key(identity, row.line),
    )
