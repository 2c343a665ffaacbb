"""`tidings bench`: publish many events to a running Tidings and measure how fast it
takes them. The load generator itself is tidings.loadgen (aiohttp, imported only here)."""

from __future__ import annotations

import asyncio
import sys

import click

from tidings.commands.client import Client
from tidings.commands.common import client_command, note, print_json


@click.command(short_help="Measure how fast a running Tidings takes events.")
@click.option("--events", default=10_000, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option(
    "--concurrency",
    default=32,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Concurrent clients, each with one request in flight.",
)
@click.option(
    "--batch-size",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="1 posts single events; more posts batches of this many.",
)
@click.option("--payload-bytes", default=256, show_default=True, type=click.IntRange(16, 1 << 20))
@click.option("--topic", default="bench.load", show_default=True)
@click.option(
    "--keys", default=1000, show_default=True, type=click.IntRange(1), help="Distinct keys (lanes)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@client_command
def bench(
    client: Client,
    events: int,
    concurrency: int,
    batch_size: int,
    payload_bytes: int,
    topic: str,
    keys: int,
    as_json: bool,
) -> None:
    """Publish --events events to a running Tidings as fast as it takes them; print
    events/s and request latency.

    The events are real: they are stored, and every destination subscribed to --topic
    gets them. Point it at a scratch instance, or use a topic nothing subscribes to.
    Stops at the first 4xx answer; exits 1 if any event was not accepted.
    The repository's bench/ folder holds the benchmarks against baselines.
    """
    from tidings.loadgen import LoadPlan, run_load, summary  # aiohttp: only for this command

    plan = LoadPlan(events, concurrency, batch_size, payload_bytes, topic, keys)
    # Redraw about 200 times in all: each redraw is a write on the loop doing the sending.
    steps = max(1, events // 200)
    with click.progressbar(
        length=events, label="publishing", file=sys.stderr, update_min_steps=steps
    ) as bar:
        result = asyncio.run(run_load(client.url, client.api_key, plan, bar.update))
    report = summary(plan, result)
    if as_json:
        print_json(report)
    else:
        lat = report["latency_ms"]
        assert isinstance(lat, dict)
        click.echo(
            f"{result.accepted} events in {result.elapsed_s:.2f} s: "
            f"{report['events_per_s']:,} events/s ({len(result.latencies_ms)} requests of "
            f"{batch_size}, {concurrency} concurrent); latency p50 {lat['p50']} ms, "
            f"p95 {lat['p95']} ms, p99 {lat['p99']} ms, max {lat['max']} ms"
        )
        if result.failures and not result.stopped:
            failed = ", ".join(
                f"{n} x {s or 'no answer'}" for s, n in sorted(result.failures.items())
            )
            note(f"failed requests: {failed}; first: {result.first_error}")
    if result.stopped:
        note(result.stopped)
    if result.accepted < events:
        sys.exit(1)
