"""Folder ingest (`TIDINGS_WATCH_DIR`): CSV and JSON-lines files dropped into a folder
become events.

Owns a file's way through the folder: noticed once it has stopped changing (for a scan
and at least `settle_s`, longer if its last line is unfinished), claimed (renamed into
`processing/`, then locked, so that one process of many reads it, and a file whose
reader died is taken over by the next scan), read in batches into the store, then moved
to `done/` with a JSON report beside it (`failed/` when it cannot be read to its end),
and, when some lines were bad, a `NAME.rejects.csv` listing every one of them (line,
reason, raw text) so that they can be fixed and dropped again.
Every row's event carries an idempotency key made of the file's content and the row's
line, so a file read again after a crash, or dropped again, adds nothing it added before:
no row is skipped, none is stored twice. Bad lines are reported and skipped, never
retried forever. It never blocks the event loop (file work runs in threads, and a thread
is always waited for, even when cancelled) and never drops a row because the store is
away (it waits). `store_rows` and `parse_text` are shared with `POST /v1/uploads`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from tidings.ingest.rows import (
    SUFFIXES,
    BadRow,
    FileFormat,
    Header,
    Row,
    bounded_lines,
    clean_name,
    file_identity,
    format_of,
    parse,
    rejects_csv,
    row_event,
)
from tidings.metrics import EVENTS_INGESTED
from tidings.model import Appended, EventIn
from tidings.store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH = 1000  # rows per store append
BATCH_CHARS = 4 * 1024 * 1024  # and about this much row text at most
REPORTED_BAD_ROWS = 100  # bad rows listed by line in a report (all are counted)
STORE_RETRY_S = 2.0
UNFINISHED_FACTOR = 5  # a file not ending in a newline must settle this many times longer


@dataclass
class FileReport:
    file: str
    rows: int = 0  # good rows read and stored
    events: int = 0  # events created (rows not seen before)
    duplicates: int = 0  # rows already stored (an earlier read, or the same file again)
    bad_rows: int = 0
    bad: list[dict[str, object]] = field(default_factory=list)
    header_line: int | None = None  # a header row, skipped
    resumed: bool = False  # taken over from a reader that died
    last_line: int = 0  # the last line read
    error: str | None = None  # why the file could not be read to its end
    finished_at: str = ""
    format: FileFormat = "csv"
    rejects: str | None = None  # the file listing every bad row, when there were some
    # Bad rows not yet written to the rejects file (not part of the report).
    fresh_bad: list[BadRow] = field(default_factory=list, repr=False)

    def add_bad(self, bad: BadRow) -> None:
        self.bad_rows += 1
        self.fresh_bad.append(bad)
        if len(self.bad) < REPORTED_BAD_ROWS:
            self.bad.append({"line": bad.line, "reason": bad.reason})

    def take_fresh_bad(self) -> list[BadRow]:
        taken, self.fresh_bad = self.fresh_bad, []
        return taken

    def as_json(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "fresh_bad"}


Chunk = list[Row | BadRow | Header]
# Told what a chunk's append stored (the gateway pushes its inbox messages live).
LiveHook = Callable[[Sequence[EventIn], Sequence[Appended]], None]


def chunks_of(items: Iterable[Row | BadRow | Header]) -> Generator[Chunk, None, None]:
    """Chunks of at most BATCH rows and about BATCH_CHARS characters of rows (one store
    append each: long messages make smaller transactions)."""
    chunk: Chunk = []
    size = 0
    for item in items:
        chunk.append(item)
        if isinstance(item, Row):
            size += len(item.user_id) + len(item.message)
        if len(chunk) >= BATCH or size >= BATCH_CHARS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def parse_text(text: str, file_format: FileFormat = "csv") -> Generator[Chunk, None, None]:
    """The chunks of text already in memory (an upload), split into lines exactly as a
    file is read, so that a row has the same line (and key) either way."""
    return chunks_of(parse(bounded_lines(io.StringIO(text, newline="")), file_format))


def file_chunks(path: Path, file_format: FileFormat) -> Generator[Chunk, None, None]:
    # Undecodable bytes become lone surrogates, which make their line a bad row: a stray
    # byte spoils one row, not the rest of the file.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        yield from chunks_of(parse(bounded_lines(f), file_format))


def append_rejects(path: Path, bad: list[BadRow], fresh: bool) -> None:
    """Add bad rows to a rejects file (its header first when `fresh`), their raw text
    written back as the bytes it was read from."""
    if not bad and not fresh:
        return
    text = rejects_csv(bad)
    if not fresh:
        text = text.split("\n", 1)[1]  # the header is there already
    with path.open("a" if not fresh else "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text)


async def finish_in_thread(
    fn: Callable[..., T], *args: object, on_cancel: Callable[[T], object] | None = None
) -> T:
    """`asyncio.to_thread`, except that a cancelled caller still waits for the thread to
    end (so nothing it uses, such as a generator, is touched while it runs), then goes
    on being cancelled; `on_cancel` gets a result nobody will use (to close it)."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await _outlive(future)
        if on_cancel is not None and not future.cancelled() and future.exception() is None:
            on_cancel(future.result())
        raise


