"""`make sdk`: write src/tidings/sdk/_sync_client.py (the blocking `Client`) from
_async_client.py, so the two clients cannot drift; tests/sdk fails while the committed
file differs from what this writes (`--check` says so too).

Owns the rewriting rules only (the unasync idea: drop `async`/`await`, swap the async
names for the blocking ones). Never imported by the SDK itself.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src" / "tidings" / "sdk"
SOURCE = HERE / "_async_client.py"
TARGET = HERE / "_sync_client.py"

# Whole-word replacements, in order.
_WORDS = [
    ("AsyncIterator", "Iterator"),
    ("AsyncIterable", "Iterable"),
    ("AsyncClient", "Client"),
    ("AsyncFetch", "Fetch"),
    ("__aenter__", "__enter__"),
    ("__aexit__", "__exit__"),
    ("aclose", "close"),
    ("asyncio.sleep", "time.sleep"),
    ("import asyncio", "import time"),
]
_DOCSTRING = '''"""`Client`: every call of the Tidings API, typed, blocking (one call at a time).

Owns the calls (one method each) and running them: pooled connections (one
`httpx2.Client`), retries by `Retries`, answers decoded into the Structs of `_models`,
failures raised as `TidingsError`. Generated from `_async_client.py`: edit that one.
Never call it on an event loop (the async client is for that).
"""
'''
HEADER = "# Generated from _async_client.py by tools/gen_sync_client.py (make sdk): do not edit.\n"


def render(source: str) -> str:
    text = _DOCSTRING + source[source.index('"""\n', 3) + 4 :]
    text = re.sub(r"\basync (def|with|for)\b", r"\1", text)
    text = re.sub(r"\bawait ", "", text)
    for old, new in _WORDS:
        text = re.sub(rf"(?<!\w){re.escape(old)}\b", new, text)
    text = text.replace("`async with Client(...) as client:`", "`with Client(...) as client:`")
    # Formatted as `make lint` wants it: the blocking lines are shorter, and renamed
    # imports sort elsewhere.
    sorted_ = _ruff(["check", "--select", "I", "--fix-only", "--exit-zero"], HEADER + text)
    return _ruff(["format"], sorted_)


def _ruff(args: list[str], text: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(TARGET), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def main() -> int:
    rendered = render(SOURCE.read_text())
    if "--check" in sys.argv:
        if TARGET.read_text() != rendered:
            print(f"{TARGET} is stale: run make sdk", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(rendered)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
