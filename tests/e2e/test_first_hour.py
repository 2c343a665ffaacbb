"""What a newcomer meets in the first hour, tried with real processes: a taken port is
one line naming it, not a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _tidings(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("role", "setting"), [("serve", "TIDINGS_PORT"), ("worker", "TIDINGS_METRICS_PORT")]
)
def test_a_taken_port_is_one_line_naming_it(tmp_path: Path, role: str, setting: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _tidings(
            [role],
            tmp_path,
            TIDINGS_HOST="127.0.0.1",
            TIDINGS_DATABASE_URL=f"sqlite:///{tmp_path / 't.db'}",
            TIDINGS_LOG_FORMAT="text",
            **{setting: str(port)},
        )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("tidings:")]
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert setting in lines[0]
    assert "Traceback" not in done.stderr
    # It failed before doing anything: no store created (so no API key made and lost).
    assert not (tmp_path / "t.db").exists()
