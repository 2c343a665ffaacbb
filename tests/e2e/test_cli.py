"""The `tidings` command line against a real server process: each command run as a
subprocess, its output read as a person (tables with a header row, masked secrets,
one-line errors) and its effect checked in the API."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import API_KEY, TidingsProcess, free_port, sdk
from tests.e2e.receiver import Receiver, always, eventually, ok
from tidings.commands.client import api_json

pytestmark = pytest.mark.e2e


def tidings(
    *args: str, url: str, key: str | None = API_KEY, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TIDINGS_URL": url}
    env.pop("TIDINGS_API_KEY", None)
    if key is not None:
        env["TIDINGS_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
    )


def ok_run(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    done = tidings(*args, url=url)
    assert done.returncode == 0, f"tidings {' '.join(args)}: {done.stderr}"
    return done


def rows(table: str) -> list[list[str]]:
    """A table's lines split into cells (on runs of two spaces or more)."""
    return [re.split(r" {2,}", line.strip()) for line in table.splitlines()]


def record_of(text: str) -> dict[str, str]:
    """A record's `field  value` lines as a dict."""
    return dict(line.split(None, 1) for line in text.splitlines())


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tidings: ")
    return lines[0]


@pytest.fixture
def server(tmp_path: Path) -> Any:
    proc = TidingsProcess(tmp_path, f"sqlite:///{tmp_path / 'cli.db'}")
    proc.extra_env.update({"TIDINGS_ALLOW_PRIVATE_TARGETS": "1", "TIDINGS_POLL_INTERVAL_MS": "100"})
    proc.start()
    yield proc
    proc.stop()


def test_destinations_and_publish_through_the_cli(server: TidingsProcess) -> None:
    url = server.url
    created = ok_run(
        "destinations", "create", "--name", "billing", "--target", "https://example.com/h",
        "--topic", "order.*", "--on-dead", "block", "--json", url=url,
    )  # fmt: skip
    destination = json.loads(created.stdout)
    secret = destination["secret"]
    assert secret.startswith("whsec_") and len(secret) > 20
    assert destination["on_dead"] == "block" and destination["url"] == "https://example.com/h"

    # Without --json, create prints the record with the secret whole (it is the moment
    # to copy it).
    second = ok_run(
        "destinations", "create", "--target", "https://example.com/2", "--topic", "a.b", url=url
    )
    record = record_of(second.stdout)
    assert record["secret"].startswith("whsec_") and "…" not in record["secret"]

    listed = ok_run("destinations", "list", url=url)
    table = rows(listed.stdout)
    assert table[0] == ["ID", "NAME", "STATE", "ORDERING", "TOPICS", "URL"]
    assert [destination["id"], "billing", "active", "fifo", "order.*", "https://example.com/h"] in (
        table[1:]
    )
    assert secret not in listed.stdout
    assert secret not in ok_run("destinations", "list", "--json", url=url).stdout

    shown = ok_run("destinations", "show", "billing", url=url)
    assert secret not in shown.stdout
    shown_fields = record_of(shown.stdout)
    assert shown_fields["secret"] == "whsec_… (hidden: --show-secret prints it)"
    assert shown_fields["id"] == destination["id"] and shown_fields["on_dead"] == "block"
    as_json = json.loads(ok_run("destinations", "show", "billing", "--json", url=url).stdout)
    assert as_json["secret"] == "whsec_…" and as_json["id"] == destination["id"]
    revealed = ok_run("destinations", "show", "billing", "--show-secret", url=url)
    assert record_of(revealed.stdout)["secret"] == secret
    whole = json.loads(
        ok_run("destinations", "show", "billing", "--json", "--show-secret", url=url).stdout
    )
    assert whole["secret"] == secret

    published = ok_run(
        "publish", "order.created", "--key", "u1", "--data", '{"total": 12}', url=url
    )
    assert published.stdout.startswith("published evt_")
    assert published.stdout.strip().endswith("to 1 destination")
    quiet = ok_run("publish", "order.created", "-q", url=url).stdout.strip()
    assert quiet.startswith("evt_") and len(quiet.split()) == 1
    accepted = json.loads(ok_run("publish", "order.paid", "--json", url=url).stdout)
    assert accepted["deliveries"] == 1

    bad = tidings("publish", "bad..topic", url=url)
    assert one_error_line(bad).startswith("tidings: invalid_field: topic ")

    unauthorized = tidings("destinations", "list", url=url, key="wrong")
    assert one_error_line(unauthorized) == (
        "tidings: unauthorized: the API key is not valid; check TIDINGS_API_KEY (or --api-key)"
    )
    no_key = tidings("events", "list", url=url, key=None)
    assert "set TIDINGS_API_KEY" in one_error_line(no_key)

    bad_json = tidings("publish", "a.b", "--data", "{nope", url=url)
    assert bad_json.returncode == 2 and "not JSON" in bad_json.stderr


