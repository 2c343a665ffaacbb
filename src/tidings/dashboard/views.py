"""The dashboard's pages (issue 17): server-rendered HTML from Jinja2 templates shipped in
the package, one CSS and one JS file served from it too (no CDN, no build step), and a
server-sent-events stream for the overview's live figures.

Each page reads the store through its interface and pages through an index (cursors, as
the API does); each action is a form POST behind the session and its CSRF token, doing
what the matching `/v1` call does. Owns the HTML surface; must never serve a page or take
an action without a session, nor take a key from a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from aiohttp import web

from tidings import __version__
from tidings.api.destinations import ROTATION_GRACE_US, replay_all
from tidings.api.destinations import _time_field as time_field
from tidings.api.keys import ENGINE, NOTICES, SETTINGS, STORE
from tidings.api.ws import GATEWAY
from tidings.dashboard import figures
from tidings.dashboard.sessions import (
    REVOKED,
    SECRET,
    Page,
    csrf_of,
    end_session,
    key_is_valid,
    load_secret,
    page,
    page_session,
    session_of,
    start_session,
)
from tidings.model import Attempt, Delivery, Event, EventLink, GroupSpec
from tidings.policy.chains import causation_tree, correlation_of
from tidings.policy.topics import pattern_error
from tidings.policy.validation import FieldError
from tidings.signing import new_secret
from tidings.store.base import Conflict, InvalidCursor, NotFound, Store, encode_cursor
from tidings.timeutil import US, now_us, to_iso

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
STREAM_EVERY_S = 2.0
PAGE = 50
CHAIN_MOST = 200  # nodes drawn; a longer chain says so and links the API
RETRY_CHUNK = 500  # dead letters per commit of a retry-everything run
STATIC = ("dashboard.css", "dashboard.js")
STATE_RANK = {"dead": 4, "in_flight": 3, "scheduled": 3, "pending": 2, "delivered": 1}


@dataclass
class RetryJob:
    """A "retry everything matching" run: the page polls its progress."""

    id: str
    destination: str | None
    done: int = 0
    skipped: int = 0
    finished: bool = False
    error: str | None = None


JOBS = web.AppKey("dashboard_jobs", dict[str, RetryJob])
TEMPLATES = web.AppKey("dashboard_templates", jinja2.Environment)


class Tasks:
    """The background runs of this app, kept so none is collected mid-way, and cancelled
    at cleanup."""

    def __init__(self) -> None:
        self.running: set[asyncio.Task[None]] = set()

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.running.add(task)
        task.add_done_callback(self.running.discard)


TASKS = web.AppKey("dashboard_tasks", Tasks)


# Set when the server begins its graceful shutdown: open event streams end at once (a
# browser's EventSource reconnects elsewhere) instead of holding the shutdown up.
CLOSING = web.AppKey("dashboard_closing", asyncio.Event)


async def _closing(app: web.Application) -> None:
    app[CLOSING].set()


async def _stop_jobs(app: web.Application) -> None:
    running = list(app[TASKS].running)
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


def install(app: web.Application) -> None:
    app[SECRET] = bytearray()
    app[REVOKED] = {}
    app[JOBS] = {}
    app[TASKS] = Tasks()
    app[CLOSING] = asyncio.Event()
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tidings.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["age"] = _age
    env.filters["iso"] = lambda us: "" if us is None else to_iso(us)
    env.filters["pct"] = lambda x: "—" if x is None else f"{x * 100:.1f} %"
    env.filters["ms"] = lambda x: "—" if x is None else f"{x:.0f} ms"
    app[TEMPLATES] = env
    app.on_startup.append(load_secret)
    app.on_shutdown.append(_closing)
    app.on_cleanup.append(_stop_jobs)
    app.add_routes(routes)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    template = request.app[TEMPLATES].get_template(name)
    text = template.render(
        csrf=csrf_of(request),
        version=__version__,
        path=request.path,
        signed_in=page_session(request) is not None,
        **context,
    )
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            # Everything comes from this process; no inline script, no frame.
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
            "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


def back(path: str, **query: str | None) -> web.HTTPSeeOther:
    q = {k: v for k, v in query.items() if v}
    return web.HTTPSeeOther(path + ("?" + urlencode(q) if q else ""))


def _safe_next(value: str) -> str:
    # Only a path of this site: never `//host` or a scheme (an open redirect).
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def ui(handler: Page) -> Page:
    """A dashboard page: behind the session (`page`), its bad input and what it cannot
    find shown as a page of the dashboard with a way back, not as the API's JSON error."""

    async def shown(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except FieldError as exc:
            return _failure(request, 400, "That did not work", exc.message, exc.field)
        except web.HTTPNotFound as exc:
            return _failure(request, 404, "Not found", exc.text or "nothing here", None)

    shown.__name__ = handler.__name__
    shown.__doc__ = handler.__doc__
    return page(shown)


def _failure(
    request: web.Request, status: int, title: str, message: str, field: str | None
) -> web.Response:
    came_from = urlsplit(request.headers.get("Referer", ""))  # a page of this site only
    back = "/"
    if came_from.netloc == request.host and came_from.path:
        back = _safe_next(came_from.path + (f"?{came_from.query}" if came_from.query else ""))
    return render(
        request, "error.html", status=status, title=title, message=message, field=field, back=back
    )


# --------------------------------------------------------------------------- static


@routes.get("/ui/static/{name}")
async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    body = resources.files("tidings.dashboard").joinpath("static", name).read_bytes()
    kind = "text/css" if name.endswith(".css") else "text/javascript"
    return web.Response(body=body, content_type=kind, headers={"Cache-Control": "max-age=300"})


# --------------------------------------------------------------------------- sign-in


@routes.get("/ui/signin")
async def signin_form(request: web.Request) -> web.Response:
    return render(request, "signin.html", next=_safe_next(request.query.get("next", "/")), error="")


@routes.post("/ui/signin")
async def signin(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    key = str(form.get("key", ""))
    target = _safe_next(str(form.get("next", "/")))
    key_digest = key_is_valid(request, key) if key else None
    if key_digest is None:
        await asyncio.sleep(0.2)  # a guess costs a little
        return render(
            request, "signin.html", status=401, next=target, error="That API key is not valid."
        )
    response = web.HTTPSeeOther(target)
    start_session(request, response, key_digest)
    raise response


@routes.post("/ui/signout")
@ui
async def signout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/ui/signin")
    await end_session(request, response)
    raise response


# --------------------------------------------------------------------------- overview


@routes.get("/")
@ui
async def overview(request: web.Request) -> web.Response:
    data, _ = await figures.overview(request.app[STORE], None, time.monotonic())
    return render(request, "overview.html", o=data, every=STREAM_EVERY_S)


@routes.get("/ui/stream")
@ui
async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the overview's figures every STREAM_EVERY_S seconds."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    store = request.app[STORE]
    before: figures.Sample | None = None
    # Bounded: a tab left open for days reconnects (EventSource does) every hour.
    deadline = time.monotonic() + 3600
    closing = request.app[CLOSING]
    with contextlib.suppress(ConnectionResetError):
        while time.monotonic() < deadline and not closing.is_set():
            if await session_of(request) is None:
                await response.write(b"event: signedout\ndata: {}\n\n")
                break
            data, before = await figures.overview(store, before, time.monotonic())
            payload = json.dumps(data.as_json(), separators=(",", ":"))
            await response.write(f"event: overview\ndata: {payload}\n\n".encode())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), STREAM_EVERY_S)
    return response


