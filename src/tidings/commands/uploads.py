"""`tidings upload FILE`, `tidings ingest FILE...` and `tidings uploads show ID`: CSV or
JSON-lines files of rows sent as the raw body of `POST /v1/uploads`, one event per good
row.

Owns streaming a file (never read whole into memory, but for stdin), waiting for a
large upload the server reads in the background (polling `GET /v1/uploads/{id}`), the
progress on stderr (`ingest`: rows sent and read, rows/s, ETA), and printing reports.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import click

from tidings.clitable import Column
from tidings.commands.client import Client, CliError, api_json
from tidings.commands.common import (
    Progress,
    client_command,
    json_option,
    note,
    print_detail,
)

UPLOAD_TIMEOUT_S = 600.0  # per socket operation while a large file goes up
CHUNK = 1 << 16  # bytes read from the file per send
POLL_S = 0.5
FINISHED = ("done", "failed")
BAD_COLUMNS = [Column("LINE", "line", align="right"), Column("REASON", "reason", most=100)]


def print_report(report: dict[str, Any], as_json: bool) -> None:
    print_detail(report, as_json, "bad", BAD_COLUMNS, "bad rows (the first 100)", always=False)


def _chunks(handle: BinaryIO, progress: Progress | None) -> Iterator[bytes]:
    """A binary file's bytes, CHUNK at a time, each advancing a progress count by the
    lines it holds."""
    while data := handle.read(CHUNK):
        if progress is not None:
            progress.advance(data.count(b"\n"))
        yield data


def _lines_in(path: Path) -> int:
    """The file's lines (its rows, near enough: a header, blank lines), read in blocks."""
    lines = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
    return lines


def _send(
    client: Client,
    file: Path,
    query: dict[str, str],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """POST one file (or stdin for `-`) as the raw body; answer the upload's report."""
    asked: dict[str, Any] = {
        "name": query.get("name"),
        "message": query.get("message"),
        "format": query.get("format"),
        "timeout_s": max(client.timeout, UPLOAD_TIMEOUT_S),
    }
    if str(file) == "-":
        report = client.sdk.upload(sys.stdin.buffer.read(), **asked)
        return api_json(report)  # type: ignore[no-any-return]
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise click.BadParameter(f"cannot read {file}: {exc.strerror}", param_hint="FILE") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        report = client.sdk.upload(_chunks(handle, progress), **asked, content_length=size)
    return api_json(report)  # type: ignore[no-any-return]


def _wait(
    client: Client,
    report: dict[str, Any],
    timeout_s: float,
    total: int | None = None,
    rate_unit: str | None = None,
) -> dict[str, Any]:
    """Poll a queued upload until the server has read it all (or failed)."""
    upload_id = report["upload_id"]
    deadline = time.monotonic() + timeout_s
    progress = Progress(f"reading {report['file']}, lines read", total, rate_unit=rate_unit)
    while report["state"] not in FINISHED:
        if time.monotonic() > deadline:
            progress.finish()
            raise CliError(
                f"{upload_id} is still {report['state']} after {timeout_s:g} s: "
                f"`tidings uploads show {upload_id}` shows how far it got"
            )
        time.sleep(POLL_S)
        seen = progress.done
        report = api_json(client.sdk.get_upload(upload_id))
        progress.advance(max(0, int(report["last_line"]) - seen))
    progress.finish()
    return report


@click.command(short_help="Ingest a CSV or JSON-lines file: an event per row.")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--name", help="The file's name in events and the report (default: FILE's).")
@click.option("--message", help="The message of rows that have none (bare user ids).")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "jsonl"]),
    help="Default: by the name's suffix (.jsonl, .ndjson), else csv.",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="A large file is read in the background: wait until it is read.",
)
@click.option(
    "--timeout",
    "timeout_s",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds to wait for that.",
)
@json_option
@client_command
def upload(
    client: Client,
    file: Path,
    name: str | None,
    message: str | None,
    file_format: str | None,
    wait: bool,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Ingest a file of rows (CSV `user_id[,message]`, or JSON lines), one event per
    good row, and print its report: rows, events, duplicates, bad rows.

    Uploading the same file again creates nothing new (its rows count as duplicates).
    FILE may be `-` for stdin.
    """
    stdin = str(file) == "-"
    given = {
        "name": name if name is not None or stdin else file.name,
        "message": message,
        "format": file_format,
    }
    report = _send(client, file, {k: v for k, v in given.items() if v is not None})
    if wait and report["state"] not in FINISHED:
        if not as_json:
            note(f"{report['upload_id']}: {report['state']}, read in the background")
        report = _wait(client, report, timeout_s)
    print_report(report, as_json)
    if report["state"] == "failed":
        sys.exit(1)


@click.command(short_help="Ingest files of rows, with progress: rows/s and ETA.")
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("--message", help="The message of rows that have none (bare user ids).")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "jsonl"]),
    help="Default: by each name's suffix (.jsonl, .ndjson), else csv.",
)
@click.option(
    "--timeout",
    "timeout_s",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds to wait for each file read in the background.",
)
@json_option
@client_command
def ingest(
    client: Client,
    files: tuple[Path, ...],
    message: str | None,
    file_format: str | None,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Ingest each FILE (CSV `user_id[,message]` rows or JSON lines) as `upload` does,
    one after the other, showing rows sent and read with their rate and an ETA, and
    print each report, then the totals. Files already ingested add nothing (their rows
    count as duplicates).
    """
    reports = []
    for file in files:
        total = _lines_in(file)
        query = {"name": file.name, "message": message, "format": file_format}
        sending = Progress(f"sending {file.name}, lines", total, rate_unit="rows")
        report = _send(client, file, {k: v for k, v in query.items() if v is not None}, sending)
        sending.finish()
        if report["state"] not in FINISHED:
            report = _wait(client, report, timeout_s, total, rate_unit="rows")
        if not as_json:
            print_report(report, False)
        reports.append(report)
    if as_json:
        click.echo(json.dumps(reports, indent=2))
    else:
        sums = {
            k: sum(int(r[k]) for r in reports) for k in ("rows", "events", "duplicates", "bad_rows")
        }
        click.echo(
            f"{len(reports)} files: {sums['rows']} rows, {sums['events']} new events, "
            f"{sums['duplicates']} duplicates, {sums['bad_rows']} bad rows"
        )
    if any(r["state"] == "failed" for r in reports):
        sys.exit(1)


@click.group(short_help="Show an upload's progress and report.")
def uploads() -> None:
    """Uploaded files: how far the reading of one got, and its report."""


@uploads.command()
@click.argument("upload_id", metavar="ID")
@json_option
@client_command
def show(client: Client, upload_id: str, as_json: bool) -> None:
    """Show an upload's state and report.

    The state is queued, reading, done or failed.
    """
    print_report(api_json(client.sdk.get_upload(upload_id)), as_json)
