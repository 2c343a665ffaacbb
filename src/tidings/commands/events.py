"""`tidings publish` and `tidings events list|show|chain`: putting events in, and
reading them back with their deliveries and causation chains.

Owns those commands' options and output; the shapes are the API's (`GET /v1/events`,
`GET /v1/events/{id}`, `GET /v1/events/{id}/chain`).
"""

from __future__ import annotations

import click

from tidings.clitable import Column, plural, table
from tidings.commands.client import Client, api_json
from tidings.commands.common import (
    body_json,
    client_command,
    json_option,
    list_options,
    note,
    print_detail,
    print_json,
    print_list,
)
from tidings.commands.deliveries import EVENT_DELIVERY_COLUMNS

COLUMNS = [
    Column("ID", "id"),
    Column("TOPIC", "topic", most=32),
    Column("KEY", "key", most=24),
    Column("RECEIVED", "received_at", time=True),
    Column("CORRELATION", "correlation_id", most=30),
    Column("PAYLOAD", "payload", most=48),
]
CHAIN_COLUMNS = [
    Column("EVENT", lambda n: "  " * int(n["depth"]) + str(n["id"])),
    Column("TOPIC", "topic", most=32),
    Column("KEY", "key", most=24),
    Column("RECEIVED", "received_at", time=True),
    # Shown when the cause is outside this tree (else the indentation says it).
    Column("CAUSED BY", lambda n: None if n["parent_id"] else n["causation_id"]),
]


@click.command(short_help="Publish one event.")
@click.argument("topic")
@click.option("--key", default="", help="Ordering key: one key's events are delivered in order.")
@click.option("--data", default="null", help="The payload, as JSON.")
@click.option("--idempotency-key", help="Publishing again with the same key creates nothing.")
@click.option("--causation-id", help="The event that caused this one.")
@click.option(
    "--correlation-id", help="The correlation it joins (default: its cause's, looked up)."
)
@click.option(
    "--recipient", "recipients", multiple=True, help="A user id stored with it (repeatable)."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the event's id.")
@json_option
@client_command
def publish(
    client: Client,
    topic: str,
    key: str,
    data: str,
    idempotency_key: str | None,
    causation_id: str | None,
    correlation_id: str | None,
    recipients: tuple[str, ...],
    quiet: bool,
    as_json: bool,
) -> None:
    """Publish one event to TOPIC; every destination subscribed gets it.

    Example: tidings publish order.created --key user-1 --data '{"total": 12}'
    """
    payload = body_json(data, "--data")
    if causation_id is not None and correlation_id is None:
        # As the Consumer does: an event caused by another joins that one's correlation.
        cause = client.sdk.get_event(causation_id)
        correlation_id = cause.correlation_id or cause.id
    accepted = client.sdk.publish(
        topic,
        payload,
        key=key,
        recipients=list(recipients) or None,
        idempotency_key=idempotency_key,
        causation_id=causation_id,
        correlation_id=correlation_id,
    )
    if as_json:
        # The API's answer: whether the key was used before is the status, not a field.
        print_json({k: v for k, v in api_json(accepted).items() if k != "duplicate"})
    elif quiet:
        click.echo(accepted.id)
    else:
        click.echo(f"published {accepted.id} to {plural(accepted.deliveries, 'destination')}")


@click.group(short_help="List events, show one, show its causation chain.")
def events() -> None:
    """Read events: list (by topic, key, correlation), show one, its causation chain."""


@events.command("list")
@click.option("--topic", help="A topic, or a pattern ending in `*` (`order.*`).")
@click.option("--key", help='Only this key (--key "" lists keyless events).')
@click.option("--correlation-id", help="Only this correlation: its root event and followers.")
@list_options
@json_option
@client_command
def list_(
    client: Client,
    topic: str | None,
    key: str | None,
    correlation_id: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List events, newest first."""
    print_list(
        client,
        lambda size, after: client.sdk.list_events(
            topic=topic, key=key, correlation_id=correlation_id, limit=size, cursor=after
        ),
        limit=limit,
        cursor=cursor,
        as_json=as_json,
        columns=COLUMNS,
        what="events",
    )


@events.command()
@click.argument("event_id", metavar="ID")
@json_option
@client_command
def show(client: Client, event_id: str, as_json: bool) -> None:
    """Show one event with its payload and deliveries."""
    event = api_json(client.sdk.get_event(event_id))
    print_detail(event, as_json, "deliveries", EVENT_DELIVERY_COLUMNS)


@events.command()
@click.argument("event_id", metavar="ID")
@click.option(
    "--limit",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="At most this many events (the oldest of the correlation, and ID's causes).",
)
@json_option
@client_command
def chain(client: Client, event_id: str, limit: int, as_json: bool) -> None:
    """Show the causation tree of an event's correlation.

    Each event is indented under the one that caused it, oldest first. The tree is the
    event's correlation (its `correlation_id`, or its own id).
    """
    chain = client.sdk.get_chain(event_id, limit=limit)
    if as_json:
        print_json(api_json(chain))
        return
    click.echo(table(api_json(chain.items), CHAIN_COLUMNS))
    summary = f"correlation {chain.correlation_id}: {plural(len(chain.items), 'event')}"
    if chain.truncated:
        summary += " (truncated: the oldest ones and ID's causes; raise --limit)"
    note(summary)
