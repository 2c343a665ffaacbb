"""What every client command shares: `--url`, `--api-key`, `--json`, paging options,
printing a list or a record, and progress on stderr.

Owns the spelling of the shared options (one `--url` everywhere, from TIDINGS_URL) and
where output goes: results on stdout (a table with a header row, or `--json`), notes and
progress on stderr. Formatting itself is tidings.clitable's; calls are the SDK's
(through commands.client).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

import click

from tidings import TidingsError
from tidings.clitable import Column, rate_and_eta, record, table
from tidings.commands.client import Client, CliError, Fetch

DEFAULT_URL = "http://127.0.0.1:8080"
LIST_DEFAULT = 100
LIST_MOST = 100_000
Command = Callable[..., Any]


def client_command(fn: Command) -> Command:
    """Adds `--url` and `--api-key` and passes `client` (a Client of them) to `fn`."""

    @functools.wraps(fn)
    def run(*args: Any, url: str, api_key: str | None, **kwargs: Any) -> Any:
        client = Client(url, api_key)
        try:
            return fn(*args, client=client, **kwargs)
        except TidingsError as exc:
            raise client.error(exc) from None
        except (KeyError, TypeError, AttributeError) as exc:
            # An answer without the fields of the API: a server that is not Tidings.
            raise CliError(
                f"unexpected answer from {url} ({type(exc).__name__}: {exc}): "
                "is --url (TIDINGS_URL) a Tidings of this version?"
            ) from None
        except BrokenPipeError:
            # `tidings events list | head`: the reader left; no traceback, nothing more.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        finally:
            client.close()

    run = click.option(
        "--api-key",
        envvar="TIDINGS_API_KEY",
        show_envvar=True,
        help="The API key (what `tidings serve` printed on its first start).",
    )(run)
    return click.option(
        "--url",
        envvar="TIDINGS_URL",
        show_envvar=True,
        default=DEFAULT_URL,
        show_default=True,
        help="Base URL of the running Tidings.",
    )(run)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the API's JSON answer instead of a table."
)


def list_options(fn: Command) -> Command:
    fn = click.option(
        "--cursor", help="Start after this point (the cursor a previous page printed)."
    )(fn)
    return click.option(
        "--limit",
        default=LIST_DEFAULT,
        show_default=True,
        type=click.IntRange(1, LIST_MOST),
        help="At most this many (fetched a page of up to 1000 at a time).",
    )(fn)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def note(text: str) -> None:
    """A line for the person, not the pipe: on stderr."""
    click.echo(text, err=True)


def print_list(
    client: Client,
    fetch: Fetch,
    *,
    limit: int,
    cursor: str | None,
    as_json: bool,
    columns: Sequence[Column],
    what: str,
    to_json: Callable[[Any], Any] = lambda v: v,
) -> None:
    """Up to `limit` items of a list as a table (or `--json`, `{"items", "next"}`), and on
    stderr the cursor to go on from when there are more."""
    items, after = client.collect(fetch, limit, cursor)
    if as_json:
        print_json(to_json({"items": items, "next": after}))
    else:
        click.echo(table(items, columns))
        if not items:
            note(f"no {what}")
    if after:
        note(f"more: add --cursor {after} (or raise --limit)")


def print_record(value: dict[str, Any], skip: Iterable[str] = ()) -> None:
    """Every field of an object as `field  value` lines, in the API's order."""
    skipped = set(skip)
    click.echo(record((k, v) for k, v in value.items() if k not in skipped))


def print_section(title: str, rows: list[dict[str, Any]], columns: Sequence[Column]) -> None:
    """A table under a record, after a blank line and its title."""
    click.echo(f"\n{title}:")
    click.echo(table(rows, columns))


def print_detail(
    value: dict[str, Any],
    as_json: bool,
    nested: str,
    columns: Sequence[Column],
    title: str | None = None,
    always: bool = True,
) -> None:
    """One object: `--json`, or its record and then its `nested` list as a table (only
    when that list is not empty, unless `always`)."""
    if as_json:
        print_json(value)
        return
    print_record(value, skip=(nested,))
    rows = value.get(nested) or []
    if rows or always:
        print_section(title or nested, rows, columns)


def body_json(text: str | None, option: str) -> Any:
    """A JSON option's value, or a usage error naming the option."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=option) from None


class Progress:
    """`label: done/total` on stderr while a long run goes: redrawn in place on a
    terminal, else a line at most every `every_s` seconds (and always the last)."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        stream: IO[str] | None = None,
        every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        rate_unit: str | None = None,
    ) -> None:
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s, self.clock = every_s, clock
        self.rate_unit = rate_unit  # set: the rate and an ETA follow the count
        self.started = clock()
        self.shown_at: float | None = None
        self.dirty = False

    def _text(self) -> str:
        text = f"{self.label}: {self.done}" + (f"/{self.total}" if self.total is not None else "")
        if self.rate_unit is not None:
            elapsed = self.clock() - self.started
            text += ", " + rate_and_eta(self.done, self.total, elapsed, self.rate_unit)
            if self.tty:
                text += "\x1b[K"  # the rate's text may shrink: clear what the last one left
        return text

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if self.tty:
            self.stream.write("\r" + self._text())
            self.stream.flush()
            self.dirty = True
        elif self.shown_at is None or now - self.shown_at >= self.every_s:
            self.stream.write(self._text() + "\n")
            self.stream.flush()
            self.shown_at = now
            self.dirty = False
        else:
            self.dirty = True

    def finish(self) -> None:
        if self.tty:
            if self.dirty:
                self.stream.write("\n")
        elif self.dirty or self.shown_at is None:
            self.stream.write(self._text() + "\n")
        self.stream.flush()
        self.dirty = False
