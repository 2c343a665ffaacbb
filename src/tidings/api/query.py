"""Unknown query parameters are refused, by the OpenAPI document's own list.

`?key=` on a call that has no such filter would otherwise be ignored and answer every
event, which reads as "this key has all of them". The allowed names of each operation
come from the document `/openapi.json` serves, so the check and the reference cannot
disagree. Owns only that check; must never parse or validate the values (handlers do).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tidings.api.errors import Handler
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
    app[_ALLOWED] = allowed_queries(app[OPENAPI])
    app.middlewares.append(query_middleware)


@web.middleware
async def query_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.query_string:
        resource = request.match_info.route.resource
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
    return await handler(request)
