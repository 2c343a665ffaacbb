"""Route: `POST /v1/uploads`, a CSV file of `user_id[,message]` rows sent over HTTP.

The same rows, events and keys as folder ingest (tidings.ingest), read at once: the
answer is the file's report. Keys come from the content, so uploading a file again (after
a timeout, a 503) adds only what the earlier try did not.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io

from aiohttp import BodyPartReader, web

from tidings.api.http import SETTINGS, STORE, json_response
from tidings.api.keys import ENGINE
from tidings.api.wire import BadRowOut, UploadOut
from tidings.ingest.files import FileReport, records, store_rows
from tidings.ingest.rows import BadRow, Row, file_identity
from tidings.policy.validation import FieldError

routes = web.RouteTableDef()
DEFAULT_NAME = "upload.csv"


async def _file_of(request: web.Request) -> tuple[str, bytes]:
    """(name, bytes): the `file` part of a multipart form, or the whole body."""
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name == "file":
                return part.filename or DEFAULT_NAME, bytes(await part.read())
        raise FieldError("file", "the form has no `file` part", code="missing_field")
    if request.content_type == "application/x-www-form-urlencoded":
        raise FieldError(
            "file", "send the file as a multipart/form-data `file` part, or as the raw body"
        )
    return request.query.get("name") or DEFAULT_NAME, await request.read()


def _chunks(text: str) -> list[list[Row | BadRow]]:
    return list(records(io.StringIO(text, newline="")))


@routes.post("/v1/uploads")
async def upload(request: web.Request) -> web.Response:
    name, data = await _file_of(request)
    if not data.strip():
        raise FieldError("file", "the file is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FieldError("file", f"the file is not UTF-8 text: {exc}") from None
    try:
        chunks = await asyncio.to_thread(_chunks, text)
    except csv.Error as exc:
        raise FieldError("file", f"the file is not CSV: {exc}") from None
    identity = file_identity(hashlib.sha256(data).digest())
    topic = request.app[SETTINGS].watch_topic
    report = FileReport(file=name)
    wake = False
    for chunk in chunks:
        # A store outage answers 503 (the error middleware): the client uploads again,
        # and the rows stored before it count as duplicates.
        wake |= await store_rows(
            request.app[STORE], chunk, topic, identity, name, report, wait_for_store=False
        )
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
