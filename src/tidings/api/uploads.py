"""Route: `POST /v1/uploads`, a CSV file of `user_id[,message]` rows sent over HTTP.

The same rows, events and keys as folder ingest (tidings.ingest), read at once: the
answer is the file's report. Keys come from the content, so uploading a file again (after
a timeout, a 503) adds only what the earlier try did not.
"""

from __future__ import annotations

import hashlib
import posixpath
import urllib.parse

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from tidings.api.body import multipart, read_bytes
from tidings.api.http import SETTINGS, STORE, json_response
from tidings.api.keys import ENGINE
from tidings.api.wire import BadRowOut, UploadOut
from tidings.ingest.files import FileReport, finish_in_thread, parse_text, store_rows
from tidings.ingest.rows import clean_name, file_identity
from tidings.policy.validation import FieldError

routes = web.RouteTableDef()
DEFAULT_NAME = "upload.csv"
MAX_NAME = 255


def _name(raw: str | None) -> str:
    """A file name for payloads and the report: its last path part, at most 255 chars."""
    name = clean_name(posixpath.basename((raw or "").replace("\\", "/")).strip())
    return name[:MAX_NAME] or DEFAULT_NAME


async def _file_of(request: web.Request) -> tuple[str, bytes]:
    """(name, bytes): the `file` part of a multipart form, the `file` field of a urlencoded
    form, or else the whole body, whatever its Content-Type: `curl --data-binary @rows.csv`
    labels a raw file `application/x-www-form-urlencoded`, and that must just work."""
    content_type = request.content_type
    if content_type == "multipart/form-data":
        try:
            reader = await multipart(request)
            while (part := await reader.next()) is not None:
                if isinstance(part, BodyPartReader) and part.name == "file":
                    # decode=True undoes a Content-Transfer-Encoding (base64, ...)
                    return _name(part.filename), bytes(await part.read(decode=True))
        except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:
            raise FieldError("file", f"the multipart form cannot be read: {exc}") from None
        raise FieldError("file", "the form has no `file` part", code="missing_field")
    if content_type.startswith("multipart/"):
        raise FieldError(
            "file",
            f"a {content_type} body cannot be read as a file: send the file as the raw body "
            "(any other Content-Type), or as the `file` part of a multipart/form-data form",
        )
    body = await read_bytes(request)
    if content_type == "application/x-www-form-urlencoded" and body.startswith(b"file="):
        form = urllib.parse.parse_qs(body, keep_blank_values=True, max_num_fields=1000)
        return _name(request.query.get("name")), form.get(b"file", [b""])[0]
    return _name(request.query.get("name")), body


def _prepare(data: bytes) -> tuple[str, str]:
    """(file identity, text). Bytes that are not UTF-8 spoil only their own rows."""
    return file_identity(hashlib.sha256(data).digest()), data.decode(
        "utf-8-sig", errors="surrogateescape"
    )


@routes.post("/v1/uploads")
async def upload(request: web.Request) -> web.Response:
    name, data = await _file_of(request)
    if not data.strip():
        raise FieldError("file", "the file is empty")
    identity, text = await finish_in_thread(_prepare, data)
    settings = request.app[SETTINGS]
    report = FileReport(file=name)
    chunks = parse_text(text)
    wake = False
    try:
        while (chunk := await finish_in_thread(next, chunks, None)) is not None:
            # A store outage answers 503 (the error middleware): the client uploads again,
            # and the rows stored before it count as duplicates.
            wake |= await store_rows(
                request.app[STORE],
                chunk,
                settings.watch_topic,
                identity,
                name,
                report,
                max_payload_bytes=settings.max_payload_bytes,
                wait_for_store=None,
            )
    finally:
        chunks.close()
        if wake:
            request.app[ENGINE].wake()
    return json_response(
        UploadOut(
            file=report.file,
            rows=report.rows,
            events=report.events,
            duplicates=report.duplicates,
            bad_rows=report.bad_rows,
            bad=[BadRowOut(line=int(str(b["line"])), reason=str(b["reason"])) for b in report.bad],
        ),
        status=202,
    )
