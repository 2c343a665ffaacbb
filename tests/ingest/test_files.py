"""Folder ingest (tidings.ingest.files) against a real folder and a real store (every
backend): files are read once stable, once per content, and a crashed reader's file is
finished by the next scan without repeating or skipping a row."""

from __future__ import annotations

import asyncio
import csv
import fcntl
import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from tidings.ingest import files
from tidings.ingest.files import FolderWatcher
from tidings.ingest.rows import MAX_LINE, Row, file_identity, row_event
from tidings.model import Appended, Event, EventIn
from tidings.store.base import Store


async def file_events(store: Store) -> list[Event]:
    out: list[Event] = []
    cursor = None
    for _ in range(1000):
        page = await store.list_events("file.row", 1000, cursor)
        out.extend(page.items)
        cursor = page.next
        if cursor is None:
            return out
    raise AssertionError("too many pages")


def lines_of(events: list[Event]) -> list[int]:
    return sorted(msgspec.json.decode(bytes(e.payload))["line"] for e in events)


def drop(folder: Path, name: str, text: str) -> Path:
    """As a careful producer does: write beside, then rename into the folder."""
    tmp = folder / f".{name}.part"
    tmp.write_text(text, encoding="utf-8")
    target = folder / name
    os.rename(tmp, target)
    return target


async def reading(w: FolderWatcher, store: Store) -> asyncio.Task[list[files.FileReport]]:
    """A scan started, once it has stored some rows (at most 5 s later)."""
    task = asyncio.create_task(w.scan_once())
    for _ in range(500):
        if await file_events(store):
            break
        await asyncio.sleep(0.01)
    return task


def csv_of(n: int, start: int = 0) -> str:
    return "user_id,message\n" + "".join(f"u{i},hello {i}\n" for i in range(start, start + n))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "in"


async def watcher_of(store: Store, folder: Path, message: str = "") -> FolderWatcher:
    w = FolderWatcher(store, folder, "file.row", interval_s=0.01, settle_s=0, message=message)
    for d in (folder, w.processing, w.done, w.failed):
        d.mkdir(parents=True, exist_ok=True)
    return w


async def test_a_file_is_read_once_stable_and_filed_with_its_report(
    store: Store, folder: Path
) -> None:
    w = await watcher_of(store, folder)
    text = csv_of(2500) + "\n" + ",no user\n" + "u-last,with, commas\n"
    drop(folder, "alerts.csv", text)
    assert await w.scan_once() == []  # first seen: not yet known to be complete
    (report,) = await w.scan_once()
    assert (report.file, report.rows, report.events, report.duplicates) == (
        "alerts.csv",
        2501,
        2501,
        0,
    )
    assert report.bad_rows == 1 and report.bad == [
        {"line": 2503, "reason": "the user id (first field) is empty"}
    ]
    assert report.error is None
    assert sorted(p.name for p in w.done.iterdir()) == [
        "alerts.csv",
        "alerts.csv.report.json",
        "alerts.rejects.csv",
    ]
    assert (w.done / "alerts.csv").read_text() == text
    stored = json.loads((w.done / "alerts.csv.report.json").read_text())
    assert stored["events"] == 2501 and stored["bad_rows"] == 1
    assert stored["rejects"] == "alerts.rejects.csv" and stored["format"] == "csv"
    assert (w.done / "alerts.rejects.csv").read_text() == (
        '"line","reason","raw"\n2503,"the user id (first field) is empty",",no user"\n'
    )
    assert not (folder / "alerts.csv").exists()
    assert not [p for p in w.processing.rglob("*") if p.is_file()]

    events = await file_events(store)
    assert len(events) == 2501
    assert lines_of(events) == [*range(2, 2502), 2504]  # line 1: the header
    last = next(e for e in events if e.key == "u-last")
    assert msgspec.json.decode(bytes(last.payload))["message"] == "with, commas"
    assert last.recipients == ["u-last"]

    # The same content again, under another name: nothing new.
    drop(folder, "alerts-again.csv", text)
    await w.scan_once()
    (again,) = await w.scan_once()
    assert (again.rows, again.events, again.duplicates) == (2501, 0, 2501)
    assert len(await file_events(store)) == 2501
    # The same name again, other content: read, and filed beside the first.
    drop(folder, "alerts.csv", csv_of(3, start=10_000))
    await w.scan_once()
    (third,) = await w.scan_once()
    assert third.events == 3
    assert (w.done / "alerts.1.csv").exists() and (w.done / "alerts.1.csv.report.json").exists()


