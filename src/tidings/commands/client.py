"""The CLI's HTTP client of a running Tidings, and the one-line errors it ends with.

Owns requests (JSON, or a file as the raw body), paging a list, and turning what goes
wrong into `CliError`: `tidings: <code>: <message>` from the API's JSON error body, or
a sentence naming the URL (and TIDINGS_URL) when nothing answers. Blocking urllib: the
CLI runs one request at a time and has no event loop. Must never print anything but
that error line.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import IO, Any

import click

TIMEOUT_S = 30.0
PAGE_MOST = 1000  # the API's largest page
EXAMPLE_URL = "http://127.0.0.1:8080"


class CliError(click.ClickException):
    """A failure shown as one line on stderr, `tidings: ...`, exit code 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"tidings: {self.format_message()}", err=True)


def quote(ref: str) -> str:
    """An id or a name as one path segment."""
    return urllib.parse.quote(ref, safe="")


def _error_of(status: int, raw: bytes, has_key: bool) -> CliError:
    try:
        err = json.loads(raw)["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        text = raw[:200].decode("utf-8", "replace").strip() or "(no body)"
        return CliError(f"HTTP {status}: {' '.join(text.split())}")
    field = err.get("field")
    if field and str(field) not in message:
        message += f" (field {field})"
    if status == 401:
        message += (
            "; check TIDINGS_API_KEY (or --api-key)"
            if has_key
            else "; set TIDINGS_API_KEY (or pass --api-key)"
        )
    return CliError(f"{code}: {message}")


class Client:
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

    def _unreachable(self, reason: object) -> CliError:
        why = str(getattr(reason, "strerror", None) or reason).lower()
        return CliError(
            f"cannot reach Tidings at {self.url} ({why}): is it running? "
            "Point --url or TIDINGS_URL at it"
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | IO[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The answer's JSON (None for an empty body, as a 204's). `body` is sent as
        JSON; `data` (bytes or a binary file, with its Content-Length in `headers`) as
        it is."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        if self.api_key:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers=all_headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise _error_of(exc.code, exc.read(), self.api_key is not None) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise self._timed_out() from None
            raise self._unreachable(exc.reason) from None
        except TimeoutError:
            raise self._timed_out() from None
        except (ConnectionError, OSError) as exc:  # reset or closed mid-answer
            raise self._unreachable(exc) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise CliError(
                f"the answer of {self.url}{path} is not JSON: is --url (TIDINGS_URL) a Tidings?"
            ) from None

    def _timed_out(self) -> CliError:
        return CliError(f"no answer from Tidings at {self.url} within {self.timeout:g} s")

    def get(self, path: str, query: dict[str, str] | None = None) -> Any:
        return self.request("GET", path + ("?" + urllib.parse.urlencode(query) if query else ""))

    def page(
        self, path: str, query: dict[str, str], size: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """(items, next cursor) of one page of a list."""
        asked = {**query, "limit": str(size)}
        if cursor:
            asked["cursor"] = cursor
        answer = self.get(path, asked)
        return answer["items"], answer["next"]

    def pages(
        self, path: str, query: dict[str, str], cursor: str | None = None, size: int = PAGE_MOST
    ) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """(items, next cursor) of each page of a list, from `cursor` to the end."""
        while True:
            items, cursor = self.page(path, query, size, cursor)
            yield items, cursor
            if not cursor:
                return

    def collect(
        self,
        path: str,
        query: dict[str, str],
        limit: int | None,
        cursor: str | None = None,
        on_page: Callable[[int], None] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to `limit` items (None: all) from `cursor` on, and the cursor after them.

        Asks pages of at most what is still wanted, so that the cursor returned starts
        exactly after the last item returned."""
        items: list[dict[str, Any]] = []
        while limit is None or len(items) < limit:
            size = PAGE_MOST if limit is None else min(PAGE_MOST, limit - len(items))
            page, cursor = self.page(path, query, size, cursor)
            items.extend(page)
            if on_page is not None:
                on_page(len(page))
            if not cursor:
                break
        return items, cursor
