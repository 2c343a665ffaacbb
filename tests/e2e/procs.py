"""Real `tidings` processes for end-to-end tests: start, wait until healthy, kill.

`TidingsProcess` runs `tidings serve` or `tidings api` (ready when `/readyz` answers 200;
its stdout and stderr go to one log file, or stderr to a file of its own with
`separate_stderr`);
`WorkerProcess` runs `tidings worker` (no HTTP port: ready when its JSON log says
"delivery worker started"). Every wait is bounded; a process that does not come up fails
the test with its log.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import tidings

API_KEY = "tdk_e2e_key"


@functools.cache
def sdk(url: str) -> tidings.Client:
    """The SDK's blocking client of a process at `url`, with the e2e key (one per URL,
    kept for the session: these tests drive processes, not a loop)."""
    return tidings.Client(url, api_key=API_KEY, timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TidingsProcess:
    workdir: Path
    database_url: str
    role: str = "serve"
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    separate_stderr: bool = False
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"tidings-{self.role}-{self.port}-{self.starts}.log"

    @property
    def stderr_path(self) -> Path:
        """Where stderr goes: a file of its own with `separate_stderr`, else the log."""
        if not self.separate_stderr:
            return self.log_path
        return self.workdir / f"tidings-{self.role}-{self.port}-{self.starts}.stderr"

    def output(self) -> str:
        """What it wrote so far: stdout, then stderr if that has a file of its own."""
        text = self.log_path.read_text(errors="replace")
        if self.separate_stderr and self.stderr_path.exists():
            text += self.stderr_path.read_text(errors="replace")
        return text

    def start(self, timeout: float = 45.0) -> None:
        env = {
            **os.environ,
            "TIDINGS_DATABASE_URL": self.database_url,
            "TIDINGS_API_KEY": API_KEY,
            "TIDINGS_PORT": str(self.port),
            "TIDINGS_HOST": "127.0.0.1",
            "TIDINGS_LOG_FORMAT": "json",
            **self.extra_env,
        }
        self.starts += 1
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tidings.cli", self.role],
            cwd=self.workdir,
            env=env,
            stdout=log,
            stderr=self.stderr_path.open("wb") if self.separate_stderr else subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tidings exited early:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"tidings did not become ready:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait for a graceful exit; SIGKILL after `timeout`."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)


@dataclass
class WorkerProcess(TidingsProcess):
    """`tidings worker`: no HTTP port, so it is ready when its log says so."""

    role: str = "worker"
    worker_id: str | None = None

    def start(self, timeout: float = 45.0) -> None:
        env = {
            **os.environ,
            "TIDINGS_DATABASE_URL": self.database_url,
            "TIDINGS_API_KEY": API_KEY,
            "TIDINGS_LOG_FORMAT": "json",
            **self.extra_env,
        }
        self.starts += 1
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tidings.cli", "worker"],
            cwd=self.workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tidings worker exited early:\n{self.log_path.read_text()}")
            for line in self.log_path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("msg") == "delivery worker started":
                    self.worker_id = entry.get("worker")
                    return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"tidings worker did not start:\n{self.log_path.read_text()}")
