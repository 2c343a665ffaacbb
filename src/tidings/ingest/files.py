"""Folder ingest (`TIDINGS_WATCH_DIR`): CSV files dropped into a folder become events.

Owns a file's way through the folder: noticed once it has stopped changing for a scan,
claimed (renamed into `processing/`, then locked, so that one process of many reads it,
and a file whose reader died is taken over by the next scan), read in batches into the
store, then moved to `done/` beside a JSON report (`failed/` when it cannot be read as
UTF-8 CSV). Every row's event carries an idempotency key made of the file's content and
the row's line, so a file read again after a crash, or dropped again, adds nothing it
added before: no row is skipped, none is sent twice. It never blocks the event loop
(file work runs in threads) and never drops a row because the store is away (it waits).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tidings.ingest.rows import BadRow, Row, file_identity, is_header, read_row, row_event
from tidings.metrics import EVENTS_INGESTED
from tidings.store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

BATCH = 1000  # rows per store append
REPORTED_BAD_ROWS = 100  # bad rows listed by line in a report (all are counted)
STORE_RETRY_S = 2.0


@dataclass
class FileReport:
    file: str
    rows: int = 0  # good rows read
    events: int = 0  # events created (rows not seen before)
    duplicates: int = 0  # rows already ingested (an earlier read, or the same file again)
    bad_rows: int = 0
    bad: list[dict[str, object]] = field(default_factory=list)
    error: str | None = None  # why the file could not be read to its end
    finished_at: str = ""

    def add_bad(self, bad: BadRow) -> None:
        self.bad_rows += 1
        if len(self.bad) < REPORTED_BAD_ROWS:
            self.bad.append({"line": bad.line, "reason": bad.reason})


def _digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


def records(text: Iterable[str]) -> Generator[list[Row | BadRow], None, None]:
    """The rows of CSV text (lines, as from an open file) in chunks of up to BATCH, read
    lazily. Raises csv.Error (and UnicodeDecodeError from a file) on what it cannot read."""
    reader = csv.reader(text)
    chunk: list[Row | BadRow] = []
    start = 1
    first = True
    for fields in reader:
        line, start = start, reader.line_num + 1
        if first:
            first = False
            if is_header(fields):
                continue
        parsed = read_row(fields, line)
        if parsed is not None:
            chunk.append(parsed)
        if len(chunk) >= BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _records(path: Path) -> Generator[list[Row | BadRow], None, None]:
    """A file's chunks (a generator resumed from worker threads, one at a time)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        yield from records(f)


async def store_rows(
    store: Store,
    chunk: list[Row | BadRow],
    topic: str,
    identity: str,
    name: str,
    report: FileReport,
    *,
    wait_for_store: bool,
) -> bool:
    """Store a chunk's rows as events and count them (and its bad rows) in `report`.
    Answers whether new events have deliveries (a worker should wake). With
    `wait_for_store`, waits out a store outage instead of raising StoreUnavailable."""
    rows = [r for r in chunk if isinstance(r, Row)]
    for bad in (r for r in chunk if isinstance(r, BadRow)):
        report.add_bad(bad)
    if not rows:
        return False
    events = [row_event(r, topic, identity, name) for r in rows]
    while True:
        try:
            appended = await store.append_events(events)
            break
        except StoreUnavailable as exc:
            if not wait_for_store:
                raise
            # Never skip a row: wait for the store (the file stays claimed).
            log.warning("folder ingest: store unavailable (%s); retrying %s", exc, name)
            await asyncio.sleep(STORE_RETRY_S)
    report.rows += len(rows)
    new = sum(not a.duplicate for a in appended)
    EVENTS_INGESTED.inc(new)
    report.events += new
    report.duplicates += len(appended) - new
    return any(a.deliveries and not a.duplicate for a in appended)


def _lock(claimed: Path) -> int | None:
    """An open descriptor holding the file's exclusive lock, or None: gone, or held."""
    try:
        fd = os.open(claimed, os.O_RDONLY)
    except FileNotFoundError:
        return None  # finished by another process meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None  # being read by another process
    if not claimed.exists():
        os.close(fd)
        return None  # finished and moved between our listing and the lock
    return fd


def _original_name(claimed: Path) -> str:
    # processing/<ns>-<original name>
    return claimed.name.split("-", 1)[1] if "-" in claimed.name else claimed.name


