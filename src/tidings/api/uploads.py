"""Routes: `POST /v1/uploads` (a CSV or JSON-lines file of rows sent over HTTP) and
`GET /v1/uploads/{id}` (how far its reading got).

The same rows, events and keys as folder ingest (tidings.ingest). A file that fits in
`TIDINGS_MAX_REQUEST_BYTES` is read at once: the answer is its report. A larger one is
streamed to the spool folder as it arrives (never held in memory) and read in the
background (tidings.ingest.spooled): the answer is `202 {"upload_id", "state":
"queued"}`. Keys come from the content (and the message given for bare ids), so uploading
a file again (after a timeout, a 503) adds only what the earlier try did not.
"""

from __future__ import annotations

import hashlib
import posixpath
import urllib.parse
from collections.abc import AsyncIterator
from functools import partial

import msgspec
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from tidings.api.body import decoded_chunks, is_coded, multipart
from tidings.api.errors import ApiError
from tidings.api.http import SETTINGS, STORE, json_response, not_found
from tidings.api.keys import ENGINE, SPOOL
from tidings.api.wire import upload_out
from tidings.api.ws import push_live
from tidings.ids import IdFactory
from tidings.ingest.files import FileReport, finish_in_thread, parse_text, store_rows
from tidings.ingest.rows import MAX_MESSAGE, FileFormat, clean_name, file_identity, format_of
from tidings.ingest.spooled import Spill, SpillTooLarge, upload_of
from tidings.model import Upload
from tidings.policy.validation import FieldError
from tidings.timeutil import now_us

routes = web.RouteTableDef()
MAX_NAME = 255
UPLOAD_PREFIX = "upl_"
CHUNK = 1 << 20
_ids = IdFactory()
JSONL_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/x-jsonlines"})


def _name(raw: str | None) -> str:
    """A file name for payloads and the report: its last path part, at most 255 chars
    (empty when none was given: `upload.csv` or `upload.jsonl` then)."""
    name = clean_name(posixpath.basename((raw or "").replace("\\", "/")).strip())
    return name[:MAX_NAME]


def _format(request: web.Request, name: str, content_type: str) -> FileFormat:
    """`?format=`, else the name's suffix, else a JSON-lines Content-Type, else CSV."""
    asked = request.query.get("format")
    if asked is not None:
        if asked not in ("csv", "jsonl"):
            raise FieldError("format", "format must be csv or jsonl")
        return "jsonl" if asked == "jsonl" else "csv"
    by_name = format_of(name, None)
    if by_name is not None:
        return by_name
    return "jsonl" if content_type in JSONL_TYPES else "csv"


def _message(request: web.Request) -> str:
    message = request.query.get("message", "")
    if len(message) > MAX_MESSAGE:
        raise FieldError("message", f"message is longer than {MAX_MESSAGE} characters")
    if "\x00" in message:
        raise FieldError("message", "message holds a NUL character")
    return message


