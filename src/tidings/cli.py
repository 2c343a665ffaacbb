"""The `tidings` command line.

Server roles (`serve`, `api`) run in this process; the other commands talk to a running
Tidings over its HTTP API (`--url`/`TIDINGS_URL`, `--api-key`/`TIDINGS_API_KEY`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import click

from tidings import __version__
from tidings.config import ConfigError, Settings, load_settings, settings_help

DEFAULT_URL = "http://127.0.0.1:8080"
RETRY_BATCH = 500  # ids per POST /v1/deliveries/retry


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(overrides=overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def _server_options(fn: Any) -> Any:
    fn = click.option("--database-url", help="Overrides TIDINGS_DATABASE_URL.")(fn)
    fn = click.option("--port", type=int, help="Overrides TIDINGS_PORT.")(fn)
    fn = click.option("--host", help="Overrides TIDINGS_HOST.")(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tidings")
def main() -> None:
    """Tidings: durable event fan-out (webhooks, inboxes, pull consumers, buses)."""


def _serve(
    roles: frozenset[str], host: str | None, port: int | None, database_url: str | None
) -> None:
    from tidings.observability import configure_logging
    from tidings.server import run_forever

    settings = _settings(host=host, port=port, database_url=database_url)
    configure_logging(settings.log_level, settings.log_format)
    # Sender processes read these from the environment they inherit; a TOML file's
    # values must reach them too.
    os.environ["TIDINGS_LOG_LEVEL"] = settings.log_level
    os.environ["TIDINGS_LOG_FORMAT"] = settings.log_format
    run_forever(settings, roles=roles)


@main.command(epilog=settings_help())
@_server_options
def serve(host: str | None, port: int | None, database_url: str | None) -> None:
    """Run every role in one process: the HTTP API and the delivery workers.

    With no configuration at all it stores everything in ./tidings.db (SQLite) and
    listens on 127.0.0.1:8080.
    """
    _serve(frozenset({"api", "worker"}), host, port, database_url)


@main.command(epilog=settings_help())
@_server_options
def api(host: str | None, port: int | None, database_url: str | None) -> None:
    """Run the HTTP API only (ingest, management), without delivery workers."""
    _serve(frozenset({"api"}), host, port, database_url)


@main.command(epilog=settings_help())
@click.option("--database-url", help="Overrides TIDINGS_DATABASE_URL.")
def worker(database_url: str | None) -> None:
    """Run delivery workers only (no HTTP API). Start as many as you like on one database:
    leases keep them from sending the same delivery twice at once."""
    _serve(frozenset({"worker"}), None, None, database_url)


# --------------------------------------------------------------------- API client commands
class _Client:
    def __init__(self, url: str, api_key: str | None) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        for k, v in (headers or {}).items():
            request.add_header(k, v)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                err = json.loads(raw)["error"]
                where = f" ({err['field']})" if err.get("field") else ""
                message = f"{exc.code} {err['code']}{where}: {err['message']}"
            except (ValueError, KeyError, TypeError):
                message = f"{exc.code}: {raw[:200]!r}"
            raise click.ClickException(message) from None
        except urllib.error.URLError as exc:
            raise click.ClickException(
                f"cannot reach Tidings at {self.url}: {exc.reason}"
            ) from None
        return json.loads(raw) if raw else None


_url_option = click.option(
    "--url",
    envvar="TIDINGS_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Base URL of a running Tidings (TIDINGS_URL).",
)
_key_option = click.option(
    "--api-key",
    envvar="TIDINGS_API_KEY",
    help="API key (TIDINGS_API_KEY).",
)


def _print(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


@main.command()
@click.argument("topic")
@click.option("--key", default="", help="Ordering key (events of one key are delivered in order).")
@click.option("--data", default="null", help="The payload, as JSON.")
@click.option("--recipient", "recipients", multiple=True, help="A user id (repeatable).")
@click.option("--idempotency-key", help="Publishing again with the same key creates nothing.")
@_url_option
@_key_option
def publish(
    topic: str,
    key: str,
    data: str,
    recipients: tuple[str, ...],
    idempotency_key: str | None,
    url: str,
    api_key: str | None,
) -> None:
    """Publish one event and print its id."""
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
    body: dict[str, Any] = {"topic": topic, "key": key, "payload": payload}
    if recipients:
        body["recipients"] = list(recipients)
    if idempotency_key:
        body["idempotency_key"] = idempotency_key
    _print(_Client(url, api_key).call("POST", "/v1/events", body))


@main.group()
def destinations() -> None:
    """Create, list and inspect destinations."""


@destinations.command("list")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@_url_option
@_key_option
def destinations_list(limit: int, url: str, api_key: str | None) -> None:
    """List destinations, newest first (one line each)."""
    client = _Client(url, api_key)
    page = client.call("GET", f"/v1/destinations?limit={limit}")
    for d in page["items"]:
        click.echo(
            f"{d['id']}  {d['name'] or '-':20}  {d['kind']:8} {d['state']:7} "
            f"{','.join(d['topics'])}  {d['url'] or ''}"
        )
    if page["next"]:
        click.echo(f"(more: raise --limit; next cursor {page['next']})", err=True)


@destinations.command("show")
@click.argument("ref")
@_url_option
@_key_option
def destinations_show(ref: str, url: str, api_key: str | None) -> None:
    """Show one destination (by id or name) as JSON."""
    _print(
        _Client(url, api_key).call("GET", f"/v1/destinations/{urllib.parse.quote(ref, safe='')}")
    )


@destinations.command("create")
@click.option(
    "--url", "target", required=False, help="Webhook URL, or a bus URL (redis://, nats://)."
)
@click.option(
    "--topic", "topics", multiple=True, required=True, help="Topic or pattern (repeatable)."
)
@click.option("--name", help="A unique name.")
@click.option("--kind", default="webhook", show_default=True)
@click.option("--ordering", type=click.Choice(["fifo", "none"]), default=None)
@click.option("--on-dead", type=click.Choice(["skip", "block"]), default=None)
@click.option("--filter", "filter_json", help="Payload filter as JSON.")
@click.option("--json", "extra_json", help="Any other fields of the create body, as JSON.")
@click.option(
    "--api-url",
    "url",
    envvar="TIDINGS_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Base URL of a running Tidings (TIDINGS_URL).",
)
@_key_option
def destinations_create(
    target: str | None,
    topics: tuple[str, ...],
    name: str | None,
    kind: str,
    ordering: str | None,
    on_dead: str | None,
    filter_json: str | None,
    extra_json: str | None,
    url: str,
    api_key: str | None,
) -> None:
    """Create a destination and print it (with its signing secret)."""
    body: dict[str, Any] = {"kind": kind, "topics": list(topics)}
    try:
        if extra_json:
            body.update(json.loads(extra_json))
        if filter_json:
            body["filter"] = json.loads(filter_json)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    for field, value in (
        ("url", target),
        ("name", name),
        ("ordering", ordering),
        ("on_dead", on_dead),
    ):
        if value is not None:
            body[field] = value
    _print(_Client(url, api_key).call("POST", "/v1/destinations", body))


@main.group()
def dlq() -> None:
    """Dead letters: list dead deliveries and send them again."""


def _dead_pages(
    client: _Client, destination_id: str | None, page_size: int
) -> Iterator[list[dict[str, Any]]]:
    cursor: str | None = None
    while True:
        query = {"state": "dead", "limit": str(page_size)}
        if destination_id:
            query["destination_id"] = destination_id
        if cursor:
            query["cursor"] = cursor
        page = client.call("GET", "/v1/deliveries?" + urllib.parse.urlencode(query))
        yield page["items"]
        cursor = page["next"]
        if not cursor:
            return


def _destination_id(client: _Client, ref: str | None) -> str | None:
    if ref is None:
        return None
    found = client.call("GET", f"/v1/destinations/{urllib.parse.quote(ref, safe='')}")
    return str(found["id"])


@dlq.command("list")
@click.option("--destination", "destination", help="Only this destination (id or name).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@_url_option
@_key_option
def dlq_list(destination: str | None, limit: int, url: str, api_key: str | None) -> None:
    """List dead deliveries, newest first: id, destination, key, attempts, last error."""
    client = _Client(url, api_key)
    destination_id = _destination_id(client, destination)
    shown = 0
    for items in _dead_pages(client, destination_id, min(limit, 1000)):
        for d in items:
            if shown >= limit:
                click.echo(f"(more: raise --limit above {limit})", err=True)
                return
            click.echo(
                f"{d['id']}  {d['destination_id']}  {d['key'] or '-':16} "
                f"{d['attempt_count']:>3}  {d['updated_at']}  {d['last_error'] or ''}"
            )
            shown += 1
    if shown == 0:
        click.echo("no dead deliveries", err=True)


@dlq.command("retry")
@click.argument("ids", nargs=-1)
@click.option("--destination", help="Retry every dead delivery of this destination.")
@click.option("--all", "everything", is_flag=True, help="Retry every dead delivery.")
@_url_option
@_key_option
def dlq_retry(
    ids: tuple[str, ...],
    destination: str | None,
    everything: bool,
    url: str,
    api_key: str | None,
) -> None:
    """Send dead deliveries again: the IDS given, or all of a --destination, or --all.

    Each gets a fresh run of attempts; in a fifo destination it goes back into its lane.
    A progress bar shows long runs (on a terminal).
    """
    if bool(ids) + bool(destination) + everything != 1:
        raise click.UsageError("give delivery ids, or --destination, or --all (one of them)")
    client = _Client(url, api_key)
    if ids:
        batches: Iterator[list[str]] = iter([list(ids)])
        total = len(ids)
    else:
        destination_id = _destination_id(client, destination)
        # Collect ids first: retrying while paging would move the cursor under our feet.
        found = [d["id"] for items in _dead_pages(client, destination_id, 1000) for d in items]
        # The dead list is newest first; the oldest go first so that an earlier batch never
        # starts a lane on younger deliveries than a later batch brings back.
        found.reverse()
        batches = (found[i : i + RETRY_BATCH] for i in range(0, len(found), RETRY_BATCH))
        total = len(found)
    retried, missing, conflicts = 0, 0, 0
    with click.progressbar(length=total, label="retrying", file=sys.stderr) as bar:
        for batch in batches:
            answer = client.call("POST", "/v1/deliveries/retry", {"ids": batch})
            retried += answer["retried"]
            missing += len(answer["not_found"])
            conflicts += len(answer["conflicts"])
            bar.update(len(batch))
    click.echo(
        f"retried {retried}"
        + (f", {missing} not found" if missing else "")
        + (f", {conflicts} already pending" if conflicts else "")
    )
    if ids and retried < len(ids):
        sys.exit(1)


@main.command()
@click.option("--events", default=10_000, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option(
    "--concurrency",
    default=32,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Concurrent clients, each with one request in flight.",
)
@click.option(
    "--batch-size",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="1 posts single events; more posts batches of this many.",
)
@click.option("--payload-bytes", default=256, show_default=True, type=click.IntRange(16, 1 << 20))
@click.option("--topic", default="bench.load", show_default=True)
@click.option(
    "--keys", default=1000, show_default=True, type=click.IntRange(1), help="Distinct keys (lanes)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_url_option
@_key_option
def bench(
    events: int,
    concurrency: int,
    batch_size: int,
    payload_bytes: int,
    topic: str,
    keys: int,
    as_json: bool,
    url: str,
    api_key: str | None,
) -> None:
    """Publish --events events to a running Tidings as fast as it takes them; print
    events/s and request latency.

    The events are real: they are stored, and every destination subscribed to --topic
    gets them. Point it at a scratch instance, or use a topic nothing subscribes to.
    Stops at the first 4xx answer; exits 1 if any event was not accepted.
    The repository's bench/ folder holds the benchmarks against baselines.
    """
    from tidings.loadgen import LoadPlan, run_load, summary  # aiohttp: only for this command

    plan = LoadPlan(events, concurrency, batch_size, payload_bytes, topic, keys)
    # Redraw about 200 times in all: each redraw is a write on the loop doing the sending.
    steps = max(1, events // 200)
    with click.progressbar(
        length=events, label="publishing", file=sys.stderr, update_min_steps=steps
    ) as bar:
        result = asyncio.run(run_load(url, api_key, plan, bar.update))
    report = summary(plan, result)
    if as_json:
        _print(report)
    else:
        lat = report["latency_ms"]
        assert isinstance(lat, dict)
        click.echo(
            f"{result.accepted} events in {result.elapsed_s:.2f} s: "
            f"{report['events_per_s']:,} events/s ({len(result.latencies_ms)} requests of "
            f"{batch_size}, {concurrency} concurrent); latency p50 {lat['p50']} ms, "
            f"p95 {lat['p95']} ms, p99 {lat['p99']} ms, max {lat['max']} ms"
        )
        if result.failures and not result.stopped:
            failed = ", ".join(
                f"{n} x {s or 'no answer'}" for s, n in sorted(result.failures.items())
            )
            click.echo(f"failed requests: {failed}; first: {result.first_error}", err=True)
    if result.stopped:
        click.echo(result.stopped, err=True)
    if result.accepted < events:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