async def _outlive(future: asyncio.Future[T]) -> None:
    """Wait for a thread's future to be done, however often the waiter is cancelled."""
    while not future.done():  # a second cancel must not stop the wait either
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([future])


@dataclass
class Prepared:
    """A chunk made ready for the store (in a thread): its events, and what it tells the
    report, noted when its events go to the store."""

    events: list[EventIn]
    bad: list[BadRow]
    header_line: int | None
    last_line: int


def prepare(
    chunk: Chunk,
    topic: str,
    identity: str,
    name: str,
    max_payload: int,
    default_message: str,
) -> Prepared:
    """A chunk's events (JSON encoding: in a thread, off the event loop), its header and
    bad rows, rows whose event would exceed the payload limit among them."""
    events = []
    bad = []
    header_line = None
    for item in chunk:
        if isinstance(item, Header):
            header_line = item.line
        elif isinstance(item, BadRow):
            bad.append(item)
        else:
            event = row_event(item, topic, identity, name, default_message)
            if len(event.payload) > max_payload:
                raw = f"{item.user_id},{item.message}"  # the row, not its exact bytes
                bad.append(BadRow(item.line, "the event would exceed the payload limit", raw))
            else:
                events.append(event)
    return Prepared(events, bad, header_line, chunk[-1].line)


async def store_rows(
    store: Store,
    chunk: Chunk,
    topic: str,
    identity: str,
    name: str,
    report: FileReport,
    *,
    max_payload_bytes: int,
    wait_for_store: Callable[[Exception], Awaitable[None]] | None,
    default_message: str = "",
    live: LiveHook | None = None,
) -> bool:
    """Store a chunk's rows as events and count them (and its bad rows) in `report`.
    Answers whether new events have deliveries (a worker should wake). With
    `wait_for_store`, a store outage is waited out through it instead of raised. Rows
    without a message take `default_message`."""
    prepared = await finish_in_thread(
        prepare, chunk, topic, identity, name, max_payload_bytes, default_message
    )
    return await store_prepared(store, prepared, report, wait_for_store, live)


async def store_prepared(
    store: Store,
    prepared: Prepared,
    report: FileReport,
    wait_for_store: Callable[[Exception], Awaitable[None]] | None,
    live: LiveHook | None = None,
    committed: Callable[[], None] | None = None,
) -> bool:
    """`store_rows` of a chunk prepared already; `committed()` once its events are
    committed, before they are durable (`Store.append_events_pipelined`)."""
    if prepared.header_line is not None:
        report.header_line = prepared.header_line
    for bad in prepared.bad:
        report.add_bad(bad)
    events = prepared.events
    if not events:
        return False
    while True:
        try:
            if committed is None:
                appended = await store.append_events(events)
            else:
                appended = await store.append_events_pipelined(events, committed)
            break
        except StoreUnavailable as exc:
            if wait_for_store is None:
                raise
            await wait_for_store(exc)
    if live is not None:
        live(events, appended)
    new = sum(not a.duplicate for a in appended)
    EVENTS_INGESTED.inc(new)
    report.rows += len(events)
    report.events += new
    report.duplicates += len(appended) - new
    return any(a.deliveries and not a.duplicate for a in appended)


