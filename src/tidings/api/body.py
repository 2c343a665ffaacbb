"""Request bodies as every route reads them: the Content-Encoding undone, the size bounded.

The server runs with aiohttp's own decompression off (`serve_on`): it would answer a
garbled gzip body with a 500 from inside its payload reader, and pass a coding it does
not know through as if it were none. Here `gzip`, `deflate` and `identity` are taken
(policy.codings), anything else is a 415 naming them; a compressed body is undone as it
arrives, and refused with a 413 once it passes TIDINGS_MAX_REQUEST_BYTES (compressed or
undone), so it never costs more memory than that; a body that is not what its coding says
is a 400. Must never hold a whole body beyond that limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import MultipartReader, StreamReader, web
from aiohttp.base_protocol import BaseProtocol

from tidings.api.errors import ApiError
from tidings.api.keys import SETTINGS
from tidings.policy.codings import (
    ACCEPTED,
    STEP,
    CodingError,
    Inflater,
    TooLarge,
    UnsupportedCoding,
    body_coding,
)

FIELD = "Content-Encoding"


def _coding(request: web.Request) -> str | None:
    try:
        return body_coding(request.headers.get(FIELD))
    except UnsupportedCoding as exc:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Encoding {exc} is not supported; send the body as one of: "
            + ", ".join(ACCEPTED),
            FIELD,
        ) from None


def is_coded(request: web.Request) -> bool:
    """Does the body come with a coding to undo? (Raises the 415 for an unknown one.)"""
    return _coding(request) is not None


async def read_bytes(request: web.Request) -> bytes:
    """The whole body, its coding undone (b"" for none)."""
    if _coding(request) is None:
        content = request.content
        if content.is_eof():
            # The whole body came with the headers (a usual small request): taken as it
            # lies in the buffer, without request.read()'s loop of reads and copies.
            body = content.read_nowait()
            if len(body) > request.client_max_size:
                raise web.HTTPRequestEntityTooLarge(
                    max_size=request.client_max_size, actual_size=len(body)
                )
            return body
        return await request.read()  # aiohttp enforces client_max_size (413)
    out = bytearray()
    async for piece in decoded_chunks(request, request.app[SETTINGS].max_request_bytes):
        out += piece
    return bytes(out)


async def decoded_chunks(
    request: web.Request,
    limit: int,
    setting: str = "TIDINGS_MAX_REQUEST_BYTES",
    field: str | None = None,
) -> AsyncIterator[bytes]:
    """The body as it arrives, its coding undone, at most `limit` bytes as sent and once
    undone (413 past it); a whole body is never held here, so an upload may stream it
    to disk with a limit of its own."""
    coding = _coding(request)
    if coding is None:
        received = 0
        async for chunk in request.content.iter_chunked(STEP):
            received += len(chunk)
            if received > limit:
                raise _too_large(limit, "", setting, field)
            yield chunk
        return
    inflater = Inflater(coding, limit)
    received = 0
    made = 0
    next_pause = STEP
    try:
        while chunk := await request.content.readany():
            received += len(chunk)
            if received > limit:
                raise _too_large(limit, "", setting, field)
            for piece in inflater.feed(chunk):
                made += len(piece)
                yield piece
                if made >= next_pause:
                    # Undoing megabytes is CPU work: let the other requests run between steps.
                    next_pause += STEP
                    await asyncio.sleep(0)
        if received:
            inflater.end()
    except TooLarge:
        raise _too_large(limit, f" once its {coding} coding is undone", setting, field) from None
    except CodingError as exc:
        raise ApiError(400, "bad_request", f"{exc} (Content-Encoding: {coding})", FIELD) from None


def _too_large(limit: int, how: str, setting: str, field: str | None) -> ApiError:
    return ApiError(
        413, "payload_too_large", f"request body exceeds {limit} bytes{how} ({setting})", field
    )


async def multipart(request: web.Request) -> MultipartReader:
    """The body as a multipart form (uploads); a coded body is undone (and bounded) first."""
    if not is_coded(request):
        return await request.multipart()
    data = await read_bytes(request)
    loop = asyncio.get_running_loop()
    stream = StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    stream.feed_data(data)
    stream.feed_eof()
    return MultipartReader(
        request.headers,
        stream,
        client_max_size=request.app[SETTINGS].max_request_bytes,
        max_size_error_cls=web.HTTPRequestEntityTooLarge,
    )
