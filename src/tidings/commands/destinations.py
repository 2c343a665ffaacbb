"""`tidings destinations ...`: create, list, show, update, pause, resume, rotate-secret,
replay and delete the webhooks events go to.

Owns those commands' options and output. A REF is an id or a name (the API takes
both). The signing secret is printed whole only where it is the point: by `create` and
`rotate-secret`; everywhere else (tables, records, `--json`) it is masked unless
`--show-secret`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from tidings.clitable import Column, mask_secret, masked, plural
from tidings.commands.args import time_arg
from tidings.commands.client import Client, CliError, api_json
from tidings.commands.common import (
    body_json,
    client_command,
    json_option,
    list_options,
    note,
    print_json,
    print_list,
    print_record,
)

COLUMNS = [
    Column("ID", "id"),
    Column("NAME", "name", most=24),
    Column("STATE", "state"),
    Column("ORDERING", "ordering"),
    Column("TOPICS", "topics", most=32),
    Column("URL", "url", most=56),
]
_show_secret = click.option(
    "--show-secret", is_flag=True, help="Print the signing secret whole (it is masked otherwise)."
)


def _label(d: dict[str, Any]) -> str:
    return f"{d['name']} ({d['id']})" if d.get("name") else str(d["id"])


def _secret_hidden(d: dict[str, Any], show_secret: bool) -> dict[str, Any]:
    if show_secret:
        return d
    shown = masked(d)
    assert isinstance(shown, dict)
    if isinstance(d.get("secret"), str):
        shown["secret"] = f"{mask_secret(d['secret'])} (hidden: --show-secret prints it)"
    return shown


@click.group(short_help="Create, list, show, change, pause and replay webhooks.")
def destinations() -> None:
    """Webhooks and what they subscribe to: create, list, show, update, pause, resume,
    rotate-secret, replay, delete. REF is an id or a name."""


@destinations.command("list")
@list_options
@json_option
@_show_secret
@client_command
def list_(client: Client, limit: int, cursor: str | None, as_json: bool, show_secret: bool) -> None:
    """List destinations, newest first."""
    print_list(
        client,
        lambda size, after: client.sdk.list_destinations(limit=size, cursor=after),
        limit=limit,
        cursor=cursor,
        as_json=as_json,
        columns=COLUMNS,
        what="destinations",
        to_json=lambda v: v if show_secret else masked(v),
    )


@destinations.command()
@click.argument("ref")
@json_option
@_show_secret
@client_command
def show(client: Client, ref: str, as_json: bool, show_secret: bool) -> None:
    """Show one destination, its secret masked."""
    found = api_json(client.sdk.get_destination(ref))
    if as_json:
        print_json(found if show_secret else masked(found))
    else:
        print_record(_secret_hidden(found, show_secret))


def _spec_options(creating: bool) -> Callable[[Any], Any]:
    """The options create and update share (each sets one field of the body)."""
    target_help = "The webhook's URL, where events are POSTed." if creating else "A new URL."
    topic_help = (
        "A topic or pattern (`order.*`); repeat for more."
        if creating
        else "The topics, replacing the current ones (repeatable)."
    )
    options = [
        click.option("--target", help=target_help),
        click.option("--topic", "topics", multiple=True, help=topic_help),
        click.option("--name", help="A unique name, usable wherever the id is."),
        click.option(
            "--ordering",
            type=click.Choice(["fifo", "none"]),
            help="fifo: one key at a time, in order; none: in parallel.",
        ),
        click.option(
            "--on-dead",
            type=click.Choice(["skip", "block"]),
            help="What a dead delivery does to its key's lane.",
        ),
        click.option("--filter", "filter_json", help="A payload filter, as JSON."),
        click.option(
            "--max-attempts",
            type=click.IntRange(1, 100),
            help="Sends before a delivery is dead, the first included.",
        ),
        click.option("--alert-url", help="Where alerts about this destination go."),
        click.option(
            "--body", "body_text", help="Any other fields of the body, as JSON (merged in)."
        ),
    ]

    def add(fn: Any) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return add


def _body(
    *,
    target: str | None,
    topics: tuple[str, ...],
    name: str | None,
    ordering: str | None,
    on_dead: str | None,
    filter_json: str | None,
    max_attempts: int | None,
    alert_url: str | None,
    body_text: str | None,
) -> dict[str, Any]:
    extra = body_json(body_text, "--body")
    if extra is not None and not isinstance(extra, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--body")
    body: dict[str, Any] = dict(extra or {})
    if filter_json is not None:
        body["filter"] = body_json(filter_json, "--filter")
    if topics:
        body["topics"] = list(topics)
    for field, value in (
        ("url", target),
        ("name", name),
        ("ordering", ordering),
        ("on_dead", on_dead),
        ("alert_url", alert_url),
    ):
        if value is not None:
            body[field] = value
    if max_attempts is not None:
        body["retry"] = {**body.get("retry", {}), "max_attempts": max_attempts}
    return body


@destinations.command()
@_spec_options(creating=True)
@json_option
@client_command
def create(client: Client, as_json: bool, **options: Any) -> None:
    """Create a webhook destination; prints it with its secret.

    The secret (`whsec_` + base64) signs every request; keep it for your receiver.
    Example: tidings destinations create --name billing --target
    https://example.com/hook --topic 'order.*'
    """
    body = {"kind": "webhook", **_body(**options)}
    if not body.get("url"):
        raise click.UsageError("--target (the webhook's URL) is required; --url is the server's")
    if not body.get("topics"):
        raise click.UsageError("--topic is required (repeat it for more topics)")
    kind, topics = body.pop("kind"), body.pop("topics")
    created = api_json(client.sdk.create_destination(kind, topics, extra=body))
    if as_json:
        print_json(created)
    else:
        print_record(created)
        note("the secret signs every request: give it to your receiver (`show --show-secret`)")


@destinations.command()
@click.argument("ref")
@_spec_options(creating=False)
@json_option
@client_command
def update(client: Client, ref: str, as_json: bool, **options: Any) -> None:
    """Change some fields of a destination.

    The others stay as they are; --max-attempts changes only that field of `retry`.
    """
    body = _body(**options)
    if not body:
        raise click.UsageError("give at least one field to change")
    _print_changed(api_json(client.sdk.update_destination(ref, extra=body)), as_json, "updated")


def _print_changed(d: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        print_json(masked(d))
    else:
        click.echo(f"{verb} {_label(d)}")


@destinations.command()
@click.argument("ref")
@json_option
@client_command
def pause(client: Client, ref: str, as_json: bool) -> None:
    """Stop sending to a destination until `resume`.

    Events published meanwhile still create its deliveries; they wait.
    """
    changed = api_json(client.sdk.update_destination(ref, state="paused"))
    _print_changed(changed, as_json, "paused")


@destinations.command()
@click.argument("ref")
@json_option
@client_command
def resume(client: Client, ref: str, as_json: bool) -> None:
    """Start sending to a paused destination again.

    Also one that paused itself (after TIDINGS_PAUSE_AFTER_FAILURES failed attempts in a
    row, or a 410).
    """
    changed = api_json(client.sdk.update_destination(ref, state="active"))
    _print_changed(changed, as_json, "resumed")


@destinations.command("rotate-secret")
@click.argument("ref")
@json_option
@client_command
def rotate_secret(client: Client, ref: str, as_json: bool) -> None:
    """Give a destination a new signing secret; prints it.

    For 24 h requests carry signatures of the old secret too, so receivers can switch
    over.
    """
    rotated = api_json(client.sdk.rotate_secret(ref))
    if as_json:
        print_json(rotated)
    else:
        print_record({k: rotated[k] for k in ("id", "name", "secret")})
        note("the old secret stays valid for 24 h")


@destinations.command()
@click.argument("ref")
@click.option(
    "--state",
    type=click.Choice(["dead", "delivered"]),
    default="dead",
    show_default=True,
    help="Which deliveries to send again.",
)
@click.option(
    "--since", help="Only those created at or after: ISO-8601, or a time ago (30m, 2h, 7d)."
)
@click.option("--until", help="Only those created before: ISO-8601, or a time ago.")
@json_option
@client_command
def replay(
    client: Client,
    ref: str,
    state: str,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Send a destination's dead (or delivered) deliveries again.

    Oldest first, each with a fresh run of attempts; --since and --until bound when
    they were created.
    """
    now = datetime.now(UTC)
    answer = client.sdk.replay(
        ref,
        state=state,
        since=None if since is None else time_arg(since, now),
        until=None if until is None else time_arg(until, now),
    )
    if as_json:
        print_json(api_json(answer))
    else:
        n = answer.replayed
        click.echo(f"replayed {plural(n, state + ' delivery', state + ' deliveries')}")


@destinations.command()
@click.argument("ref")
@click.option("--yes", is_flag=True, help="Do not ask.")
@client_command
def delete(client: Client, ref: str, yes: bool) -> None:
    """Delete a destination and its deliveries.

    Asks first, unless --yes (which it needs when not at a terminal).
    """
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("not at a terminal: give --yes to delete without asking")
        found = api_json(client.sdk.get_destination(ref))
        if not click.confirm(f"delete {_label(found)} and its deliveries?", err=True):
            raise CliError("not deleted")
        ref = str(found["id"])
    client.sdk.delete_destination(ref)
    click.echo(f"deleted {ref}")