async def _chunks_of(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


async def _source(request: web.Request) -> tuple[str, str, AsyncIterator[bytes] | bytes]:
    """(name, content type, the file's bytes or a stream of them): the `file` part of a
    multipart form, the `file` field of a urlencoded form, or else the whole body,
    whatever its Content-Type: `curl --data-binary @rows.csv` labels a raw file
    `application/x-www-form-urlencoded`, and that must just work."""
    content_type = request.content_type
    if content_type == "multipart/form-data":
        try:
            reader = await multipart(request)  # a coded form: undone (and bounded) first
            while (part := await reader.next()) is not None:
                if isinstance(part, BodyPartReader) and part.name == "file":
                    if part.headers.get("Content-Transfer-Encoding", "binary").lower() not in (
                        "binary",
                        "8bit",
                        "7bit",
                    ):  # base64 and the like: undone whole (such parts are small)
                        data = bytes(await part.read(decode=True))
                        return _name(part.filename), part.headers.get("Content-Type", ""), data
                    return (
                        _name(part.filename),
                        part.headers.get("Content-Type", ""),
                        (_chunks_of(part)),
                    )
        except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:
            raise FieldError("file", f"the multipart form cannot be read: {exc}") from None
        raise FieldError("file", "the form has no `file` part", code="missing_field")
    if content_type.startswith("multipart/"):
        raise FieldError(
            "file",
            f"a {content_type} body cannot be read as a file: send the file as the raw body "
            "(any other Content-Type), or as the `file` part of a multipart/form-data form",
        )
    name = _name(request.query.get("name"))
    # Undone as it arrives (a gzip or deflate Content-Encoding), bounded by the upload
    # limit; Spill keeps what passes TIDINGS_MAX_REQUEST_BYTES on disk.
    settings = request.app[SETTINGS]
    if is_coded(request):
        # A compressed body stays within TIDINGS_MAX_REQUEST_BYTES once undone: a few
        # megabytes of gzip must not fill the spool folder with gigabytes.
        chunks = decoded_chunks(request, settings.max_request_bytes)
    else:
        chunks = decoded_chunks(
            request, settings.max_upload_bytes, "TIDINGS_MAX_UPLOAD_BYTES", "file"
        )
    if content_type == "application/x-www-form-urlencoded":
        head = b""
        async for chunk in chunks:
            head += chunk
            if len(head) >= 5:
                break
        if head.startswith(b"file="):  # a form: read whole, as forms are (bounded)
            most = request.app[SETTINGS].max_request_bytes
            body = bytearray(head)
            async for chunk in chunks:
                body += chunk
                if len(body) > most:
                    raise ApiError(
                        413,
                        "payload_too_large",
                        f"a urlencoded form over {most} bytes cannot be read: send the file "
                        "as the raw body (curl --data-binary) or as a multipart/form-data part",
                        "file",
                    )
            form = urllib.parse.parse_qs(bytes(body), keep_blank_values=True, max_num_fields=1000)
            return name, content_type, form.get(b"file", [b""])[0]
        return name, content_type, _prefixed(head, chunks)
    return name, content_type, chunks


async def _prefixed(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in rest:
        yield chunk


def _prepare(data: bytes, message: str) -> tuple[str, str]:
    """(file identity, text). Bytes that are not UTF-8 spoil only their own rows."""
    return file_identity(hashlib.sha256(data).digest(), message), data.decode(
        "utf-8-sig", errors="surrogateescape"
    )


@routes.post("/v1/uploads")
async def upload(request: web.Request) -> web.Response:
    message = _message(request)
    name, content_type, source = await _source(request)
    file_format = _format(request, name, content_type)
    name = name or f"upload.{file_format}"
    settings = request.app[SETTINGS]
    upload_id = _ids.new(UPLOAD_PREFIX)
    base = Upload(
        id=upload_id,
        file=name,
        state="receiving",
        format=file_format,
        message=message,
        created_at=now_us(),
    )
    if isinstance(source, bytes):
        data = source
    else:
        spool = request.app[SPOOL]
        spill = Spill(
            settings.max_request_bytes,
            settings.max_upload_bytes,
            spool.part_path(upload_id, file_format),
        )
        keep = False
        try:
            async for chunk in source:
                try:
                    await spill.feed(chunk)
                except SpillTooLarge as exc:
                    raise ApiError(
                        413,
                        "payload_too_large",
                        f"the upload exceeds {exc.most} bytes (TIDINGS_MAX_UPLOAD_BYTES)",
                        "file",
                    ) from exc
            if spill.file is not None:
                queued = msgspec.structs.replace(base, state="queued", bytes=spill.size)
                await request.app[STORE].save_upload(queued)
                keep = True
        finally:
            await spill.close(keep=keep)
        if keep:
            spool.submit(upload_id, file_format)
            return json_response(upload_out(queued), status=202)
        data = bytes(spill.buffer)
    if not data.strip():
        raise FieldError("file", "the file is empty")
    return json_response(upload_out(await _read_now(request, base, data)), status=202)


async def _read_now(request: web.Request, base: Upload, data: bytes) -> Upload:
    identity, text = await finish_in_thread(_prepare, data, base.message)
    settings = request.app[SETTINGS]
    report = FileReport(file=base.file, format="jsonl" if base.format == "jsonl" else "csv")
    chunks = parse_text(text, report.format)
    wake = False
    try:
        while (chunk := await finish_in_thread(next, chunks, None)) is not None:
            report.last_line = chunk[-1].line
            # A store outage answers 503 (the error middleware): the client uploads again,
            # and the rows stored before it count as duplicates.
            wake |= await store_rows(
                request.app[STORE],
                chunk,
                settings.watch_topic,
                identity,
                base.file,
                report,
                max_payload_bytes=settings.max_payload_bytes,
                wait_for_store=None,
                default_message=base.message,
                live=partial(push_live, request.app),
            )
            report.take_fresh_bad()  # listed in the answer (the first 100)
    finally:
        chunks.close()
        if wake:
            request.app[ENGINE].wake()
    done = upload_of(report, msgspec.structs.replace(base, bytes=len(data)), "done")
    await request.app[STORE].save_upload(done)
    return done


@routes.get("/v1/uploads/{id}")
async def show(request: web.Request) -> web.Response:
    upload_id = request.match_info["id"]
    found = await request.app[STORE].get_upload(upload_id)
    if found is None:
        raise not_found("upload", upload_id)
    return json_response(upload_out(found))