async def store_chunks(
    store: Store,
    chunks: Iterator[Chunk],
    topic: str,
    identity: str,
    name: str,
    report: FileReport,
    *,
    max_payload_bytes: int,
    wait_for_store: Callable[[Exception], Awaitable[None]],
    default_message: str,
    after: Callable[[bool], Awaitable[None]],
    live: LiveHook | None = None,
) -> None:
    """Store every chunk of a file in order (`store_rows` each), the next one read and
    encoded in a thread while the store writes the last: the reading and the store's
    writer work at the same time (at most three chunks in memory: one waiting for its
    answer, one being written, one being read). A chunk is appended once the one before
    it is committed, not answered: the store's writer goes on with it while the one
    before is synced to disk, and the answers still come in order. A chunk whose commit
    fails is retried before any later one goes. `after(wake)` runs once each chunk is
    answered, in order. Returns or raises (cancelled included) only once no thread uses
    `chunks`, so the caller may close it."""

    def ahead() -> Prepared | None:
        chunk = next(chunks, None)
        if chunk is None:
            return None
        return prepare(chunk, topic, identity, name, max_payload_bytes, default_message)

    loop = asyncio.get_running_loop()
    future = asyncio.ensure_future(asyncio.to_thread(ahead))
    answering: asyncio.Future[bool] | None = None  # committed, its answer still to come
    storing: asyncio.Future[bool] | None = None
    try:
        while (prepared := await asyncio.shield(future)) is not None:
            report.last_line = prepared.last_line
            committed: asyncio.Future[None] = loop.create_future()
            storing = asyncio.ensure_future(
                store_prepared(
                    store, prepared, report, wait_for_store, live, partial(_set_once, committed)
                )
            )
            # The append goes first, then the next read: the other way round, the reading
            # thread holds the GIL when the store's writer wakes, and the writer waits for
            # it before it can even begin (up to the 5 ms switch interval).
            await asyncio.sleep(0)
            future = asyncio.ensure_future(asyncio.to_thread(ahead))
            if answering is not None:
                wake = await answering
                answering = None
                await after(wake)
            pending: list[asyncio.Future[Any]] = [committed, storing]
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if storing.done():
                wake = await storing
                storing = None
                await after(wake)
            else:
                answering, storing = storing, None
        if answering is not None:
            wake = await answering
            answering = None
            await after(wake)
    finally:
        for left in (answering, storing):
            if left is not None:  # cancelled (or failed) while a chunk was being stored
                left.cancel()
                await _outlive(left)
                if not left.cancelled():
                    left.exception()  # retrieved: the caller gets its own exception
        await _outlive(future)
        if not future.cancelled():
            future.exception()  # retrieved: what the chunk after a failure raised is moot


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(frozen=True)
class FileSink:
    """Where a file's rows go and who hears of progress: the store and the settings
    `store_chunks` takes, `wake` (new deliveries were written) and `live` (inbox pushes)."""

    store: Store
    topic: str
    max_payload_bytes: int
    wait_for_store: Callable[[Exception], Awaitable[None]]
    wake: Callable[[], None]
    live: LiveHook | None = None


