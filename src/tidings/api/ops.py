"""Routes: health, readiness, the OpenAPI document, its HTML reference and the home page."""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tidings import __version__
from tidings.api.errors import error_response
from tidings.api.http import json_response
from tidings.api.keys import OPENAPI, STORE
from tidings.metrics import (
    BACKLOG,
    GROUP_BACKLOG,
    GROUP_LEASED,
    GROUP_OLDEST_PENDING_AGE,
    OLDEST_PENDING_AGE,
    REGISTRY,
)
from tidings.model import Backlog, Destination, GroupSpec
from tidings.store.base import StoreUnavailable
from tidings.timeutil import US, now_us

routes = web.RouteTableDef()
# Health and metrics: also what a `tidings worker` serves on TIDINGS_METRICS_PORT.
probe_routes = web.RouteTableDef()


@probe_routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


@probe_routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[STORE].ping()
    except StoreUnavailable as exc:
        return error_response(503, "store_unavailable", f"store not reachable: {exc}")
    return json_response({"status": "ready"})


@probe_routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; backlog gauges are read from the store at each scrape."""
    store = request.app[STORE]
    try:
        backlog = await store.backlog()
        destinations = await store.all_destinations()
    except StoreUnavailable:
        backlog = None
    if backlog is not None:
        now = now_us()
        BACKLOG.clear()
        OLDEST_PENDING_AGE.clear()
        for b in backlog:
            for state in ("pending", "scheduled", "in_flight"):
                BACKLOG.labels(b.destination_id, state).set(getattr(b, state))
            if b.oldest_created_at is not None:
                OLDEST_PENDING_AGE.labels(b.destination_id).set(
                    max(0.0, (now - b.oldest_created_at) / US)
                )
        _group_gauges(backlog, destinations, now)
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def _group_gauges(backlog: list[Backlog], destinations: list[Destination], now: int) -> None:
    """Per pull group, by name: waiting, leased, the oldest's age (0s for an idle group)."""
    by_id = {b.destination_id: b for b in backlog}
    for gauge in (GROUP_BACKLOG, GROUP_LEASED, GROUP_OLDEST_PENDING_AGE):
        gauge.clear()
    for d in destinations:
        if not isinstance(d.spec, GroupSpec):
            continue
        b = by_id.get(d.id)
        name = d.spec.name
        GROUP_BACKLOG.labels(name).set(0 if b is None else b.pending + b.scheduled)
        GROUP_LEASED.labels(name).set(0 if b is None else b.in_flight)
        oldest = None if b is None else b.oldest_created_at
        GROUP_OLDEST_PENDING_AGE.labels(name).set(
            0.0 if oldest is None else max(0.0, (now - oldest) / US)
        )


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


def render_docs(spec: dict[str, Any]) -> str:
    """A dependency-free HTML reference of the OpenAPI document (no CDN, no JS)."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Tidings API</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;"
        "padding:0 1em;color:#222}code,pre{background:#f4f4f4;padding:2px 4px}"
        "pre{padding:8px;overflow:auto}.m{display:inline-block;width:4.5em;font-weight:bold}"
        "h3{margin-bottom:.2em}</style></head><body>",
        f"<h1>Tidings API <small>{esc(spec['info']['version'])}</small></h1>",
        f"<p>{esc(spec['info']['description'])} Every <code>/v1</code> call needs "
        "<code>Authorization: Bearer &lt;key&gt;</code>. Machine-readable: "
        "<a href='/openapi.json'>/openapi.json</a>.</p><h2>Endpoints</h2>",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts.append(
                f"<h3><span class='m'>{esc(method.upper())}</span><code>{esc(path)}</code></h3>"
                f"<div>{esc(op.get('summary', ''))}</div>"
            )
            params = op.get("parameters", [])
            if params:
                parts.append(
                    "<div>Parameters: "
                    + ", ".join(f"<code>{esc(p['name'])}</code> ({esc(p['in'])})" for p in params)
                    + "</div>"
                )
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref", "")
            if ref:
                name = ref.rsplit("/", 1)[-1]
                parts.append(f"<div>Body: <a href='#{esc(name)}'>{esc(name)}</a></div>")
            parts.append(
                "<div>Responses: "
                + ", ".join(esc(code) for code in op.get("responses", {}))
                + "</div>"
            )
    parts.append("<h2>Schemas</h2>")
    for name, schema in spec["components"]["schemas"].items():
        parts.append(
            f"<h3 id='{esc(name)}'>{esc(name)}</h3><pre>{esc(json.dumps(schema, indent=2))}</pre>"
        )
    parts.append("</body></html>")
    return "".join(parts)


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    return web.Response(text=render_docs(request.app[OPENAPI]), content_type="text/html")


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    return web.Response(
        text=(
            "<!doctype html><html><head><meta charset='utf-8'><title>Tidings</title></head>"
            "<body style='font:15px system-ui;max-width:720px;margin:2em auto'>"
            f"<h1>Tidings {html.escape(__version__)}</h1><p>Durable event fan-out.</p><ul>"
            "<li><a href='/docs'>API reference</a></li>"
            "<li><a href='/openapi.json'>OpenAPI document</a></li>"
            "<li><a href='/healthz'>/healthz</a> · <a href='/readyz'>/readyz</a></li>"
            "</ul></body></html>"
        ),
        content_type="text/html",
    )