# --------------------------------------------------------------------------- destinations


@routes.get("/ui/destinations")
@ui
async def destinations(request: web.Request) -> web.Response:
    rows = await figures.destination_rows(request.app[STORE])
    groups = [r for r in rows if isinstance(r.destination.spec, GroupSpec)]
    return render(
        request,
        "destinations.html",
        rows=rows,
        groups=groups,
        notice=request.query.get("notice", ""),
    )


async def _destination(request: web.Request) -> Any:
    d = await request.app[STORE].get_destination(request.match_info["id"])
    if d is None:
        raise web.HTTPNotFound(text="no such destination")
    return d


@routes.post("/ui/destinations/{id}/pause")
@ui
async def pause(request: web.Request) -> web.StreamResponse:
    return await _set_state(request, "paused")


@routes.post("/ui/destinations/{id}/resume")
@ui
async def resume(request: web.Request) -> web.StreamResponse:
    return await _set_state(request, "active")


async def _set_state(request: web.Request, state: str) -> web.StreamResponse:
    current = await _destination(request)
    reason = "paused from the dashboard" if state == "paused" else None
    updated = await request.app[STORE].set_destination_state(current.id, state, reason)  # type: ignore[arg-type]
    if updated.state != current.state:
        request.app[NOTICES].state_set(current, updated, "the dashboard")
    request.app[ENGINE].destinations_changed()
    raise back("/ui/destinations", notice=f"{updated.spec.name or updated.id}: {updated.state}")


