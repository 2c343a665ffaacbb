"""Uploads too large to read within their request: spooled to disk, read in the background.

Owns the spool folder (`TIDINGS_UPLOAD_DIR`) and `Spill`, which takes an upload's bytes as
they arrive (in memory, then in the spool): a file being received is `ID.FORMAT.part`,
renamed to `ID.FORMAT` once complete (and its upload recorded as `queued`), read by the
same code as folder ingest (rows, chunks, keys, bad rows into `ID.rejects.csv`), its
progress saved in the store after every chunk (what `GET /v1/uploads/{id}` shows), and
deleted once read. A process that stops mid-file reads it again at its next start: the
rows' keys (file content and line) make a second read add only what the first did not.
One file is read at a time, under an exclusive lock, so two processes sharing a folder
never read one file together. It never blocks the event loop (file work runs in
threads) and never skips a row because the store is away (it waits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import msgspec

from tidings.ingest.files import (
    STORE_RETRY_S,
    FileReport,
    FileSink,
    LiveHook,
    digest_and_stat,
    finish_in_thread,
    lock_file,
    store_file,
)
from tidings.ingest.rows import file_identity, format_of
from tidings.model import Upload, UploadBadRow, UploadState
from tidings.store.base import Store, StoreUnavailable
from tidings.timeutil import now_us

log = logging.getLogger(__name__)


def upload_of(report: FileReport, base: Upload, state: UploadState) -> Upload:
    """`base` with a report's counts."""
    return msgspec.structs.replace(
        base,
        state=state,
        rows=report.rows,
        events=report.events,
        duplicates=report.duplicates,
        bad_rows=report.bad_rows,
        bad=[UploadBadRow(int(str(b["line"])), str(b["reason"])) for b in report.bad],
        last_line=report.last_line,
        error=report.error,
        updated_at=now_us(),
    )


class SpooledUploads:
    def __init__(
        self,
        store: Store,
        folder: Path,
        topic: str,
        *,
        max_payload_bytes: int,
        wake: Callable[[], None] = lambda: None,
        live: LiveHook | None = None,
    ) -> None:
        self.store = store
        self.live = live
        self.folder = folder
        self.topic = topic
        self.max_payload_bytes = max_payload_bytes
        self.wake = wake
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def part_path(self, upload_id: str, file_format: str) -> Path:
        return self.folder / f"{upload_id}.{file_format}.part"

    def path_of(self, upload_id: str, file_format: str) -> Path:
        return self.folder / f"{upload_id}.{file_format}"

    async def start(self) -> None:
        """Read what a previous run left; the folder is made by the first large upload."""
        for name in await asyncio.to_thread(self._leftovers):
            await self._queue.put(name)
        self._task = asyncio.create_task(self._run(), name="tidings-spooled-uploads")

    def _leftovers(self) -> list[str]:
        """Files complete but not yet read (a stop mid-file); half-received ones, whose
        client had no answer and will send again, are removed."""
        names: list[str] = []
        if not self.folder.is_dir():
            return names
        for p in sorted(self.folder.iterdir()):
            if p.name.endswith(".part"):
                p.unlink(missing_ok=True)
            elif p.is_file() and format_of(p.name, None) and "." not in p.stem:
                names.append(p.name)  # ID.csv, ID.jsonl; not ID.rejects.csv
        return names

    def submit(self, upload_id: str, file_format: str) -> None:
        """Read a spooled file (complete, renamed from its .part) in the background."""
        self._queue.put_nowait(self.path_of(upload_id, file_format).name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def idle(self) -> None:
        """Wait until every submitted file is read (tests, a graceful stop)."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            name = await self._queue.get()
            try:
                await self._read(self.folder / name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("upload %s: reading it failed", name)
            finally:
                self._queue.task_done()

    async def _known(self, upload_id: str, file_format: str) -> Upload:
        while True:
            try:
                found = await self.store.get_upload(upload_id)
                break
            except StoreUnavailable as exc:
                await self._wait_for_store(exc)
        if found is not None:
            return found
        # Spooled, but its record was never written (a crash in between): read it anyway.
        return Upload(id=upload_id, file=f"{upload_id}.{file_format}", state="queued")

    async def _save(self, upload: Upload) -> None:
        while True:
            try:
                await self.store.save_upload(upload)
                return
            except StoreUnavailable as exc:
                await self._wait_for_store(exc)

    async def _read(self, path: Path) -> None:
        upload_id, file_format = path.stem, format_of(path.name) or "csv"
        fd = await finish_in_thread(lock_file, path)
        if fd is None:
            return  # gone, or another process reads it
        try:
            upload = await self._known(upload_id, file_format)
            report = FileReport(file=upload.file, format=file_format)
            await self._save(upload_of(report, upload, "reading"))
            digest, _ = await finish_in_thread(digest_and_stat, fd)
            identity = file_identity(digest, upload.message)
            rejects = self.folder / f"{upload_id}.rejects.csv"
            sink = FileSink(
                self.store, self.topic, self.max_payload_bytes, self._wait_for_store,
                self.wake, self.live,
            )  # fmt: skip

            async def saved() -> None:
                await self._save(upload_of(report, upload, "reading"))

            await store_file(
                sink, path, file_format, identity, upload.file, report, rejects,
                upload.message, saved,
            )  # fmt: skip
            if not report.bad_rows:
                await asyncio.to_thread(rejects.unlink, True)
            await self._save(upload_of(report, upload, "done"))
            await asyncio.to_thread(path.unlink, True)
            log.info(
                "upload %s (%s): %d rows, %d new events, %d already stored, %d bad rows",
                upload_id,
                upload.file,
                report.rows,
                report.events,
                report.duplicates,
                report.bad_rows,
            )
        finally:
            os.close(fd)

    async def _wait_for_store(self, exc: Exception) -> None:
        log.warning("spooled uploads: store unavailable (%s); retrying", exc)
        await asyncio.sleep(STORE_RETRY_S)


class SpillTooLarge(Exception):
    """An upload passed the most bytes a spool takes (TIDINGS_MAX_UPLOAD_BYTES)."""

    def __init__(self, most: int) -> None:
        super().__init__(f"more than {most} bytes")
        self.most = most


class Spill:
    """The bytes of an upload as they arrive: in memory up to `in_memory` bytes, then in
    a spool file; at most `most` bytes in all."""

    def __init__(self, in_memory: int, most: int, part: Path) -> None:
        self.in_memory = in_memory
        self.most = most
        self.part = part
        self.size = 0
        self.buffer = bytearray()
        self.file: int | None = None

    async def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.most:
            raise SpillTooLarge(self.most)
        if self.file is None and self.size <= self.in_memory:
            self.buffer += chunk
            return
        if self.file is None:
            self.file = await asyncio.to_thread(_create, self.part)
            await asyncio.to_thread(_write_all, self.file, bytes(self.buffer))
            self.buffer = bytearray()
        await asyncio.to_thread(_write_all, self.file, chunk)

    async def close(self, *, keep: bool) -> None:
        if self.file is not None:
            fd, self.file = self.file, None
            await asyncio.to_thread(_finish, fd, self.part, keep)


def _create(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _finish(fd: int, part: Path, keep: bool) -> None:
    try:
        if keep:
            os.fsync(fd)  # on disk before its upload is answered as accepted
    finally:
        os.close(fd)
    if keep:
        os.replace(part, part.with_suffix(""))  # ID.csv.part -> ID.csv
    else:
        part.unlink(missing_ok=True)
