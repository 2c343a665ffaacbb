"""Real bus servers for tests, each its own process on a free port, never a shared one.

`RedisServer` runs `redis-server --port N --save "" --appendonly yes --dir TMP` (the
append-only file, so that an XADD Redis acknowledged survives a kill and a restart);
`NatsServer` runs `nats-server -js -p N -sd TMP`. Both can be killed (SIGKILL), stopped
(SIGTERM) and started again on the same port and data directory. Every wait is bounded.
`find_binary` skips a test whose binary is missing, or fails it under
TIDINGS_REQUIRE_SERVICES=1 (CI, whose .ci/run installs them).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

REDIS_BINARY = "redis-server"
NATS_BINARY = "nats-server"
_SEARCH = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")


def find_binary(name: str) -> str:
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in _SEARCH if os.access(f"{d}/{name}", os.X_OK)), None
    )
    if found is not None:
        return found
    message = f"{name} is not installed (apt-get install {name})"
    if os.environ.get("TIDINGS_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " and TIDINGS_REQUIRE_SERVICES=1")
    pytest.skip(message + " (set TIDINGS_REQUIRE_SERVICES=1 to make this a failure)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class _Server:
    binary: ClassVar[str]
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def log_path(self) -> Path:
        return self.workdir / f"server-{self.starts}.log"

    def start(self, timeout: float = 15.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.proc = subprocess.Popen(
            self.argv(),
            cwd=self.workdir,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.binary} exited:\n{self.log_path.read_text()}")
            if _listening(self.port) and self.ready():
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.binary} not ready:\n{self.log_path.read_text()}")

    def ready(self) -> bool:
        return True

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: a graceful shutdown."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def log(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.workdir.glob("server-*.log"))
        )


@dataclass
class RedisServer(_Server):
    binary: ClassVar[str] = REDIS_BINARY
    password: str | None = None

    def argv(self) -> list[str]:
        argv = [
            find_binary(self.binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--dir",
            str(self.workdir),
        ]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def ready(self) -> bool:
        # Redis answers LOADING while it reads the append-only file back.
        return "Ready to accept connections" in self.log_path.read_text(errors="replace")

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def prefix(self) -> str:
        return f"redis://127.0.0.1:{self.port}"


@dataclass
class NatsServer(_Server):
    binary: ClassVar[str] = NATS_BINARY
    user: str | None = None
    password: str | None = None

    def argv(self) -> list[str]:
        argv = [
            find_binary(self.binary),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-sd",
            str(self.workdir / "jetstream"),
        ]
        if self.user and self.password:
            argv += ["--user", self.user, "--pass", self.password]
        return argv

    def ready(self) -> bool:
        return "Server is ready" in self.log_path.read_text(errors="replace")

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user and self.password else ""
        return f"nats://{auth}127.0.0.1:{self.port}"

    @property
    def prefix(self) -> str:
        return f"nats://127.0.0.1:{self.port}"