async def store_file(
    sink: FileSink,
    path: Path,
    file_format: FileFormat,
    identity: str,
    name: str,
    report: FileReport,
    rejects: Path,
    default_message: str,
    saved: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Store a claimed file's rows in order (`store_chunks`), its bad rows appended to
    `rejects` after each chunk (the file starts anew: a file read again lists them
    again), then `saved()` if given; the file's chunks are closed when it returns."""
    chunks = file_chunks(path, file_format)
    fresh = True

    async def stored(wake: bool) -> None:
        nonlocal fresh
        if wake:
            sink.wake()
        if report.fresh_bad or fresh:
            await finish_in_thread(append_rejects, rejects, report.take_fresh_bad(), fresh)
            fresh = False
        if saved is not None:
            await saved()

    try:
        await store_chunks(
            sink.store,
            chunks,
            sink.topic,
            identity,
            name,
            report,
            max_payload_bytes=sink.max_payload_bytes,
            wait_for_store=sink.wait_for_store,
            default_message=default_message,
            after=stored,
            live=sink.live,
        )
    finally:
        chunks.close()  # never while a thread runs it: store_chunks waited


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def digest_and_stat(fd: int) -> tuple[bytes, tuple[int, int]]:
    h = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        h.update(chunk)
    st = os.fstat(fd)
    return h.digest(), (st.st_size, st.st_mtime_ns)


def _unchanged(fd: int, signature: tuple[int, int]) -> bool:
    st = os.fstat(fd)
    return (st.st_size, st.st_mtime_ns) == signature


def lock_file(claimed: Path) -> int | None:
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
    """The name the file came with (shortened if it was long): processing/<ns>-<name>."""
    return claimed.name.split("-", 1)[1] if "-" in claimed.name else claimed.name


MAX_NAME_BYTES = 160  # leaves room, in a 255-byte file name, for prefixes and suffixes


def _short(name: str) -> str:
    """`name`, cut (keeping its suffix) to fit MAX_NAME_BYTES bytes on disk."""
    raw = os.fsencode(name)
    if len(raw) <= MAX_NAME_BYTES:
        return name
    suffix = os.fsencode(Path(name).suffix)[:16]
    stem = raw[: MAX_NAME_BYTES - len(suffix)]
    return os.fsdecode(stem.decode("utf-8", "ignore").encode() + suffix)


def _claim(path: Path, signature: tuple[int, int, int], claimed: Path) -> bool:
    """Rename a settled file into processing/, unless it changed since it was listed (a
    file by the same name, written meanwhile, must settle first)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False  # another process claimed it first
    if (st.st_ino, st.st_size, st.st_mtime_ns) != signature:
        return False
    try:
        os.rename(path, claimed)
    except FileNotFoundError:
        return False
    return True


def _reserve(folder: Path, name: str) -> Path:
    """A free path for `name` in `folder` (name, name.1, ...), created empty so that no
    other process takes it; the file is then renamed over it."""
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = Path(name).stem, Path(name).suffix
    for n in range(100_000):
        target = folder / (name if n == 0 else f"{stem}.{n}{suffix}")
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return target
    raise OSError(f"no free name for {name} in {folder}")


class FolderWatcher:
    def __init__(
        self,
        store: Store,
        folder: Path,
        topic: str,
        interval_s: float = 1.0,
        wake: Callable[[], None] = lambda: None,
        *,
        settle_s: float = 2.0,
        max_payload_bytes: int = 1 << 20,
        message: str = "",
        live: LiveHook | None = None,
    ) -> None:
        self.store = store
        self.message = message
        self.live = live
        self.folder = folder
        self.topic = topic
        self.interval_s = interval_s
        self.settle_s = settle_s
        self.max_payload_bytes = max_payload_bytes
        self.wake = wake
        self.processing = folder / "processing"
        self.done = folder / "done"
        self.failed = folder / "failed"
        self._seen: dict[str, tuple[int, int, int]] = {}  # name -> (inode, size, mtime)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._make_folders)
        self._task = asyncio.create_task(self._run(), name="tidings-folder-watch")
        log.info("watching %s for CSV and JSON-lines files", self.folder)

    def _make_folders(self) -> None:
        for d in (self.folder, self.processing, self.done, self.failed):
            d.mkdir(parents=True, exist_ok=True)

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
        """Take over files whose reader died, then claim every new file that has settled;
        read each. Answers the reports of the files read. One file's trouble (a file
        that cannot be opened, one claimed by another process meanwhile) never stops the
        others."""
        reports = []
        for claimed in await asyncio.to_thread(self._orphans):
            report = await self._take(claimed, resumed=True)
            if report is not None:
                reports.append(report)
        for path, signature in await asyncio.to_thread(self._settled_new_files):
            claimed = self.processing / f"{time.time_ns()}-{_short(path.name)}"
            try:
                if not await asyncio.to_thread(_claim, path, signature, claimed):
                    continue
            except OSError as exc:
                log.error("folder ingest: cannot claim %s: %s", path.name, exc)
                continue
            report = await self._take(claimed, resumed=False)
            if report is not None:
                reports.append(report)
        return reports

    def _orphans(self) -> list[Path]:
        try:
            return sorted(
                p for p in self.processing.iterdir() if p.is_file() and not p.name.startswith(".")
            )
        except FileNotFoundError:
            self.processing.mkdir(parents=True, exist_ok=True)
            return []

    def _settled_new_files(self) -> list[tuple[Path, tuple[int, int, int]]]:
        settled: list[tuple[Path, tuple[int, int, int]]] = []
        seen: dict[str, tuple[int, int, int]] = {}
        now = time.time_ns()
        for p in sorted(self.folder.iterdir()):
            if p.name.startswith(".") or p.suffix.lower() not in SUFFIXES:
                continue  # dotfiles and other suffixes: still being written, or not ours
            try:
                st = p.stat()
                if not p.is_file():
                    continue
                signature = (st.st_ino, st.st_size, st.st_mtime_ns)
                age_s = (now - st.st_mtime_ns) / 1e9
                # An empty file is never complete: its writer may have opened it and not
                # written yet.
                if self._seen.get(p.name) != signature or age_s < self.settle_s or not st.st_size:
                    seen[p.name] = signature
                    continue
                if age_s < self.settle_s * UNFINISHED_FACTOR:
                    with p.open("rb") as f:  # a last line without its newline: wait longer
                        f.seek(-1, os.SEEK_END)
                        if f.read(1) != b"\n":
                            seen[p.name] = signature
                            continue
            except FileNotFoundError:
                continue  # claimed by another process while we looked
            except OSError as exc:
                log.warning("folder ingest: cannot look at %s: %s", p.name, exc)
                continue
            settled.append((p, signature))
        self._seen = seen
        return settled

    async def _take(self, claimed: Path, *, resumed: bool) -> FileReport | None:
        """Read a claimed file if no other process holds it (an exclusive lock, which dies
        with its holder, so a crashed reader's file is free for the next scan)."""
        name = clean_name(_original_name(claimed))
        report = FileReport(file=name, resumed=resumed, format=format_of(name) or "csv")
        try:
            fd = await finish_in_thread(lock_file, claimed, on_cancel=_close)
        except OSError as exc:  # e.g. not readable by us: set it aside, do not retry it
            report.error = f"cannot open it: {exc}"
            await self._set_aside(claimed, report)
            return report
        if fd is None:
            return None
        try:
            await self._ingest(claimed, fd, report)
        except asyncio.CancelledError:
            raise  # stopping: the file stays claimed and unlocked, for the next start
        except Exception as exc:
            # Neither a row's fault nor a store outage (those are handled): set the file
            # aside, with what was stored of it, rather than trying it at every scan.
            log.exception("folder ingest: %s failed; moving it to failed/", claimed.name)
            report.error = f"ingest failed: {exc!r}"
            await self._set_aside(claimed, report)
        finally:
            os.close(fd)  # also releases the lock
        return report

    def _rejects_of(self, claimed: Path) -> Path:
        return self.processing / ".rejects" / claimed.name

    async def _ingest(self, claimed: Path, fd: int, report: FileReport) -> None:
        digest, signature = await finish_in_thread(digest_and_stat, fd)
        identity = file_identity(digest, self.message)
        rejects = self._rejects_of(claimed)
        await finish_in_thread(rejects.parent.mkdir, 0o755, True, True)
        sink = FileSink(
            self.store, self.topic, self.max_payload_bytes, self._wait_for_store, self.wake,
            self.live,
        )  # fmt: skip
        await store_file(
            sink, claimed, report.format, identity, report.file, report, rejects, self.message
        )
        if not await finish_in_thread(_unchanged, fd, signature):
            report.error = (
                "the file changed while it was read (still being written?): its rows up to "
                f"line {report.last_line} are stored; drop a file of only the lines after "
                "it (the complete file would be new content, and all its rows would go again)"
            )
        report.finished_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        await self._set_aside(claimed, report)
        level = logging.WARNING if report.error or report.bad_rows else logging.INFO
        log.log(
            level,
            "folder ingest: %s: %d rows, %d new events, %d already stored, %d bad rows%s",
            report.file,
            report.rows,
            report.events,
            report.duplicates,
            report.bad_rows,
            f"; {report.error}" if report.error else "",
        )

    async def _wait_for_store(self, exc: Exception) -> None:
        # Never skip a row: wait for the store (the file stays claimed).
        log.warning("folder ingest: store unavailable (%s); retrying", exc)
        await asyncio.sleep(STORE_RETRY_S)

    async def _set_aside(self, claimed: Path, report: FileReport) -> None:
        await finish_in_thread(self._file_away, claimed, report)

    def _file_away(self, claimed: Path, report: FileReport) -> None:
        if not claimed.exists():
            return  # filed already (a failure after the move, while writing the report)
        folder = self.failed if report.error else self.done
        target = _reserve(folder, _original_name(claimed))
        # The file first: once it is out of processing/ it is never read again; a crash
        # before its report is written loses only the report (and the rejects list).
        os.replace(claimed, target)
        rejects = self._rejects_of(claimed)
        if report.bad_rows and rejects.exists():
            listed = target.with_name(f"{Path(target.name).stem}.rejects.csv")
            os.replace(rejects, listed)
            report.rejects = listed.name
        else:
            rejects.unlink(missing_ok=True)
        report_path = target.with_name(target.name + ".report.json")
        tmp = target.with_name(f".report.{os.getpid()}.{time.time_ns()}.tmp")
        tmp.write_text(json.dumps(report.as_json(), indent=2) + "\n")
        os.replace(tmp, report_path)
