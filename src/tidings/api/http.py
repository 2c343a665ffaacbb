"""Request/response helpers shared by the routes: typed app keys, JSON bodies, paging."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web

from tidings.api.errors import ApiError
from tidings.api.keys import SETTINGS, STORE
from tidings.api.wire import encode
from tidings.policy.validation import FieldError, from_msgspec

T = TypeVar("T")
__all__ = ["SETTINGS", "STORE", "decode", "json_response", "not_found", "page_params", "read_body"]
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode(obj), status=status, content_type="application/json")


async def read_body(request: web.Request) -> bytes:
    body = await request.read()  # aiohttp enforces client_max_size (413)
    if not body:
        raise FieldError(None, "request body is empty; send a JSON object", code="invalid_json")
    return body


def decode(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    try:
        return decoder.decode(body)
    except msgspec.MsgspecError as exc:
        raise from_msgspec(exc) from None


def limit_param(request: web.Request, default: int = DEFAULT_LIMIT, most: int = MAX_LIMIT) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise FieldError("limit", "limit must be an integer") from None
    if not 1 <= limit <= most:
        raise FieldError("limit", f"limit must be between 1 and {most}")
    return limit


def page_params(request: web.Request) -> tuple[int, str | None]:
    return limit_param(request), request.query.get("cursor") or None


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"no {kind} {ident!r}")
