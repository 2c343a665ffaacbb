"""Every error the API answers is `{"error": {"code", "message", "field"}}` JSON.

`error_middleware` maps domain errors and aiohttp's own HTTP errors (404, 405, 413, ...)
onto that body; `answer_protocol_errors_as_json` does the same for the requests aiohttp
rejects before any handler or middleware sees them (a malformed request line, headers
too long, a bad `Content-Length`). One answer still leaves as plain text: aiohttp's 417
to an `Expect` header other than `100-continue`, which it sends before any middleware.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from tidings.api.keys import SETTINGS
from tidings.api.wire import ErrorBody, ErrorOut, encode
from tidings.policy.jsontext import printable
from tidings.policy.validation import FieldError
from tidings.store.base import Conflict, InvalidCursor, NotFound, StoreUnavailable

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}
RETRY_AFTER_S = 2


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    # Messages and fields may quote what a client sent (a header's undecodable bytes
    # arrive as lone surrogates): spelled as escapes, any JSON encoder writes them.
    message = printable(message)
    field = None if field is None else printable(field)
    return web.Response(
        status=status,
        body=encode(ErrorOut(ErrorBody(code=code, message=message, field=field))),
        content_type="application/json",
        headers=headers,
    )


class ApiError(Exception):
    """Raised by handlers for a specific status with the standard body."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        return error_answer(request, exc)


def error_answer(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The answer to an exception a handler raised: the standard body for every domain
    and HTTP error, a logged 500 for anything else. Re-raises an HTTPException below 400
    (a redirect is an answer, not an error). For a middleware's `except Exception`."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.field)
    if isinstance(exc, FieldError):
        status = 413 if exc.code == "payload_too_large" else 400
        return error_response(status, exc.code, exc.message, exc.field)
    if isinstance(exc, InvalidCursor):
        return error_response(400, "invalid_field", "cursor is not one this API gave out", "cursor")
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", f"no such resource: {exc}")
    if isinstance(exc, Conflict):
        return error_response(409, "conflict", exc.message, exc.field)
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable: %s", exc)
        return error_response(
            503,
            "store_unavailable",
            "the database is unavailable; retry later (with an Idempotency-Key a retry "
            "never duplicates what may have been stored)",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason
        if exc.status == 413:
            message = f"request body exceeds {request.app[SETTINGS].max_request_bytes} bytes"
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(exc.status, code, message, headers=headers)
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; see the server log")


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, answering its own protocol errors with our body."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            # Ours: aiohttp's own version logs it with its traceback, and refuses (raises
            # ConnectionError) if a response has begun; keep both, replace only the body.
            super().handle_error(request, status, exc, message)
            code = _HTTP_CODES.get(status, "internal_error")
            text = "internal error; see the server log"
        else:
            # A client's malformed request: worth a debug line, not a logged traceback.
            if request.writer.output_size > 0:
                raise ConnectionError("a response has begun; cannot send an error instead")
            log.debug("rejected a malformed request from %s: %s", request.remote, message or exc)
            code = _HTTP_CODES.get(status, "http_error")
            # The parser's reason ("Invalid method encountered:"), its first line only.
            lines = (message or "").strip().splitlines()
            text = lines[0].rstrip(": ")[:200] if lines and lines[0].strip() else "bad request"
        response = error_response(status, code, text)
        response.force_close()  # the stream is out of step: the connection cannot go on
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = _JsonErrorHandler  # same layout (no slots of its own)
        return handler


def answer_protocol_errors_as_json(runner: web.BaseRunner) -> None:
    """Make a set-up runner's connections answer protocol errors with the JSON body.

    aiohttp builds those answers in its connection handler, out of reach of middleware,
    and has no setting for their body; its server makes one handler per connection, so
    the runner's server is given a subclass that hands out ours.
    """
    server = runner.server
    if server is None:
        raise RuntimeError("the runner is not set up")
    server.__class__ = _JsonErrorServer