async def test_a_growing_file_waits(store: Store, folder: Path) -> None:
    w = await watcher_of(store, folder)
    path = folder / "slow.csv"
    path.write_text(csv_of(10))
    assert await w.scan_once() == []
    with path.open("a") as f:  # still being copied
        f.write("u10,hello 10\n")
    assert await w.scan_once() == []
    (report,) = await w.scan_once()
    assert report.events == 11


async def test_a_crashed_readers_file_is_finished_without_repeats(
    store: Store, folder: Path
) -> None:
    """A reader died after storing part of a file: the file waits in processing/, unlocked;
    the next scan reads it from the start, and what was stored counts as duplicates."""
    w = await watcher_of(store, folder)
    text = csv_of(3000)
    claimed = w.processing / "1700000000000000000-big.csv"
    claimed.write_text(text)
    # What the dead reader stored: the first 1200 rows, with the keys a reader gives them.
    identity = file_identity(hashlib.sha256(claimed.read_bytes()).digest())
    await store.append_events(
        [
            row_event(Row(n + 2, f"u{n}", f"hello {n}"), "file.row", identity, "big.csv")
            for n in range(1200)
        ]
    )
    (report,) = await w.scan_once()
    assert (report.file, report.rows, report.events, report.duplicates) == (
        "big.csv",
        3000,
        1800,
        1200,
    )
    assert lines_of(await file_events(store)) == list(range(2, 3002))
    assert (w.done / "big.csv").exists()


async def test_a_file_another_process_holds_is_left_alone(store: Store, folder: Path) -> None:
    w = await watcher_of(store, folder)
    claimed = w.processing / "1-held.csv"
    claimed.write_text(csv_of(5))
    with claimed.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert await w.scan_once() == []
        assert claimed.exists() and await file_events(store) == []
    (report,) = await w.scan_once()  # its holder is gone (the lock died with it)
    assert report.events == 5


async def test_bad_lines_are_reported_and_the_rest_is_read(store: Store, folder: Path) -> None:
    """Bytes that are not UTF-8, a NUL, a stray quote: each spoils its own line only."""
    w = await watcher_of(store, folder)
    good = "".join(f"u{i},hello {i}\n" for i in range(1500))
    data = (
        good.encode()
        + b"u-latin,caf\xe9\n"
        + b"u-nul,a\x00b\n"
        + b'u-quote,"Order placed\n'
        + b"u-after,still here\n"
    )
    (folder / "mixed.csv").write_bytes(data)
    await w.scan_once()
    (report,) = await w.scan_once()
    assert report.error is None
    assert (report.rows, report.events, report.bad_rows) == (1501, 1501, 3)
    assert [b["line"] for b in report.bad] == [1501, 1502, 1503]
    events = await file_events(store)
    assert lines_of(events) == [*range(1, 1501), 1504]
    assert (w.done / "mixed.csv").exists()
    # Every bad line, its bytes as they came: fixed, they can be dropped again.
    rejects = list(
        csv.reader(
            io.StringIO(
                (w.done / "mixed.rejects.csv").read_bytes().decode("utf-8", "surrogateescape"),
                newline="",
            )
        )
    )
    assert [(r[0], r[2].encode("utf-8", "surrogateescape")) for r in rejects[1:]] == [
        ("1501", b"u-latin,caf\xe9"),
        ("1502", b"u-nul,a\x00b"),
        ("1503", b'u-quote,"Order placed'),
    ]


