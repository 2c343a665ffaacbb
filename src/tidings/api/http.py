"""Request/response helpers shared by the routes: typed app keys, JSON bodies, paging."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web

from tidings.api.body import read_bytes
from tidings.api.errors import ApiError
from tidings.api.keys import SETTINGS, STORE
from tidings.api.wire import encode
from tidings.policy.jsontext import (
    MAX_DEPTH,
    deeper_than,
    depth_path,
    lone_surrogate_path,
    may_hold_nul,
)
from tidings.policy.validation import FieldError, from_msgspec, unstorable_field

T = TypeVar("T")
__all__ = ["SETTINGS", "STORE", "decode", "json_response", "not_found", "page_params", "read_body"]
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode(obj), status=status, content_type="application/json")


async def read_body(request: web.Request) -> bytes:
    body = await read_bytes(request)  # Content-Encoding undone, at most max_request_bytes
    if not body:
        raise FieldError(None, "request body is empty; send a JSON object", code="invalid_json")
    return body


def decode_or(body: bytes, decoder: msgspec.json.Decoder[T], default: T) -> T:
    """For a body that may be left out: `default` when it is empty. Anything else is
    decoded: a body of whitespace alone holds no JSON value and answers 400, as it does
    on a route whose body is required."""
    return decode(body, decoder) if body else default


def decode(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """The body decoded, or a FieldError naming the field: nesting beyond MAX_DEPTH is
    refused before decoding (msgspec would recurse), strings no store keeps (a lone
    surrogate, which msgspec refuses unnamed; a NUL outside an event's payload) after."""
    if deeper_than(body):
        path = depth_path(body)
        raise FieldError(
            path,
            f"{path or 'the body'} nests arrays and objects deeper than {MAX_DEPTH} levels",
            code="invalid_field" if path else "invalid_json",
        )
    try:
        value = decoder.decode(body)
    except RecursionError:  # the check above should make this unreachable
        raise FieldError(
            None, f"the body nests deeper than {MAX_DEPTH} levels", code="invalid_json"
        ) from None
    except msgspec.ValidationError as exc:
        raise from_msgspec(exc) from None
    except msgspec.DecodeError as exc:
        found = lone_surrogate_path(body)
        if found is not None:
            path, problem = found
            raise FieldError(path, f"{path or 'the body'} {problem}") from None
        raise from_msgspec(exc) from None
    if may_hold_nul(body) and (refused := unstorable_field(value)):
        raise refused
    return value


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