@routes.post("/ui/destinations/{id}/rotate")
@ui
async def rotate(request: web.Request) -> web.StreamResponse:
    current = await _destination(request)
    await request.app[STORE].rotate_secret(current.id, new_secret(), now_us() + ROTATION_GRACE_US)
    request.app[ENGINE].destinations_changed()
    hours = ROTATION_GRACE_US / US / 3600
    raise back(
        "/ui/destinations",
        notice=f"{current.spec.name or current.id}: new secret; the old one stays valid "
        f"{hours:g} h (read it with GET /v1/destinations/{current.id})",
    )


def _time(value: str, field: str) -> int | None:
    """A form's time field (an empty one is no bound), read as the API reads it."""
    return time_field(value or None, field)


@routes.get("/ui/destinations/{id}/replay")
@ui
async def replay_preview(request: web.Request) -> web.Response:
    """Step one of a replay: how many deliveries it would send again."""
    current = await _destination(request)
    q = request.query
    state = q.get("state", "dead")
    if state not in ("dead", "delivered"):
        state = "dead"
    since, until = _time(q.get("since", ""), "since"), _time(q.get("until", ""), "until")
    count = await request.app[STORE].count_deliveries(
        current.id, state, since, until, figures.DEAD_CAP
    )
    return render(
        request,
        "replay.html",
        d=current,
        state=state,
        since=q.get("since", ""),
        until=q.get("until", ""),
        count=count,
        capped=count >= figures.DEAD_CAP,
    )


@routes.post("/ui/destinations/{id}/replay")
@ui
async def replay(request: web.Request) -> web.StreamResponse:
    current = await _destination(request)
    form = await request.post()
    state = str(form.get("state", "dead"))
    if state not in ("dead", "delivered"):
        raise FieldError("state", "state must be dead or delivered")
    since = _time(str(form.get("since", "")), "since")
    until = _time(str(form.get("until", "")), "until")
    total = await replay_all(request.app[STORE], current.id, state, since, until)
    if total:
        request.app[ENGINE].wake()
    raise back(
        "/ui/destinations", notice=f"{current.spec.name or current.id}: {total} queued again"
    )


# --------------------------------------------------------------------------- events


@routes.get("/ui/events")
@ui
async def events(request: web.Request) -> web.Response:
    store = request.app[STORE]
    q = request.query
    topic = q.get("topic", "").strip() or None
    if topic is not None and (problem := pattern_error(topic)):
        return render(
            request, "events.html", status=400, error=f"topic {problem}", q=q, items=[], next=None
        )
    key = q.get("key") or None
    error = ""
    items: Sequence[Event] = []
    nxt: str | None = None
    try:
        since = _time(q.get("since", ""), "since")
        until = _time(q.get("until", ""), "until")
        cursor = q.get("cursor") or None
        if cursor is None and until is not None:
            seq = await store.event_seq_at(until)
            cursor = None if seq is None else encode_cursor(seq)
        low = None if since is None else await store.event_seq_at(since)
        if since is not None and low is None:
            items, nxt = [], None
        else:
            page_ = await store.list_events(topic, PAGE, cursor, key=key)
            items = [e for e in page_.items if low is None or e.seq >= low]
            nxt = page_.next if len(items) == len(page_.items) else None
    except (FieldError, InvalidCursor) as exc:
        error = str(getattr(exc, "message", "")) or "that page link is not valid"
    links = {k: v for k, v in q.items() if k != "cursor" and v}
    return render(
        request,
        "events.html",
        status=400 if error else 200,
        error=error,
        q=q,
        items=items,
        next=None if nxt is None else "?" + urlencode({**links, "cursor": nxt}),
    )


def worst_state(deliveries: Sequence[Delivery]) -> str:
    if not deliveries:
        return "none"
    return max((d.state for d in deliveries), key=lambda s: STATE_RANK.get(s, 0))


