"""Every error the API answers is `{"error": {"code", "message", "field"}}` JSON.

`error_middleware` maps domain errors and aiohttp's own HTTP errors (404, 405, 413, ...)
onto that body, so no response ever leaves as HTML or plain text.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from tidings.api.keys import SETTINGS
from tidings.api.wire import ErrorBody, ErrorOut, encode
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
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.field)
    except FieldError as exc:
        status = 413 if exc.code == "payload_too_large" else 400
        return error_response(status, exc.code, exc.message, exc.field)
    except InvalidCursor:
        return error_response(400, "invalid_field", "cursor is not one this API gave out", "cursor")
    except NotFound as exc:
        return error_response(404, "not_found", f"no such resource: {exc}")
    except Conflict as exc:
        return error_response(409, "conflict", exc.message, exc.field)
    except StoreUnavailable as exc:
        log.warning("store unavailable: %s", exc)
        return error_response(
            503,
            "store_unavailable",
            "the database is unavailable; nothing was accepted, retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason
        if exc.status == 413:
            message = f"request body exceeds {request.app[SETTINGS].max_request_bytes} bytes"
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(exc.status, code, message, headers=headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the server log")