def _free_path(folder: Path, name: str) -> Path:
    target = folder / name
    n = 1
    while target.exists() or target.with_name(target.name + ".report.json").exists():
        target = folder / f"{Path(name).stem}.{n}{Path(name).suffix}"
        n += 1
    return target


class FolderWatcher:
    def __init__(
        self,
        store: Store,
        folder: Path,
        topic: str,
        interval_s: float = 1.0,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.folder = folder
        self.topic = topic
        self.interval_s = interval_s
        self.wake = wake
        self.processing = folder / "processing"
        self.done = folder / "done"
        self.failed = folder / "failed"
        self._seen: dict[str, tuple[int, int]] = {}  # name -> (size, mtime) at the last scan
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for d in (self.folder, self.processing, self.done, self.failed):
            d.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run(), name="tidings-folder-watch")
        log.info("watching %s for CSV files", self.folder)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.scan_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("folder ingest: a scan failed; next scan in %.1f s", self.interval_s)
            await asyncio.sleep(self.interval_s)

    async def scan_once(self) -> list[FileReport]:
        """Take over files whose reader died, then claim every new file that has stopped
        changing since the last scan; read each. Answers the reports of the files read."""
        reports = []
        for claimed in sorted(await asyncio.to_thread(self._orphans)):
            report = await self._take(claimed)
            if report is not None:
                reports.append(report)
        for path in await asyncio.to_thread(self._stable_new_files):
            claimed = self.processing / f"{time.time_ns()}-{path.name}"
            try:
                await asyncio.to_thread(os.rename, path, claimed)
            except FileNotFoundError:
                continue  # another process claimed it first
            report = await self._take(claimed)
            if report is not None:
                reports.append(report)
        return reports

    def _orphans(self) -> list[Path]:
        return [p for p in self.processing.iterdir() if p.is_file()]

    def _stable_new_files(self) -> list[Path]:
        stable: list[Path] = []
        seen: dict[str, tuple[int, int]] = {}
        for p in sorted(self.folder.iterdir()):
            if not p.is_file() or p.name.startswith(".") or p.suffix.lower() != ".csv":
                continue  # dotfiles and other suffixes: still being written, or not ours
            st = p.stat()
            signature = (st.st_size, st.st_mtime_ns)
            if self._seen.get(p.name) == signature:
                stable.append(p)
            else:
                seen[p.name] = signature
        self._seen = seen
        return stable

    async def _take(self, claimed: Path) -> FileReport | None:
        """Read a claimed file if no other process holds it (an exclusive lock, which dies
        with its holder, so a crashed reader's file is free for the next scan)."""
        fd = await asyncio.to_thread(_lock, claimed)
        if fd is None:
            return None
        try:
            return await self._ingest(claimed)
        except Exception as exc:
            # Not a row's fault nor the store's (those are handled): set the file aside
            # rather than trying it again at every scan.
            log.exception("folder ingest: %s failed; moving it to failed/", claimed.name)
            report = FileReport(file=_original_name(claimed), error=f"ingest failed: {exc!r}")
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._file_away, claimed, report)
            return report
        finally:
            os.close(fd)  # also releases the lock

    async def _ingest(self, claimed: Path) -> FileReport:
        name = _original_name(claimed)
        report = FileReport(file=name)
        identity = file_identity(await asyncio.to_thread(_digest, claimed))
        chunks = _records(claimed)
        try:
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                if await store_rows(
                    self.store, chunk, self.topic, identity, name, report, wait_for_store=True
                ):
                    self.wake()
        except (UnicodeDecodeError, csv.Error) as exc:
            report.error = f"cannot read it as UTF-8 CSV: {exc}"
        finally:
            chunks.close()
        report.finished_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        await asyncio.to_thread(self._file_away, claimed, report)
        level = logging.WARNING if report.error or report.bad_rows else logging.INFO
        log.log(
            level,
            "folder ingest: %s: %d rows, %d new events, %d already ingested, %d bad rows%s",
            name,
            report.rows,
            report.events,
            report.duplicates,
            report.bad_rows,
            f"; {report.error}" if report.error else "",
        )
        return report

    def _file_away(self, claimed: Path, report: FileReport) -> None:
        folder = self.failed if report.error else self.done
        target = _free_path(folder, report.file)
        report_path = target.with_name(target.name + ".report.json")
        tmp = report_path.with_name("." + report_path.name + ".tmp")
        tmp.write_text(json.dumps(report.__dict__, indent=2) + "\n")
        os.replace(tmp, report_path)
        os.rename(claimed, target)  # last: until then a crash leaves it to be read again