@routes.get("/ui/events/{id}")
@ui
async def event(request: web.Request) -> web.Response:
    store = request.app[STORE]
    e = await store.get_event(request.match_info["id"])
    if e is None:
        raise web.HTTPNotFound(text="no such event")
    deliveries = list(reversed((await store.list_deliveries(event_id=e.id, limit=1000)).items))
    attempts: dict[str, list[Attempt]] = {}
    for d in deliveries:
        attempts[d.id] = await store.list_attempts(d.id)
    names = {d.id: d.spec.name or d.id for d in await store.all_destinations()}
    chain = await _chain(store, e)
    return render(
        request,
        "event.html",
        e=e,
        payload=_pretty(bytes(e.payload)),
        deliveries=deliveries,
        attempts=attempts,
        names=names,
        chain=chain,
        notice=request.query.get("notice", ""),
    )


def _pretty(payload: bytes) -> str:
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return payload.decode("utf-8", "replace")


@dataclass
class ChainNode:
    link: EventLink
    x: int
    y: int
    parent: int | None  # index of the parent node
    state: str
    current: bool


async def _chain(store: Store, e: Event) -> dict[str, Any]:
    links = await store.correlated_events(correlation_of(e), CHAIN_MOST + 1)
    truncated = len(links) > CHAIN_MOST
    del links[CHAIN_MOST:]
    if not any(link.id == e.id for link in links):
        me = await store.event_link(e.id)
        if me is not None:
            links.append(me)
    tree = causation_tree(links)
    index = {n.event.id: i for i, n in enumerate(tree)}
    nodes = []
    for row, n in enumerate(tree):
        ds = (await store.list_deliveries(event_id=n.event.id, limit=100)).items
        nodes.append(
            ChainNode(
                link=n.event,
                x=12 + n.depth * 28,
                y=14 + row * 34,
                parent=None if n.parent_id is None else index.get(n.parent_id),
                state=worst_state(ds),
                current=n.event.id == e.id,
            )
        )
    width = max((n.x for n in nodes), default=0) + 420
    height = max((n.y for n in nodes), default=0) + 24
    return {"nodes": nodes, "width": width, "height": height, "truncated": truncated}


# --------------------------------------------------------------------------- dead letters


@routes.get("/ui/dead")
@ui
async def dead(request: web.Request) -> web.Response:
    store = request.app[STORE]
    q = request.query
    destination = q.get("destination") or None
    try:
        page_ = await store.list_deliveries(
            destination_id=destination, state="dead", limit=PAGE, cursor=q.get("cursor") or None
        )
    except InvalidCursor:
        raise FieldError("cursor", "that page link is not valid") from None
    names = {d.id: d.spec.name or d.id for d in await store.all_destinations()}
    links = {k: v for k, v in q.items() if k not in ("cursor", "job", "notice") and v}
    job = request.app[JOBS].get(q.get("job", ""))
    return render(
        request,
        "dead.html",
        items=page_.items,
        names=names,
        destination=destination or "",
        next=None if page_.next is None else "?" + urlencode({**links, "cursor": page_.next}),
        job=job,
        notice=q.get("notice", ""),
    )


@routes.post("/ui/deliveries/{id}/retry")
@ui
async def retry_one(request: web.Request) -> web.StreamResponse:
    delivery_id = request.match_info["id"]
    form = await request.post()
    try:
        d = await request.app[STORE].retry_delivery(delivery_id, now_us())
    except NotFound:
        raise web.HTTPNotFound(text="no such delivery") from None
    except Conflict:
        d = None
    request.app[ENGINE].wake()
    where = _safe_next(str(form.get("back", "/ui/dead")))
    notice = "queued again" if d is not None else "already pending or in flight"
    sep = "&" if "?" in where else "?"
    raise web.HTTPSeeOther(f"{where}{sep}{urlencode({'notice': f'{delivery_id}: {notice}'})}")