async def test_stopping_mid_file_leaves_it_for_the_next_start(
    store: Store, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while reading (SIGTERM), the watcher stops at once and the file stays
    claimed; the next start takes it over and stores the rest, nothing twice."""
    monkeypatch.setattr(files, "BATCH", 200)
    w = await watcher_of(store, folder)
    drop(folder, "big.csv", csv_of(20_000))
    assert await w.scan_once() == []  # seen once: the next scan claims it
    task = await reading(w, store)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)
    stored = len(await file_events(store))
    assert 0 < stored < 20_000
    claimed = [p.name.split("-", 1)[1] for p in w.processing.iterdir() if p.is_file()]
    assert claimed == ["big.csv"]
    assert not any(w.failed.iterdir())

    again = await watcher_of(store, folder)
    (report,) = await again.scan_once()
    # A write in flight at the cancel may still commit: at least what was seen is a repeat.
    assert report.resumed and report.rows == 20_000 and report.duplicates >= stored
    assert report.events + report.duplicates == 20_000
    assert lines_of(await file_events(store)) == list(range(2, 20_002))


async def test_a_file_that_cannot_be_opened_is_set_aside(
    store: Store, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await watcher_of(store, folder)
    real_lock = files.lock_file

    def lock(claimed: Path) -> int | None:
        if claimed.name.endswith("secret.csv"):
            raise PermissionError(13, "Permission denied")
        return real_lock(claimed)

    monkeypatch.setattr(files, "lock_file", lock)
    (folder / "secret.csv").write_text("u1,x\n")
    (folder / "good.csv").write_text("u2,y\n")
    await w.scan_once()
    reports = await w.scan_once()
    assert sorted((r.file, r.error is None) for r in reports) == [
        ("good.csv", True),
        ("secret.csv", False),
    ]
    assert (w.failed / "secret.csv").exists() and (w.done / "good.csv").exists()
    assert await w.scan_once() == []  # not tried again


async def test_a_file_changed_while_read_is_not_filed_as_done(
    store: Store, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await watcher_of(store, folder)
    monkeypatch.setattr(files, "_unchanged", lambda fd, signature: False)
    (folder / "moving.csv").write_text("u1,x\n")
    await w.scan_once()
    (report,) = await w.scan_once()
    assert report.error is not None and "changed while it was read" in report.error
    assert (w.failed / "moving.csv").exists()


async def test_a_file_name_that_is_not_utf8(store: Store, folder: Path) -> None:
    w = await watcher_of(store, folder)
    (folder / os.fsdecode(b"caf\xe9.csv")).write_bytes(b"u1,x\n")
    await w.scan_once()
    (report,) = await w.scan_once()
    assert report.file == "caf?.csv" and report.events == 1
    (event,) = await file_events(store)
    assert msgspec.json.decode(bytes(event.payload))["file"] == "caf?.csv"


async def test_an_empty_file_is_never_complete(store: Store, folder: Path) -> None:
    w = await watcher_of(store, folder)
    path = folder / "export.csv"
    path.write_bytes(b"")  # its writer opened it, and has not written yet
    for _ in range(3):
        assert await w.scan_once() == []
    path.write_text(csv_of(3))
    await w.scan_once()
    (report,) = await w.scan_once()
    assert report.events == 3


async def test_an_over_long_line_is_a_bad_row_read_in_bounded_pieces(
    store: Store, folder: Path
) -> None:
    w = await watcher_of(store, folder)
    long_line = "u-long," + "x" * (3 * MAX_LINE) + "\n"
    (folder / "long.csv").write_text("u1,a\n" + long_line + "u2,b\n")
    await w.scan_once()
    (report,) = await w.scan_once()
    assert (report.events, report.bad) == (
        2,
        [{"line": 2, "reason": f"the line is longer than {MAX_LINE} characters"}],
    )
    assert lines_of(await file_events(store)) == [1, 3]


async def test_a_long_name_is_shortened_on_disk(store: Store, folder: Path) -> None:
    w = await watcher_of(store, folder)
    name = "é" * 120 + ".csv"  # 244 bytes: no room for a prefix
    (folder / name).write_text("u1,x\n")
    await w.scan_once()
    (report,) = await w.scan_once()
    assert report.events == 1 and report.error is None
    (filed,) = [p for p in w.done.iterdir() if not p.name.endswith(".report.json")]
    assert filed.name.endswith(".csv") and len(os.fsencode(filed.name)) <= 160
    assert (w.done / (filed.name + ".report.json")).exists()
    assert report.file == filed.name


async def test_a_file_rewritten_after_it_was_listed_is_not_claimed(
    store: Store, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await watcher_of(store, folder)
    path = folder / "export.csv"
    path.write_text(csv_of(2))
    await w.scan_once()
    listed = w._settled_new_files

    def listed_then_rewritten() -> list[tuple[Path, tuple[int, int, int]]]:
        found = listed()
        path.write_text(csv_of(5))  # a new export by the same name, being written
        return found

    monkeypatch.setattr(w, "_settled_new_files", listed_then_rewritten)
    assert await w.scan_once() == []
    monkeypatch.undo()
    await w.scan_once()
    (report,) = await w.scan_once()
    assert report.events == 5


async def test_a_second_cancel_does_not_fail_the_file(
    store: Store, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "BATCH", 200)
    w = await watcher_of(store, folder)
    drop(folder, "big.csv", csv_of(20_000))
    assert await w.scan_once() == []
    task = await reading(w, store)
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)
    assert not any(w.failed.iterdir())
    (report,) = await (await watcher_of(store, folder)).scan_once()
    assert report.rows == 20_000 and report.events + report.duplicates == 20_000
    assert lines_of(await file_events(store)) == list(range(2, 20_002))


async def test_other_files_are_not_touched(store: Store, folder: Path) -> None:
    w = await watcher_of(store, folder)
    (folder / "notes.txt").write_text("u1,x\n")
    (folder / ".hidden.csv").write_text("u1,x\n")
    await w.scan_once()
    assert await w.scan_once() == []
    assert (folder / "notes.txt").exists() and (folder / ".hidden.csv").exists()


async def test_json_lines_files_are_read_like_csv(store: Store, folder: Path) -> None:
    w = await watcher_of(store, folder)
    text = (
        '{"userId": "125", "alertMessage": "Server down"}\n'
        '{"user_id": 7, "message": "seven"}\n'
        "\n"
        "not json\n"
        '{"message": "nobody"}\n'
    )
    drop(folder, "alerts.jsonl", text)
    await w.scan_once()
    (report,) = await w.scan_once()
    assert (report.format, report.rows, report.events, report.bad_rows) == ("jsonl", 2, 2, 2)
    assert [b["line"] for b in report.bad] == [4, 5]
    payloads = sorted(
        (msgspec.json.decode(bytes(e.payload)) for e in await file_events(store)),
        key=lambda p: p["line"],
    )
    assert [(p["userId"], p["alertMessage"], p["line"]) for p in payloads] == [
        ("125", "Server down", 1),
        ("7", "seven", 2),
    ]
    assert (w.done / "alerts.rejects.csv").exists()


async def test_a_file_of_bare_ids_takes_the_watch_message(store: Store, folder: Path) -> None:
    w = await watcher_of(store, folder, message="Server down")
    drop(folder, "ids.csv", "user_id\n1\n2,own message\n3\n")
    await w.scan_once()
    (report,) = await w.scan_once()
    assert (report.events, report.rejects) == (3, None)
    assert not (w.done / "ids.rejects.csv").exists()
    by_user = {
        p["userId"]: p["alertMessage"]
        for p in (msgspec.json.decode(bytes(e.payload)) for e in await file_events(store))
    }
    assert by_user == {"1": "Server down", "2": "own message", "3": "Server down"}
    # The same ids with another message are new alerts, not duplicates.
    other = await watcher_of(store, folder, message="Back up")
    drop(folder, "ids.csv", "user_id\n1\n2,own message\n3\n")
    await other.scan_once()
    (again,) = await other.scan_once()
    assert (again.events, again.duplicates) == (3, 0)


async def test_the_rows_a_file_stores_are_handed_to_the_live_hook(
    store: Store, folder: Path
) -> None:
    """What the gateway pushes to open sockets: each row's inbox message, as stored."""
    seen: list[tuple[str, int]] = []

    def live(events: Sequence[EventIn], appended: Sequence[Appended]) -> None:
        assert len(events) == len(appended)
        seen.extend(pair for a in appended for pair in a.inbox)

    w = await watcher_of(store, folder)
    w.live = live
    drop(folder, "a.csv", "u1,one\nu2,two\nu1,three\n")
    for _ in range(3):  # first seen, settled, read
        await w.scan_once()
    assert seen == [("u1", 1), ("u2", 1), ("u1", 2)]
    page = await store.read_inbox("u1", 0, 10)
    assert [m.offset for m in page.messages] == [1, 2]
