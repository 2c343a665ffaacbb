"""The `tidings` command line: the group, and the server roles (`serve`, `api`,
`worker`), which run in this process.

The client commands, which talk to a running Tidings over its HTTP API, are in
tidings.commands; this module only adds them to the group.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from tidings import __version__
from tidings.commands import register
from tidings.config import ConfigError, Settings, load_settings, settings_help


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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tidings")
def main() -> None:
    """Tidings: durable event fan-out to signed HTTP webhooks, Redis and NATS buses,
    users' inboxes and WebSockets, and pull groups leased by consumers, at least once,
    in order per key, with retries, dead letters and replay.

    `serve` runs it (API and delivery workers in one process, SQLite in ./tidings.db by
    default); `api` and `worker` run the two halves apart. The other commands talk to a
    running Tidings: --url (TIDINGS_URL, default http://127.0.0.1:8080) and --api-key
    (TIDINGS_API_KEY) on each. They print tables with a header row; --json prints the
    API's JSON. `tidings COMMAND --help` for each.
    """


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


@main.command(
    epilog=settings_help(), short_help="Run Tidings: the HTTP API and the delivery workers."
)
@_server_options
def serve(host: str | None, port: int | None, database_url: str | None) -> None:
    """Run every role in one process: the HTTP API and the delivery workers.

    With no configuration at all it stores everything in ./tidings.db (SQLite) and
    listens on 127.0.0.1:8080.
    """
    _serve(frozenset({"api", "worker"}), host, port, database_url)


@main.command(epilog=settings_help(), short_help="Run the HTTP API only.")
@_server_options
def api(host: str | None, port: int | None, database_url: str | None) -> None:
    """Run the HTTP API only (ingest, management), without delivery workers."""
    _serve(frozenset({"api"}), host, port, database_url)


@main.command(epilog=settings_help(), short_help="Run delivery workers only (no HTTP API).")
@click.option("--database-url", help="Overrides TIDINGS_DATABASE_URL.")
def worker(database_url: str | None) -> None:
    """Run delivery workers only (no HTTP API). Start as many as you like on one database:
    leases keep them from sending the same delivery twice at once."""
    _serve(frozenset({"worker"}), None, None, database_url)


register(main)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
