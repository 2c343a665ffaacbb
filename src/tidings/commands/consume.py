"""`tidings consume MODULE:ATTRIBUTE`: run a `tidings.Consumer` defined in the user's code.

Owns finding the Consumer (the current directory is importable, as for `python -m`),
the options that override its connection and concurrency, and logging to stderr. The
consuming itself is the SDK's (`Consumer.run`: stops gracefully on SIGTERM/SIGINT).
"""

from __future__ import annotations

import logging
import os
import sys

import click

from tidings.commands.client import CliError
from tidings.sdk._calls import DEFAULT_URL
from tidings.sdk._consumer import load


@click.command(short_help="Run a Consumer's handlers (MODULE:ATTRIBUTE).")
@click.argument("target", metavar="MODULE:ATTRIBUTE")
@click.option(
    "--url",
    envvar="TIDINGS_URL",
    show_envvar=True,
    default=DEFAULT_URL,
    show_default=True,
    help="Base URL of the running Tidings (replaces the Consumer's own).",
)
@click.option("--api-key", envvar="TIDINGS_API_KEY", show_envvar=True, help="The API key.")
@click.option(
    "--concurrency", type=click.IntRange(1), help="Handlers at once (default: the Consumer's)."
)
@click.option("--batch", type=click.IntRange(1, 1000), help="Most leases per call.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def consume(
    target: str,
    url: str | None,
    api_key: str | None,
    concurrency: int | None,
    batch: int | None,
    log_level: str,
) -> None:
    """Run the tidings.Consumer named by MODULE:ATTRIBUTE until SIGTERM or SIGINT.

    Example: tidings consume blog.consumers:consumer
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        consumer = load(target)
    except (ImportError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if url != DEFAULT_URL or consumer.url is None:
        consumer.url = url
    if api_key is not None:
        consumer.api_key = api_key
    if concurrency is not None:
        consumer.concurrency = concurrency
    if batch is not None:
        consumer.batch = batch
    consumer.run()
