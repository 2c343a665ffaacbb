"""The `tidings` command line against a real server process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.procs import API_KEY, TidingsProcess, api_call

pytestmark = pytest.mark.e2e


def tidings(*args: str, url: str, key: str | None = API_KEY) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TIDINGS_URL": url}
    env.pop("TIDINGS_API_KEY", None)
    if key is not None:
        env["TIDINGS_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_destinations_and_publish_through_the_cli(tmp_path: Path) -> None:
    proc = TidingsProcess(tmp_path, f"sqlite:///{tmp_path / 'cli.db'}")
    proc.start()
    try:
        created = tidings(
            "destinations", "create", "--name", "billing", "--url", "https://example.com/h",
            "--topic", "order.*", "--on-dead", "block", url=proc.url,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        destination = json.loads(created.stdout)
        assert destination["secret"].startswith("whsec_")
        assert destination["on_dead"] == "block"

        listed = tidings("destinations", "list", url=proc.url)
        assert listed.returncode == 0
        assert destination["id"] in listed.stdout and "billing" in listed.stdout

        shown = tidings("destinations", "show", "billing", url=proc.url)
        assert json.loads(shown.stdout)["id"] == destination["id"]

        published = tidings(
            "publish", "order.created", "--key", "u1", "--data", '{"total": 12}', url=proc.url
        )
        assert published.returncode == 0, published.stderr
        accepted = json.loads(published.stdout)
        assert accepted["deliveries"] == 1 and accepted["id"].startswith("evt_")

        bad = tidings("publish", "bad..topic", url=proc.url)
        assert bad.returncode != 0
        assert "400 invalid_field (topic)" in bad.stderr

        unauthorized = tidings("destinations", "list", url=proc.url, key="wrong")
        assert unauthorized.returncode != 0 and "401" in unauthorized.stderr

        bad_json = tidings("publish", "a.b", "--data", "{nope", url=proc.url)
        assert bad_json.returncode == 2 and "not JSON" in bad_json.stderr
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
        items = api_call("GET", url + "/v1/deliveries?state=dead&limit=1000")["items"]
        if len(items) >= n:
            return items
        time.sleep(0.1)
    raise AssertionError(f"only {len(items)} of {n} deliveries went dead in {timeout} s")


def test_dlq_list_and_retry(tmp_path: Path) -> None:
    proc = TidingsProcess(tmp_path, f"sqlite:///{tmp_path / 'dlq.db'}")
    proc.extra_env.update({"TIDINGS_ALLOW_PRIVATE_TARGETS": "1", "TIDINGS_POLL_INTERVAL_MS": "100"})
    proc.start()
    try:
        # Port 9 (discard) is closed here: every attempt is a connection error.
        body = '{"retry": {"max_attempts": 1}, "ordering": "none"}'
        created = tidings(
            "destinations", "create", "--name", "down", "--url", "http://127.0.0.1:9/h",
            "--topic", "dlq.*", "--json", body, url=proc.url,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        for i in range(5):
            assert tidings("publish", "dlq.test", "--key", f"k{i}", url=proc.url).returncode == 0
        dead = _wait_dead(proc.url, 5)

        listed = tidings("dlq", "list", "--destination", "down", url=proc.url)
        assert listed.returncode == 0, listed.stderr
        assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == sorted(
            str(d["id"]) for d in dead
        )
        assert "connection refused" in listed.stdout

        one = tidings("dlq", "retry", str(dead[0]["id"]), url=proc.url)
        assert one.returncode == 0, one.stderr
        assert one.stdout.strip() == "retried 1"

        everything = tidings("dlq", "retry", "--destination", "down", url=proc.url)
        assert everything.returncode == 0, everything.stderr
        # The one retried above may be dead again already, or still pending.
        assert everything.stdout.strip() in ("retried 4", "retried 5")
        _wait_dead(proc.url, 5)
        assert tidings("dlq", "retry", url=proc.url).returncode == 2  # says what to give
        missing = tidings("dlq", "retry", "dlv_nope", url=proc.url)
        assert missing.returncode == 1 and "1 not found" in missing.stdout
    finally:
        proc.stop()


def test_bench_publishes_and_measures(tmp_path: Path) -> None:
    proc = TidingsProcess(tmp_path, f"sqlite:///{tmp_path / 'bench.db'}")
    proc.start()
    try:
        created = tidings(
            "destinations", "create", "--url", "https://example.com/h", "--topic", "bench.*",
            url=proc.url,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        destination_id = json.loads(created.stdout)["id"]
        # Pause it: the events are real and would otherwise be sent.
        paused = api_call(
            "PATCH", f"{proc.url}/v1/destinations/{destination_id}", {"state": "paused"}
        )
        assert paused["state"] == "paused"

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


def _paged(url: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    cursor: str | None = None
    for _ in range(100):
        sep = "&" if "?" in url else "?"
        page = api_call("GET", url + sep + "limit=1000" + (f"&cursor={cursor}" if cursor else ""))
        out.extend(page["items"])
        cursor = page["next"]
        if cursor is None:
            return out
    raise AssertionError("more than 100 pages")


def _events_of_topic(base: str, topic: str) -> list[dict[str, object]]:
    return _paged(f"{base}/v1/events?topic={topic}")


def _deliveries_of(base: str, destination_id: str) -> list[dict[str, object]]:
    return _paged(f"{base}/v1/deliveries?destination_id={destination_id}")