@routes.post("/ui/dead/retry")
@ui
async def retry_selected(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    ids = [str(v) for v in form.getall("id", [])][:1000]
    destination = str(form.get("destination", "")) or None
    if not ids:
        raise back("/ui/dead", destination=destination, notice="nothing selected")
    done = await request.app[STORE].retry_deliveries(ids, now_us())
    if done.retried:
        request.app[ENGINE].wake()
    raise back(
        "/ui/dead",
        destination=destination,
        notice=f"{done.retried} queued again, {len(done.not_found) + len(done.conflicts)} skipped",
    )


@routes.post("/ui/dead/retry-all")
@ui
async def retry_all(request: web.Request) -> web.StreamResponse:
    """Everything dead (of one destination, when filtered) goes again, in the background,
    a chunk per commit; the page shows the progress."""
    form = await request.post()
    destination = str(form.get("destination", "")) or None
    job = RetryJob(id=secrets.token_urlsafe(8), destination=destination)
    jobs = request.app[JOBS]
    for old in [k for k, j in jobs.items() if j.finished][:-20]:
        del jobs[old]
    jobs[job.id] = job
    request.app[TASKS].start(_run_retry(request.app, job))
    raise back("/ui/dead", destination=destination, job=job.id)


async def _run_retry(app: web.Application, job: RetryJob) -> None:
    """Walks the dead letters newest first by cursor, so each is visited once: one that
    dies again while the run goes on (its seq is above the cursor) is not retried again."""
    store = app[STORE]
    cursor: str | None = None
    try:
        for _ in range(100_000):  # bounded: 50 million dead letters at most per run
            page_ = await store.list_deliveries(
                destination_id=job.destination, state="dead", limit=RETRY_CHUNK, cursor=cursor
            )
            if page_.items:
                done = await store.retry_deliveries([d.id for d in page_.items], now_us())
                job.done += done.retried
                job.skipped += len(done.not_found) + len(done.conflicts)
                app[ENGINE].wake()
            cursor = page_.next
            if cursor is None:
                break
    except Exception as exc:  # shown on the page, and in the log
        log.exception("dashboard: the retry run %s stopped", job.id)
        job.error = str(exc) or type(exc).__name__
    finally:
        job.finished = True


@routes.get("/ui/jobs/{id}")
@ui
async def job_progress(request: web.Request) -> web.Response:
    job = request.app[JOBS].get(request.match_info["id"])
    if job is None:
        raise web.HTTPNotFound(text="no such job")
    return web.json_response(
        {"done": job.done, "skipped": job.skipped, "finished": job.finished, "error": job.error}
    )


# --------------------------------------------------------------------------- users, uploads


@routes.get("/ui/users")
@ui
async def users(request: web.Request) -> web.Response:
    user = request.query.get("user", "").strip()
    inbox = None
    online = 0
    if user:
        inbox = await request.app[STORE].read_inbox(user, 0, 0)
        top = inbox.top
        inbox = await request.app[STORE].read_inbox(user, max(0, top - PAGE), PAGE)
        online = await request.app[GATEWAY].hub.presence(user)
    hub_users = sorted(request.app[GATEWAY].hub.users())[:100]
    return render(
        request,
        "users.html",
        user=user,
        inbox=inbox,
        messages=[] if inbox is None else list(reversed(inbox.messages)),
        online=online,
        hub_users=hub_users,
        pretty=lambda raw: _pretty(bytes(raw))[:2000],
    )


@routes.get("/ui/uploads")
@ui
async def uploads(request: web.Request) -> web.Response:
    store = request.app[STORE]
    upload_id = request.query.get("id", "").strip()
    upload = await store.get_upload(upload_id) if upload_id else None
    before = request.query.get("before") or None
    recent = await store.list_uploads(PAGE + 1, before)
    more = len(recent) > PAGE
    del recent[PAGE:]
    watch_dir = request.app[SETTINGS].watch_dir
    watched = await asyncio.to_thread(watched_reports, Path(watch_dir)) if watch_dir else []
    return render(
        request,
        "uploads.html",
        upload_id=upload_id,
        upload=upload,
        recent=recent,
        next=f"?before={recent[-1].id}" if more else None,
        watch_dir=watch_dir or "",
        watched=watched,
    )


WATCHED_SHOWN = 50


def watched_reports(folder: Path) -> list[dict[str, Any]]:
    """The newest reports the folder ingest left beside its files (done/ and failed/),
    newest first. Runs in a thread: it reads the disk."""
    found: list[tuple[float, str, Path]] = []
    for sub in ("done", "failed"):
        with contextlib.suppress(OSError):
            for path in (folder / sub).glob("*.report.json"):
                with contextlib.suppress(OSError):
                    found.append((path.stat().st_mtime, sub, path))
    found.sort(reverse=True)
    out = []
    for _, sub, path in found[:WATCHED_SHOWN]:
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(report, dict):
            out.append({**report, "folder": sub})
    return out
