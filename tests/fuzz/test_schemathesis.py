"""The whole API fuzzed from its own OpenAPI document by schemathesis, against a running
`tidings api` with a real store.

Every operation, every phase (coverage, fuzzing, stateful walks along the document's
links), bounded in examples per operation. Fails on any 5xx and on any answer the
document does not describe: status code, content type, headers, body schema, a request
that violates the schema yet is accepted. Excluded: `positive_data_acceptance` (every
schema-valid request accepted), whose premise does not hold here: a destination on a
private address, an opaque cursor the API never gave out or an unknown id are valid by
schema and refused by meaning.

`TIDINGS_FUZZ_SEED` replays a run; `TIDINGS_FUZZ_EXAMPLES` (default 50) sets the
examples per operation. The server runs without a worker, so no generated destination is
ever sent to; tests/fuzz/hooks.py points the URLs it validates at 127.0.0.1.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.procs import API_KEY, TidingsProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _sections(out: str, *names: str) -> str:
    """The named `==== NAME ====` sections of a schemathesis report, each up to the next
    section, first: a CI view keeps a failure's head and tail, and an error's traceback
    sits in the middle of a long report."""
    lines = out.splitlines()
    heads = [i for i, line in enumerate(lines) if re.fullmatch(r"=+ [A-Za-z ]+ =+", line.strip())]
    picked: list[str] = []
    for n, i in enumerate(heads):
        if lines[i].strip("= ") in names:
            end = heads[n + 1] if n + 1 < len(heads) else len(lines)
            picked.extend(lines[i:end][:200])
    return "\n".join(picked)


def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_document(tmp_path: Path) -> None:
    server = TidingsProcess(
        tmp_path,
        f"sqlite:///{tmp_path / 'fuzz.db'}",
        role="api",
        extra_env={"TIDINGS_ALLOW_PRIVATE_TARGETS": "1", "TIDINGS_LOG_FORMAT": "text"},
    )
    server.start()
    seed = os.environ.get("TIDINGS_FUZZ_SEED") or str(random.randrange(2**31))
    examples = os.environ.get("TIDINGS_FUZZ_EXAMPLES", "50")
    schemathesis = Path(sys.executable).with_name("schemathesis")
    try:
        run = subprocess.run(
            [
                str(schemathesis),
                "run",
                f"{server.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {API_KEY}",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                examples,
                "--seed",
                seed,
                # One worker: with two threads, CPython 3.11.7's ast.parse (hypothesis
                # reads lambdas' source with it) can raise "SystemError: AST
                # constructor recursion depth mismatch", python/cpython#106905.
                "--workers",
                "1",
                "--request-timeout",
                "10",
                "--report-dir",
                str(tmp_path / "report"),
                "--no-color",
            ],
            cwd=ROOT,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=480,
        )
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert run.returncode == 0, (
        f"seed {seed}:\n{_sections(run.stdout, 'ERRORS', 'FAILURES')}\n"
        f"{run.stdout[-20000:]}\n{run.stderr[-5000:]}"
    )
    assert "Traceback" not in log, log[-10000:]
    assert "passed" in run.stdout
