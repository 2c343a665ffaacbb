"""Unknown query parameters are refused, by the OpenAPI document's own list.

`?key=` on a call that has no such filter would otherwise be ignored and answer every
event, which reads as "this key has all of them". The allowed names of each operation
come from the document `/openapi.json` serves, so the check and the reference cannot
disagree. Also refuses a NUL (`%00`) in any query value or path parameter: no store can
look one up (PostgreSQL refuses it in any text). Owns only those checks; must never parse
or validate the values otherwise (handlers do).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tidings.api.keys import OPENAPI
from tidings.policy.validation import FieldError

_ALLOWED = web.AppKey("query_allowed", dict[tuple[str, str], frozenset[str]])


def allowed_queries(document: dict[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    """(METHOD, path template) -> the query parameter names its operation declares."""
    allowed: dict[tuple[str, str], frozenset[str]] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            names = frozenset(
                p["name"] for p in operation.get("parameters", ()) if p.get("in") == "query"
            )
            allowed[(method.upper(), path)] = names
            if method == "get":
                allowed[("HEAD", path)] = names
    return allowed


def install(app: web.Application) -> None:
    """The allowed names, for `check` (which the application's middleware calls)."""
    app[_ALLOWED] = allowed_queries(app[OPENAPI])


def check(request: web.Request) -> None:
    """Raise FieldError for an unknown query parameter or a NUL in a value."""
    match_info = request.match_info
    if match_info:
        for name, value in match_info.items():
            if "\x00" in value:
                raise FieldError(name, f"{name} holds a NUL character (%00)")
    if request.query_string:
        resource = match_info.route.resource
        template = None if resource is None else resource.canonical
        allowed = request.app[_ALLOWED].get((request.method, template or ""))
        if allowed is not None:
            unknown = sorted(set(request.query) - allowed)
            if unknown:
                takes = ", ".join(sorted(allowed)) or "no query parameters"
                raise FieldError(
                    unknown[0],
                    f"unknown query parameter {unknown[0]!r}; "
                    f"{request.method} {template} takes: {takes}",
                )
        for name, value in request.query.items():
            if "\x00" in value:
                raise FieldError(name, f"{name} holds a NUL character (%00)")
