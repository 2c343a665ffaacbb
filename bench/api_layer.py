"""The API layer alone: CPU per `POST /v1/events` of routing, middleware and the handler.

    .venv/bin/python bench/api_layer.py                      # this checkout
    .venv/bin/python bench/api_layer.py --baseline SRC       # and SRC's, interleaved

What `bench/ingest.py` cannot separate from the noise of a loaded machine: the few
microseconds of the API's own code in the ~130 us a single event costs the server
process. No socket, no HTTP parsing or writing, no database: each request is built
beforehand (aiohttp's `make_mocked_request`, the ~1 KB body of bench/ingest.py already
in its stream) and the timed loop awaits `Application._handle` on it: the router, the
middleware, the key check, reading and decoding the body, validation, the store call
(a null store that answers at once, as if every append were a new event with two
deliveries), the metric, and the 202 response object. `time.process_time()` over
`--requests` requests, the best of `--rounds` (the least disturbed by other processes).

With `--baseline SRC` each repeat also runs the same loop in a child process with SRC
(the src/ folder of another checkout) first on PYTHONPATH, interleaved. The last line is
a JSON object with the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

HERE = Path(__file__).resolve().parent
KEY = "tdk_bench_api_layer"


def measure(requests: int, rounds: int) -> float:
    """Microseconds of CPU per request through the application (best round)."""
    from aiohttp import web
    from aiohttp.base_protocol import BaseProtocol
    from aiohttp.streams import StreamReader
    from aiohttp.test_utils import make_mocked_request

    sys.path.insert(0, str(HERE))
    import ingest
    from tidings.api.app import create_app
    from tidings.api.auth import digest
    from tidings.config import Settings
    from tidings.model import Appended, EventIn
    from tidings.store.base import Store
    from tidings.timeutil import now_us

    class NullStore:
        """Every append is a new event with two deliveries, answered at once."""

        def __init__(self) -> None:
            self.seq = 0

        async def append_events(self, events: Sequence[EventIn]) -> list[Appended]:
            out = []
            for _ in events:
                self.seq += 1
                out.append(Appended(id=f"evt_{self.seq:026d}", received_at=now_us(), deliveries=2))
            return out

    tail = ingest.payload_tail(1024)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    async def run() -> float:
        loop = asyncio.get_running_loop()
        store = cast(Store, NullStore())
        app = create_app(Settings(), store, [digest(KEY)])
        app.freeze()

        def request(seq: int) -> web.Request:
            body = ingest.event_body(f"k{seq}".encode(), seq, tail)
            payload = StreamReader(BaseProtocol(loop), 2**16, loop=loop)
            payload.feed_data(body)
            payload.feed_eof()
            return make_mocked_request(
                "POST",
                "/v1/events",
                headers={**headers, "Content-Length": str(len(body))},
                app=app,
                payload=payload,
                client_max_size=app._client_max_size,
            )

        best = float("inf")
        for _ in range(rounds):
            batch = [request(i) for i in range(requests)]
            began = time.process_time()
            for req in batch:
                response = await app._handle(req)
                if response.status != 202:
                    raise SystemExit(f"answered {response.status}: {response.body!r}")
            best = min(best, time.process_time() - began)
        return 1e6 * best / requests

    return asyncio.run(run())


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench/api_layer.py", description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000, help="requests per round")
    p.add_argument("--rounds", type=int, default=5, help="rounds per run (the best counts)")
    p.add_argument("--repeats", type=int, default=3, help="runs per target")
    p.add_argument("--baseline", type=Path, metavar="SRC", help="also run SRC's code")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.requests, args.rounds)))
        return 0
    targets = ["tidings"] + (["base"] if args.baseline else [])
    found: dict[str, list[float]] = {t: [] for t in targets}
    for repeat in range(args.repeats):
        for target in targets:
            env = dict(os.environ)
            if target == "base":
                env["PYTHONPATH"] = str(args.baseline)
            child = [sys.executable, __file__, "--child", "--requests", str(args.requests)]
            out = subprocess.run(
                [*child, "--rounds", str(args.rounds)],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            us = float(out.stdout.strip().splitlines()[-1])
            found[target].append(us)
            print(f"{target:7} run {repeat + 1}/{args.repeats}: {us:.2f} us/request", flush=True)
    summary = {f"{t}_us_per_request": round(statistics.median(v), 2) for t, v in found.items()}
    if args.baseline:
        summary["vs_base"] = round(
            summary["tidings_us_per_request"] / summary["base_us_per_request"], 3
        )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
