"""`tidings deliveries list|show|retry|purge` and `tidings dlq list|retry`: one event's
trip to one destination, its attempts, and sending it again.

Owns those commands' options and output. Retrying many goes 500 ids per
`POST /v1/deliveries/retry`, oldest first, with progress on stderr.
"""

from __future__ import annotations

import sys

import click

from tidings.clitable import Column
from tidings.commands.client import PAGE_MOST, Client, Fetch, api_json
from tidings.commands.common import (
    Progress,
    client_command,
    json_option,
    list_options,
    note,
    print_detail,
    print_list,
)
from tidings.model import DELIVERY_STATES

RETRY_BATCH = 500  # ids per POST /v1/deliveries/retry
COLUMNS = [
    Column("ID", "id"),
    Column("EVENT", "event_id"),
    Column("DESTINATION", "destination_id"),
    Column("KEY", "key", most=20),
    Column("STATE", "state"),
    Column("ATTEMPTS", "attempt_count", align="right"),
    Column("UPDATED", "updated_at", time=True),
    Column("LAST ERROR", "last_error", most=48),
]
EVENT_DELIVERY_COLUMNS = [
    Column("ID", "id"),
    Column("DESTINATION", "destination_id"),
    Column("STATE", "state"),
    Column("ATTEMPTS", "attempt_count", align="right"),
    Column("NEXT ATTEMPT", "next_attempt_at", time=True),
    Column("LAST ERROR", "last_error", most=60),
]
DEAD_COLUMNS = [
    Column("ID", "id"),
    Column("DESTINATION", "destination_id"),
    Column("KEY", "key", most=20),
    Column("ATTEMPTS", "attempt_count", align="right"),
    Column("DIED", "updated_at", time=True),
    Column("LAST ERROR", "last_error", most=60),
]
ATTEMPT_COLUMNS = [
    Column("AT", "at", time=True),
    Column("OUTCOME", "outcome"),
    Column("STATUS", "status_code", align="right"),
    Column("LATENCY MS", "latency_ms", align="right"),
    Column("ERROR", "error", most=60),
    Column("RESPONSE", "response_body", most=40),
]
_destination = click.option("--destination", help="Only this destination (id or name).")


def _lister(
    client: Client,
    destination_id: str | None,
    state: str | None = None,
    event_id: str | None = None,
) -> Fetch:
    """One page of `GET /v1/deliveries` with these filters, by (size, cursor)."""
    return lambda size, after: client.sdk.list_deliveries(
        destination_id=destination_id, state=state, event_id=event_id, limit=size, cursor=after
    )


def retry_ids(client: Client, ids: list[str]) -> tuple[int, int, int]:
    """Retry these deliveries, RETRY_BATCH at a time, with progress on stderr when
    there is more than one batch: (retried, not found, already pending)."""
    retried, missing, conflicts = 0, 0, 0
    progress = Progress("retrying", total=len(ids)) if len(ids) > RETRY_BATCH else None
    for i in range(0, len(ids), RETRY_BATCH):
        batch = ids[i : i + RETRY_BATCH]
        answer = client.sdk.retry_deliveries(batch)
        retried += answer.retried
        missing += len(answer.not_found)
        conflicts += len(answer.conflicts)
        if progress is not None:
            progress.advance(len(batch))
    if progress is not None:
        progress.finish()
    return retried, missing, conflicts


def _print_retried(retried: int, missing: int, conflicts: int) -> None:
    click.echo(
        f"retried {retried}"
        + (f", {missing} not found" if missing else "")
        + (f", {conflicts} already pending" if conflicts else "")
    )


@click.group(short_help="List, show, retry and purge deliveries.")
def deliveries() -> None:
    """Deliveries (one event to one destination): list, show with attempts, retry, purge."""


@deliveries.command("list")
@_destination
@click.option("--state", type=click.Choice(DELIVERY_STATES), help="Only deliveries in this state.")
@click.option("--event", "event_id", metavar="ID", help="Only the deliveries of this event.")
@list_options
@json_option
@client_command
def list_(
    client: Client,
    destination: str | None,
    state: str | None,
    event_id: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List deliveries, newest first."""
    print_list(
        client,
        _lister(client, destination, state, event_id),
        limit=limit,
        cursor=cursor,
        as_json=as_json,
        columns=COLUMNS,
        what="deliveries",
    )


@deliveries.command()
@click.argument("delivery_id", metavar="ID")
@json_option
@client_command
def show(client: Client, delivery_id: str, as_json: bool) -> None:
    """Show one delivery and its attempts."""
    found = api_json(client.sdk.get_delivery(delivery_id))
    print_detail(found, as_json, "attempts", ATTEMPT_COLUMNS)


@deliveries.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@client_command
def retry(client: Client, ids: tuple[str, ...]) -> None:
    """Send deliveries again, each with a fresh run of attempts.

    Dead, delivered or scheduled ones; exits 1 unless every one was retried.
    """
    counts = retry_ids(client, list(ids))
    _print_retried(*counts)
    if counts[0] < len(ids):
        sys.exit(1)


@deliveries.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@client_command
def purge(client: Client, ids: tuple[str, ...]) -> None:
    """Remove dead deliveries for good.

    A lane they block (on_dead block) moves on.
    """
    for delivery_id in ids:
        client.sdk.purge_delivery(delivery_id)
        click.echo(f"purged {delivery_id}")


@click.group(short_help="Dead letters: list them, send them again.")
def dlq() -> None:
    """Dead letters: list the dead deliveries and send them again."""


@dlq.command("list")
@_destination
@list_options
@json_option
@client_command
def dlq_list(
    client: Client, destination: str | None, limit: int, cursor: str | None, as_json: bool
) -> None:
    """List dead deliveries, newest first."""
    print_list(
        client,
        _lister(client, destination, state="dead"),
        limit=limit,
        cursor=cursor,
        as_json=as_json,
        columns=DEAD_COLUMNS,
        what="dead deliveries",
    )


@dlq.command("retry")
@click.argument("ids", nargs=-1, metavar="[ID...]")
@click.option("--destination", help="Every dead delivery of this destination (id or name).")
@click.option("--all", "everything", is_flag=True, help="Every dead delivery.")
@click.option("--page-size", default=PAGE_MOST, hidden=True, type=click.IntRange(1, PAGE_MOST))
@client_command
def dlq_retry(
    client: Client,
    ids: tuple[str, ...],
    destination: str | None,
    everything: bool,
    page_size: int,
) -> None:
    """Send dead deliveries again.

    The IDs given, or all of a --destination, or --all. Each gets a fresh run of
    attempts, oldest first; in a fifo destination it goes back into its lane. Progress
    goes to stderr.
    """
    if bool(ids) + bool(destination) + everything != 1:
        raise click.UsageError("give delivery ids, or --destination, or --all (one of them)")
    if ids:
        found = list(ids)
    else:
        # Every id first: retrying while paging would move the cursor under our feet.
        finding = Progress("finding dead deliveries")
        found = []
        for page in client.pages(_lister(client, destination, state="dead"), size=page_size):
            found.extend(d.id for d in page.items)
            finding.advance(len(page.items))
        finding.finish()
        # The list is newest first; the oldest go first so that an earlier batch never
        # starts a lane on younger deliveries than a later batch brings back.
        found.reverse()
    counts = retry_ids(client, found)
    _print_retried(*counts)
    if ids and counts[0] < len(ids):
        sys.exit(1)
    if not found:
        note("no dead deliveries")
