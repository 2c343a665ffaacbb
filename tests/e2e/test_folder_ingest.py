"""Folder ingest in a real `tidings serve`, killed with SIGKILL in the middle of a file:
after a restart every row of the file is stored exactly once (the WDS promise: no user
missed, none alerted twice)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from tests.e2e.procs import TidingsProcess, sdk

pytestmark = pytest.mark.e2e
ROWS = 100_000  # the top of the file sizes WDS was built for


def stored_rows(url: str) -> int:
    return len(sdk(url).list_events(topic="file.row", limit=1).items)


def test_sigkill_mid_file_neither_skips_nor_repeats_a_row(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    db = tmp_path / "watch.db"
    proc = TidingsProcess(
        tmp_path,
        f"sqlite:///{db}",
        extra_env={"TIDINGS_WATCH_DIR": str(folder), "TIDINGS_WATCH_INTERVAL_MS": "50"},
    )
    proc.start()
    part = folder / ".users.csv.part"
    with part.open("w") as f:
        f.write("userId,alertMessage\n")
        for i in range(ROWS):
            f.write(f"user-{i},Order {i} has been placed\n")
    os.rename(part, folder / "users.csv")

    deadline = time.monotonic() + 30
    while stored_rows(proc.url) == 0:  # the file is being read
        assert time.monotonic() < deadline, "folder ingest did not start"
        time.sleep(0.01)
    proc.kill()
    claimed = [p for p in (folder / "processing").iterdir() if p.is_file()]
    assert [p.name.split("-", 1)[1] for p in claimed] == ["users.csv"], "killed too late"
    with sqlite3.connect(db) as conn:
        (before,) = conn.execute("SELECT count(*) FROM events WHERE topic = 'file.row'").fetchone()
    assert 0 < before < ROWS

    proc.start()
    try:
        report_path = folder / "done" / "users.csv.report.json"
        deadline = time.monotonic() + 60
        while not report_path.exists():
            assert time.monotonic() < deadline, "the file was not finished after the restart"
            time.sleep(0.05)
        report = json.loads(report_path.read_text())
    finally:
        proc.stop()
    assert report["rows"] == ROWS and report["bad_rows"] == 0
    assert report["duplicates"] >= before and report["events"] + report["duplicates"] == ROWS
    with sqlite3.connect(db) as conn:
        count, keys, users = conn.execute(
            "SELECT count(*), count(DISTINCT idempotency_key), count(DISTINCT key) "
            "FROM events WHERE topic = 'file.row'"
        ).fetchone()
    assert (count, keys, users) == (ROWS, ROWS, ROWS)
    assert not [p for p in (folder / "processing").rglob("*") if p.is_file()]
