"""The CLI's client commands: they talk to a running Tidings over its HTTP API.

One module per resource (events, deliveries, destinations, uploads, bench); `register`
adds them all to the `tidings` group. Shared options and output are in `common`, HTTP
and its one-line errors in `client`, table formatting in tidings.clitable.
"""

from __future__ import annotations

import click

from tidings.commands.bench import bench
from tidings.commands.consume import consume
from tidings.commands.deliveries import deliveries, dlq
from tidings.commands.destinations import destinations
from tidings.commands.events import events, publish
from tidings.commands.uploads import ingest, upload, uploads

COMMANDS: tuple[click.Command, ...] = (
    publish,
    events,
    destinations,
    deliveries,
    dlq,
    upload,
    ingest,
    uploads,
    bench,
    consume,
)


def register(group: click.Group) -> None:
    for command in COMMANDS:
        group.add_command(command)
