"""The package's public surface: `tidings` exports the SDK and nothing else, imports no
server code, and the blocking client is what tools/gen_sync_client.py writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tidings

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout


def test_all_is_exactly_what_the_package_holds() -> None:
    # In a fresh interpreter: here the tests' imports add the server's subpackages.
    probe = "import tidings; print(' '.join(n for n in vars(tidings) if not n.startswith('_')))"
    # Submodules the SDK imports (`tidings.policy`: the Consumer's topic matching).
    public = set(run(probe).split()) - {"sdk", "policy"}
    assert sorted(tidings.__all__) == sorted(public | {"__version__"})
    assert {"Client", "AsyncClient", "Consumer", "TidingsError", "Event", "Page"} <= public


def test_import_tidings_loads_no_server_code() -> None:
    probe = (
        "import sys, tidings; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('aiohttp', 'asyncpg', 'redis', 'nats', 'click', 'prometheus_client') "
        "or m.startswith(('tidings.api', 'tidings.store', 'tidings.engine'))))"
    )
    assert run(probe).strip() == "[]"


def test_the_sync_client_is_generated_and_current() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_sync_client.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
