"""The CLI's connection to a running Tidings: a `tidings.Client` (the SDK), and the
one-line errors the CLI ends with.

Owns checking `--url`, turning a `TidingsError` into `CliError` (`tidings: <code>:
<message>` from the API's error body, or a sentence naming the URL and TIDINGS_URL when
nothing answers or something else does), turning the SDK's Structs back into the API's
JSON for printing, and reading a list page after page. HTTP itself, retries included,
is the SDK's. Must never print anything but that error line.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

import click
import msgspec

import tidings
from tidings import Page, TidingsError

TIMEOUT_S = 30.0
PAGE_MOST = 1000  # the API's largest page
EXAMPLE_URL = "http://127.0.0.1:8080"
T = TypeVar("T")
Fetch = Callable[[int, str | None], Page[Any]]  # (page size, cursor) -> one page


class CliError(click.ClickException):
    """A failure shown as one line on stderr, `tidings: ...`, exit code 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"tidings: {self.format_message()}", err=True)


def api_json(value: Any) -> Any:
    """A Struct (or a list of them) as the API's JSON answered it."""
    return msgspec.to_builtins(value)


def cli_error(exc: TidingsError, has_key: bool) -> CliError:
    """The line a failed call ends the command with."""
    if exc.status is None and exc.code == "connection_error":
        return CliError(f"{exc.message}: is it running? Point --url or TIDINGS_URL at it")
    if exc.status is None or exc.code == "http_error":  # a timeout; a proxy's error page
        return CliError(exc.message)
    if exc.code == "not_json":
        return CliError(f"{exc.message}: is --url (TIDINGS_URL) a Tidings?")
    if exc.code == "unexpected_answer":
        return CliError(f"{exc.message}: is --url (TIDINGS_URL) a Tidings of this version?")
    message = exc.message
    if exc.field and exc.field not in message:
        message += f" (field {exc.field})"
    if exc.status == 401:
        message += (
            "; check TIDINGS_API_KEY (or --api-key)"
            if has_key
            else "; set TIDINGS_API_KEY (or pass --api-key)"
        )
    return CliError(f"{exc.code}: {message}")


class Client:
    """`sdk`, the SDK's client of `url`, and what the commands need beside it."""

    def __init__(self, url: str, api_key: str | None, timeout: float = TIMEOUT_S) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(
                f"--url {url!r} is not an http(s) URL: give one like {EXAMPLE_URL} "
                "(or set TIDINGS_URL)"
            )
        self.url = url.rstrip("/")
        self.api_key = api_key or None
        self.timeout = timeout
        # api_key "" rather than None: the CLI's key is only what --api-key/TIDINGS_API_KEY say.
        self.sdk = tidings.Client(self.url, api_key=self.api_key or "", timeout=timeout)

    def close(self) -> None:
        self.sdk.close()

    def error(self, exc: TidingsError) -> CliError:
        return cli_error(exc, self.api_key is not None)

    def pages(
        self, fetch: Fetch, cursor: str | None = None, size: int = PAGE_MOST
    ) -> Iterator[Page[Any]]:
        """Each page of a list, from `cursor` to the end, `size` at a time."""
        while True:
            page = fetch(size, cursor)
            yield page
            if not page.next:
                return
            cursor = page.next

    def collect(
        self,
        fetch: Fetch,
        limit: int | None,
        cursor: str | None = None,
        on_page: Callable[[int], None] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to `limit` items (None: all) from `cursor` on, as JSON, and the cursor
        after them.

        Asks pages of at most what is still wanted, so that the cursor returned starts
        exactly after the last item returned."""
        items: list[dict[str, Any]] = []
        while limit is None or len(items) < limit:
            size = PAGE_MOST if limit is None else min(PAGE_MOST, limit - len(items))
            page = fetch(size, cursor)
            items.extend(api_json(page.items))
            cursor = page.next
            if on_page is not None:
                on_page(len(page.items))
            if not cursor:
                break
        return items, cursor
