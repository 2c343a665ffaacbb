"""The consumers tutorial (docs/tutorial-consumers.md) end to end, with the code of
examples/blog against a real `tidings serve`: a user is renamed, the blog service
reacts and tells the comment service, whose buggy handler fails 5 times and lands in
the dead letters; the fixed service is started and the dead letter retried, and the
chain shows both hops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import API_KEY, TidingsProcess, sdk

pytestmark = pytest.mark.e2e

BLOG = Path(__file__).resolve().parents[2] / "examples" / "blog"
BIN = Path(sys.executable).parent


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TidingsProcess]:
    proc = TidingsProcess(tmp_path, f"sqlite:///{tmp_path / 'blog.db'}")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_the_blog_example(server: TidingsProcess, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "TIDINGS_URL": server.url,
        "TIDINGS_API_KEY": API_KEY,
        "BLOG_DATA": str(data),
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            args, cwd=BLOG, env=env, capture_output=True, text=True, timeout=30, check=True
        )
        return done.stdout

    def consume(name: str, **extra: str) -> subprocess.Popen[str]:
        out = (tmp_path / f"{name}.out").open("a")
        return subprocess.Popen(
            [str(BIN / "tidings"), "consume", f"services:{name}"],
            cwd=BLOG,
            env={**env, **extra},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )

    assert "group comment" in run(sys.executable, "create_groups.py")
    run(sys.executable, "seed_data.py")
    procs = [consume("blog"), consume("comment", COMMENT_BUG="1")]
    client = sdk(server.url)
    try:
        root = run(sys.executable, "rename_user.py", "user-1", "Ann Smith").strip()

        def dead() -> list[str]:
            return [d.id for d in client.iter_deliveries(destination_id="comment", state="dead")]

        wait_for("the comment handler's dead letter", lambda: bool(dead()))
        (dead_id,) = dead()
        letter = client.get_delivery(dead_id)
        assert letter.last_error == "RuntimeError: Test Error!!"
        assert len(letter.attempts or []) == 5
        blog = json.loads((data / "blog.json").read_text())
        assert {p["author_name"] for p in blog.values()} == {"Ann Smith"}
        out = (tmp_path / "comment.out").read_text()
        assert [f"Failed {n} times" in out for n in range(1, 6)] == [True] * 5

        # The fix is deployed: the service restarts without the bug; the letter is retried.
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(15) == 0
        procs[1] = consume("comment")
        retried = run(str(BIN / "tidings"), "dlq", "retry", "--destination", "comment")
        assert "retried 1" in retried

        def fixed() -> bool:
            return client.get_delivery(dead_id).state == "delivered"

        wait_for("the retried comment delivery", fixed)
        comments = json.loads((data / "comment.json").read_text())
        assert comments["c-1"]["author_name"] == "Ann Smith"
        assert comments["c-2"]["author_name"] == "Bob"

        chain = client.get_chain(root)
        assert [(n.topic, n.depth) for n in chain.items] == [
            ("user.name-updated", 0),
            ("blog.user-updated", 1),
        ]
        assert chain.items[1].causation_id == root
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