def test_the_old_url_flag_of_create_sends_nothing(server: TidingsProcess) -> None:
    """`--url` is the server's everywhere now; the webhook's is `--target`. The old
    spelling fails before any request, so the API key never goes to a webhook host."""
    done = tidings(
        "destinations", "create", "--url", "http://127.0.0.1:9/hook", "--topic", "a.*",
        url=server.url,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--target (the webhook's URL) is required; --url is the server's" in done.stderr
    assert sdk(server.url).list_destinations().items == []


def test_every_error_is_one_line(server: TidingsProcess) -> None:
    missing = tidings("destinations", "show", "nope", url=server.url)
    assert one_error_line(missing) == "tidings: not_found: no destination 'nope'"
    for args in (
        ("destinations", "pause", "nope"),
        ("destinations", "replay", "nope"),
        ("deliveries", "list", "--destination", "nope"),
        ("dlq", "list", "--destination", "nope"),
    ):
        assert one_error_line(tidings(*args, url=server.url)) == (
            "tidings: not_found: no destination 'nope'"
        ), args
    no_event = tidings("events", "show", "evt_nope", url=server.url)
    assert one_error_line(no_event) == "tidings: not_found: no event 'evt_nope'"
    bad_since = tidings(
        "destinations",
        "create",
        "--name",
        "r",
        "--target",
        "http://127.0.0.1:9/h",
        "--topic",
        "a.b",
        url=server.url,
    )
    assert bad_since.returncode == 0, bad_since.stderr
    assert one_error_line(
        tidings("destinations", "replay", "r", "--since", "soon", url=server.url)
    ) == ("tidings: invalid_field: since must be an ISO-8601 time")

    closed = f"http://127.0.0.1:{free_port()}"
    refused = tidings("events", "list", url=closed)
    line = one_error_line(refused)
    assert line.startswith(f"tidings: cannot reach Tidings at {closed} (connection refused)")
    assert "TIDINGS_URL" in line
    not_a_url = tidings("deliveries", "list", url="localhost:8080")
    assert "TIDINGS_URL" in one_error_line(not_a_url)


def test_pause_resume_rotate_and_delete(server: TidingsProcess) -> None:
    url = server.url
    created = json.loads(
        ok_run(
            "destinations", "create", "--name", "ops", "--target", "http://127.0.0.1:9/h",
            "--topic", "ops.*", "--json", url=url,
        ).stdout
    )  # fmt: skip
    paused = ok_run("destinations", "pause", "ops", url=url)
    assert paused.stdout.strip() == f"paused ops ({created['id']})"
    assert sdk(url).get_destination("ops").state == "paused"
    resumed = json.loads(ok_run("destinations", "resume", "ops", "--json", url=url).stdout)
    assert resumed["state"] == "active" and resumed["secret"] == "whsec_…"
    assert sdk(url).get_destination("ops").state == "active"

    updated = ok_run(
        "destinations", "update", "ops", "--max-attempts", "3", "--topic", "x.y", url=url
    )
    assert updated.stdout.strip() == f"updated ops ({created['id']})"
    now = api_json(sdk(url).get_destination("ops"))
    assert now["retry"]["max_attempts"] == 3 and now["topics"] == ["x.y"]
    assert now["retry"]["initial_ms"] == created["retry"]["initial_ms"]  # merged, not replaced

    rotated = ok_run("destinations", "rotate-secret", "ops", url=url)
    fields = record_of(rotated.stdout)
    assert fields["secret"].startswith("whsec_") and fields["secret"] != created["secret"]
    assert sdk(url).get_destination("ops").secret == fields["secret"]
    assert "24 h" in rotated.stderr

    refused = tidings("destinations", "delete", "ops", url=url, stdin="")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert sdk(url).get_destination("ops").id == created["id"]
    deleted = ok_run("destinations", "delete", "ops", "--yes", url=url)
    assert deleted.stdout.strip() == "deleted ops"
    assert sdk(url).list_destinations().items == []


def test_events_deliveries_and_chains(server: TidingsProcess) -> None:
    url = server.url
    dest = json.loads(
        ok_run(
            "destinations", "create", "--name", "down", "--target", "http://127.0.0.1:9/h",
            "--topic", "shop.*", "--max-attempts", "1", "--ordering", "none", "--json", url=url,
        ).stdout
    )  # fmt: skip
    root = ok_run("publish", "shop.order", "--key", "u1", "--data", '{"n": 1}', "-q", url=url)
    root_id = root.stdout.strip()
    child_id = ok_run(
        "publish", "shop.paid", "--causation-id", root_id, "-q", url=url
    ).stdout.strip()
    grandchild_id = ok_run(
        "publish", "shop.shipped", "--causation-id", child_id, "-q", url=url
    ).stdout.strip()
    ok_run("publish", "other.thing", "--key", "u1", url=url)

    chain = ok_run("events", "chain", grandchild_id, url=url)
    lines = chain.stdout.splitlines()
    assert lines[0].split() == ["EVENT", "TOPIC", "KEY", "RECEIVED", "CAUSED", "BY"]
    assert [ln.split()[0] for ln in lines[1:]] == [root_id, child_id, grandchild_id]
    assert lines[1].startswith(root_id)
    assert lines[2].startswith("  " + child_id)
    assert lines[3].startswith("    " + grandchild_id)
    assert chain.stderr.strip() == f"correlation {root_id}: 3 events"

    listed = ok_run("events", "list", "--correlation-id", root_id, url=url)
    table = rows(listed.stdout)
    assert table[0] == ["ID", "TOPIC", "KEY", "RECEIVED", "CORRELATION", "PAYLOAD"]
    assert sorted(r[0] for r in table[1:]) == sorted([root_id, child_id, grandchild_id])
    by_key = rows(ok_run("events", "list", "--key", "u1", url=url).stdout)
    assert [r[1] for r in by_key[1:]] == ["other.thing", "shop.order"]
    keyless = rows(ok_run("events", "list", "--key", "", url=url).stdout)
    assert {r[0] for r in keyless[1:]} == {child_id, grandchild_id}
    by_topic = json.loads(ok_run("events", "list", "--topic", "shop.*", "--json", url=url).stdout)
    assert [e["topic"] for e in by_topic["items"]] == ["shop.shipped", "shop.paid", "shop.order"]

    # Paging: --limit 2 prints where to go on; --cursor goes on from there.
    first = ok_run("events", "list", "--limit", "2", url=url)
    assert len(rows(first.stdout)) == 3
    cursor = first.stderr.split("--cursor ")[1].split()[0]
    rest = rows(ok_run("events", "list", "--limit", "10", "--cursor", cursor, url=url).stdout)
    assert len(rest) == 3  # header + the 2 oldest of 4

    deliveries = _wait_states(url, dest["id"], {"dead"}, 3)
    shown = ok_run("events", "show", root_id, url=url)
    assert '{"n":1}' in shown.stdout and "\ndeliveries:\n" in shown.stdout
    after = shown.stdout.split("\ndeliveries:\n")[1]
    assert rows(after)[0] == [
        "ID",
        "DESTINATION",
        "STATE",
        "ATTEMPTS",
        "NEXT ATTEMPT",
        "LAST ERROR",
    ]
    assert rows(after)[1][:4] == [
        next(d["id"] for d in deliveries if d["event_id"] == root_id),
        dest["id"],
        "dead",
        "1",
    ]

    dead_list = rows(
        ok_run("deliveries", "list", "--destination", "down", "--state", "dead", url=url).stdout
    )
    assert dead_list[0] == [
        "ID",
        "EVENT",
        "DESTINATION",
        "KEY",
        "STATE",
        "ATTEMPTS",
        "UPDATED",
        "LAST ERROR",
    ]
    assert sorted(r[0] for r in dead_list[1:]) == sorted(d["id"] for d in deliveries)
    of_event = json.loads(
        ok_run("deliveries", "list", "--event", child_id, "--json", url=url).stdout
    )
    assert [d["event_id"] for d in of_event["items"]] == [child_id]

    one = deliveries[0]["id"]
    detail = ok_run("deliveries", "show", one, url=url)
    attempts = rows(detail.stdout.split("\nattempts:\n")[1])
    assert attempts[0] == ["AT", "OUTCOME", "STATUS", "LATENCY MS", "ERROR", "RESPONSE"]
    assert len(attempts) == 2 and "connection refused" in attempts[1][-1] + attempts[1][-2]

    again = ok_run("deliveries", "retry", one, url=url)
    assert again.stdout.strip() == "retried 1"
    missing = tidings("deliveries", "retry", "dlv_nope", url=url)
    assert missing.returncode == 1 and missing.stdout.strip() == "retried 0, 1 not found"

    _wait_states(url, dest["id"], {"dead"}, 3)
    purged = ok_run("deliveries", "purge", one, url=url)
    assert purged.stdout.strip() == f"purged {one}"
    left = sdk(url).list_deliveries(destination_id="down").items
    assert sorted(d.id for d in left) == sorted(d["id"] for d in deliveries if d["id"] != one)


def _wait_states(
    url: str, destination: str, states: set[str], n: int, timeout: float = 20.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = api_json(sdk(url).list_deliveries(destination_id=destination).items)
        if len(items) >= n and all(d["state"] in states for d in items):
            return items
        time.sleep(0.1)
    raise AssertionError(f"not all of {n} deliveries in {states} after {timeout} s: {items}")


async def test_replay_sends_the_dead_again(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    proc = TidingsProcess(tmp_path, f"sqlite:///{tmp_path / 'replay.db'}")
    proc.extra_env.update({"TIDINGS_ALLOW_PRIVATE_TARGETS": "1", "TIDINGS_POLL_INTERVAL_MS": "100"})
    await asyncio.to_thread(proc.start)

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = await asyncio.to_thread(tidings, *args, url=proc.url)
        assert done.returncode == 0, f"{args}: {done.stderr}"
        return done

    try:
        receiver.set("/hook", always(500))
        await cli(
            "destinations", "create", "--name", "flaky", "--target", receiver.url("/hook"),
            "--topic", "r.*", "--max-attempts", "1", "--ordering", "none",
        )  # fmt: skip
        published = [
            (await cli("publish", "r.x", "--key", f"k{i}", "-q")).stdout.strip() for i in range(3)
        ]
        await eventually(
            lambda: len(sdk(proc.url).list_deliveries(state="dead").items) == 3,
            20,
            "3 dead deliveries",
        )
        # Nothing delivered yet: a replay of delivered ones finds none.
        none = await cli("destinations", "replay", "flaky", "--state", "delivered")
        assert none.stdout.strip() == "replayed 0 delivered deliveries"
        # A window in the future holds nothing either.
        future = await cli("destinations", "replay", "flaky", "--since", "2999-01-01T00:00:00Z")
        assert future.stdout.strip() == "replayed 0 dead deliveries"

        receiver.set("/hook", ok())
        replayed = await cli("destinations", "replay", "flaky", "--since", "1h")
        assert replayed.stdout.strip() == "replayed 3 dead deliveries"
        await eventually(
            lambda: receiver.delivered_ids("/hook") == set(published),
            20,
            lambda: f"delivered {receiver.delivered_ids('/hook')}",
        )
        await eventually(
            lambda: {d.state for d in sdk(proc.url).list_deliveries().items} == {"delivered"},
            20,
            "the replayed deliveries delivered",
        )
        again = await cli("destinations", "replay", "flaky", "--state", "delivered", "--json")
        assert json.loads(again.stdout) == {"replayed": 3}
    finally:
        await asyncio.to_thread(proc.stop)
        await receiver.close()


def test_upload_prints_its_report(server: TidingsProcess, tmp_path: Path) -> None:
    url = server.url
    rows_csv = tmp_path / "signups.csv"
    rows_csv.write_text("user_id,message\nu1,hello\nu2,hi there\n,no user\nu3\n")
    first = ok_run("upload", str(rows_csv), url=url)
    report = first.stdout.split("\nbad rows (the first 100):\n")
    fields = record_of(report[0])
    assert fields["state"] == "done" and fields["file"] == "signups.csv"
    assert (fields["rows"], fields["events"], fields["duplicates"], fields["bad_rows"]) == (
        "3", "3", "0", "1",
    )  # fmt: skip
    bad = rows(report[1])
    assert bad[0] == ["LINE", "REASON"] and bad[1][0] == "4"
    events = api_json(sdk(url).list_events(limit=100).items)
    assert sorted(e["key"] for e in events) == ["u1", "u2", "u3"]

    again = json.loads(ok_run("upload", str(rows_csv), "--json", url=url).stdout)
    assert (again["rows"], again["events"], again["duplicates"]) == (3, 0, 3)
    assert len(sdk(url).list_events(limit=100).items) == 3

    piped = tidings("upload", "-", "--name", "more.csv", "--json", url=url, stdin="u4,hey\nu5\n")
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["file"] == "more.csv"
    assert len(sdk(url).list_events(limit=100).items) == 5

    shown = ok_run("uploads", "show", again["upload_id"], url=url)
    assert record_of(shown.stdout.split("\n\n")[0])["upload_id"] == again["upload_id"]

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert one_error_line(tidings("upload", str(empty), url=url)) == (
        "tidings: invalid_field: the file is empty"
    )


def test_a_large_upload_is_waited_for_with_progress(tmp_path: Path) -> None:
    proc = TidingsProcess(tmp_path, f"sqlite:///{tmp_path / 'big.db'}")
    proc.extra_env.update(
        {"TIDINGS_MAX_REQUEST_BYTES": "1024", "TIDINGS_UPLOAD_DIR": str(tmp_path / "spool")}
    )
    proc.start()
    try:
        big = tmp_path / "big.csv"
        big.write_text("".join(f"u{i},hello {i}\n" for i in range(5000)))
        done = ok_run("upload", str(big), url=proc.url)
        fields = record_of(done.stdout)
        assert fields["state"] == "done" and fields["events"] == "5000"
        assert "queued, read in the background" in done.stderr
        assert done.stderr.splitlines()[-1] == "reading big.csv, lines read: 5000"
        queued = json.loads(ok_run("upload", str(big), "--no-wait", "--json", url=proc.url).stdout)
        assert queued["state"] in ("queued", "reading", "done")
    finally:
        proc.stop()


def test_ingest_sends_files_with_rate_and_eta_and_prints_the_totals(tmp_path: Path) -> None:
    proc = TidingsProcess(tmp_path, f"sqlite:///{tmp_path / 'ingest.db'}")
    proc.extra_env.update(
        {"TIDINGS_MAX_REQUEST_BYTES": "1024", "TIDINGS_UPLOAD_DIR": str(tmp_path / "spool")}
    )
    proc.start()
    try:
        big = tmp_path / "big.csv"
        big.write_text("".join(f"u{i}\n" for i in range(3000)))
        small = tmp_path / "small.jsonl"
        small.write_text('{"userId": "j1"}\n{"userId": "j2", "alertMessage": "own"}\nnope\n')
        run = ok_run("ingest", str(big), str(small), "--message", "Server down", url=proc.url)
        assert run.stdout.splitlines()[-1] == (
            "2 files: 3002 rows, 3002 new events, 0 duplicates, 1 bad rows"
        )
        progress = run.stderr.splitlines()
        sent = [line for line in progress if line.startswith("sending big.csv, lines: ")]
        assert sent and sent[-1].startswith("sending big.csv, lines: 3000/3000, ")
        assert "rows/s" in sent[-1]
        read = [line for line in progress if line.startswith("reading big.csv, lines read: ")]
        assert read[-1].startswith("reading big.csv, lines read: 3000/3000, ")
        events = api_json(sdk(proc.url).list_events(topic="file.row", key="j2").items)
        assert events[0]["payload"]["alertMessage"] == "own"
        bare = api_json(sdk(proc.url).list_events(topic="file.row", key="u7").items)
        assert bare[0]["payload"]["alertMessage"] == "Server down"
        again = json.loads(ok_run("ingest", str(small), "--json", url=proc.url).stdout)
        assert [(r["events"], r["duplicates"]) for r in again] == [(2, 0)]  # no message now
        missing = tidings("ingest", str(tmp_path / "nope.csv"), url=proc.url)
        assert missing.returncode == 2
    finally:
        proc.stop()


def test_serve_creates_an_api_key_once_and_prints_it_once(tmp_path: Path) -> None:
    proc = TidingsProcess(tmp_path, f"sqlite:///{tmp_path / 'key.db'}")
    # An empty TIDINGS_API_KEY counts as unset: serve must create and store its own.
    proc.extra_env["TIDINGS_API_KEY"] = ""
    proc.start()
    try:
        first_log = proc.log_path.read_text()
        keys = [w for w in first_log.split() if w.startswith("tdk_")]
        assert len(keys) == 1
        ok = tidings("destinations", "list", url=proc.url, key=keys[0])
        assert ok.returncode == 0, ok.stderr
        assert tidings("destinations", "list", url=proc.url, key="tdk_other").returncode != 0
    finally:
        assert proc.stop() == 0
    proc.start()
    try:
        assert "tdk_" not in proc.log_path.read_text()  # never printed again
        assert tidings("destinations", "list", url=proc.url, key=keys[0]).returncode == 0
    finally:
        proc.stop()


def _wait_dead(url: str, n: int, timeout: float = 20.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    items: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        items = api_json(sdk(url).list_deliveries(state="dead", limit=1000).items)
        if len(items) >= n:
            return items
        time.sleep(0.1)
    raise AssertionError(f"only {len(items)} of {n} deliveries went dead in {timeout} s")


def test_dlq_list_and_retry(server: TidingsProcess) -> None:
    url = server.url
    # Port 9 (discard) is closed here: every attempt is a connection error.
    created = tidings(
        "destinations", "create", "--name", "down", "--target", "http://127.0.0.1:9/h",
        "--topic", "dlq.*", "--max-attempts", "1", "--ordering", "none", url=url,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    for i in range(5):
        assert tidings("publish", "dlq.test", "--key", f"k{i}", url=url).returncode == 0
    dead = _wait_dead(url, 5)

    listed = ok_run("dlq", "list", "--destination", "down", url=url)
    table = rows(listed.stdout)
    assert table[0] == ["ID", "DESTINATION", "KEY", "ATTEMPTS", "DIED", "LAST ERROR"]
    assert sorted(r[0] for r in table[1:]) == sorted(str(d["id"]) for d in dead)
    assert all("connection refused" in r[-1] for r in table[1:])

    one = ok_run("dlq", "retry", str(dead[0]["id"]), url=url)
    assert one.stdout.strip() == "retried 1"

    # Pages of 2: three pages to find them, with progress on stderr.
    everything = ok_run("dlq", "retry", "--destination", "down", "--page-size", "2", url=url)
    # The one retried above may be dead again already, or still pending.
    assert everything.stdout.strip() in ("retried 4", "retried 5")
    assert everything.stderr.splitlines()[-1] in (
        "finding dead deliveries: 4",
        "finding dead deliveries: 5",
    )
    _wait_dead(url, 5)
    assert ok_run("dlq", "retry", "--all", url=url).stdout.strip() == "retried 5"
    assert tidings("dlq", "retry", url=url).returncode == 2  # says what to give
    missing = tidings("dlq", "retry", "dlv_nope", url=url)
    assert missing.returncode == 1 and "1 not found" in missing.stdout


def test_bench_publishes_and_measures(tmp_path: Path) -> None:
    proc = TidingsProcess(tmp_path, f"sqlite:///{tmp_path / 'bench.db'}")
    proc.start()
    try:
        created = tidings(
            "destinations", "create", "--target", "https://example.com/h", "--topic", "bench.*",
            "--json", url=proc.url,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        destination_id = json.loads(created.stdout)["id"]
        # Pause it: the events are real and would otherwise be sent.
        assert tidings("destinations", "pause", destination_id, url=proc.url).returncode == 0

        single = tidings("bench", "--events", "300", "--concurrency", "8", "--json", url=proc.url)
        assert single.returncode == 0, single.stderr
        report = json.loads(single.stdout)
        assert (report["events"], report["requests"], report["failed_requests"]) == (300, 300, {})
        assert report["events_per_s"] > 0
        lat = report["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]

        # 420 in batches of 50: eight full ones and one of 20.
        batched = tidings(
            "bench", "--events", "420", "--batch-size", "50", "--concurrency", "3",
            "--keys", "7", url=proc.url,
        )  # fmt: skip
        assert batched.returncode == 0, batched.stderr
        assert batched.stdout.startswith("420 events in ")
        assert "(9 requests of 50, 3 concurrent)" in batched.stdout

        stored = _events_of_topic(proc.url, "bench.load")
        assert len(stored) == 720
        assert {e["key"] for e in stored} >= {f"k{i}" for i in range(7)}
        deliveries = _deliveries_of(proc.url, destination_id)
        assert len(deliveries) == 720

        refused = tidings("bench", "--events", "50", url=proc.url, key="wrong")
        assert refused.returncode == 1
        assert "stopped: 401" in refused.stderr
        assert len(_events_of_topic(proc.url, "bench.load")) == 720
    finally:
        proc.stop()
    unreachable = tidings("bench", "--events", "5", url=proc.url)
    assert unreachable.returncode == 1 and "cannot reach Tidings" in unreachable.stderr


def _events_of_topic(base: str, topic: str) -> list[dict[str, object]]:
    return api_json(list(sdk(base).iter_events(topic=topic)))  # type: ignore[no-any-return]


def _deliveries_of(base: str, destination_id: str) -> list[dict[str, object]]:
    return api_json(list(sdk(base).iter_deliveries(destination_id=destination_id)))  # type: ignore[no-any-return]
