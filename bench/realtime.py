"""Realtime benchmark: the notification platform's four load scenarios against a real
`tidings serve` (issue 15).

    .venv/bin/python bench/realtime.py                         # all four, default sizes
    .venv/bin/python bench/realtime.py --scenarios fanout,storm --rounds 30
    .venv/bin/python bench/realtime.py --sockets 2000 --save

What one run does
- starts `tidings serve` on a fresh SQLite file in a temporary directory (pings every
  `--ping-s` s, connection and connect-rate limits raised above the run's sizes, loopback
  webhook targets allowed for scenario d), waits for /healthz;
- gets a token per user (`POST /v1/users/{user_id}/token`), then runs, in order:
  (a) `idle`: opens `--sockets` WebSockets (`GET /v1/ws`), one user each, and holds them
      idle for `--idle-s` s while the server pings them; memory per connection is the
      server's RSS growth (VmRSS, /proc) from before the first socket to the end of the
      idle time, divided by the sockets still open (each must have answered every ping);
  (b) `fanout`: with those sockets still open, `--rounds` events each addressed to
      `--fanout` of the users (POST /v1/events with `recipients`), one at a time: the
      time from just before the POST to each client's message frame (clients and
      publisher share this process's monotonic clock): p50, p99, max, and how many
      frames came (must be every one);
  (c) `churn`: `--churn-clients` clients drop and reconnect with `after` = their last
      offset at random for `--churn-s` s while events (10 recipients each) are
      published; then each client reads to its inbox's top: messages lost and duplicated
      (both must be 0);
  (d) `storm`: fan-out latency as in (b), first alone, then while `--storm-rate` events/s
      go to 4 webhook destinations whose receiver (a process of its own) answers 503 to
      everything: each delivery tried 8 times on the default exponential backoff from
      100 ms (ordering "none", destinations never pause themselves:
      TIDINGS_PAUSE_AFTER_FAILURES=0): realtime p99 with and without the storm, and the
      attempts the storm made;
- a progress line on standard error; the last line of standard output is a JSON object
  with every figure (`--save` also writes bench/results/realtime-<timestamp>.json).

The client sockets (aiohttp) live in this process: on a 2-core machine they share the
CPU with the server, as the platform's own load tool did.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

RESULTS = Path(__file__).parent / "results"


# ----------------------------------------------------------------- small helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Progress:
    """One line on standard error, redrawn: `label [#####.....] done/total`."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self._drawn = label, max(total, 1), 0, 0.0

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._drawn > 0.2 or self.done >= self.total:
            self._drawn = now
            filled = int(30 * min(self.done, self.total) / self.total)
            bar = "#" * filled + "." * (30 - filled)
            print(f"\r{self.label:<28} [{bar}] {self.done}/{self.total}", end="", file=sys.stderr)

    def end(self, note: str = "") -> None:
        self.done = self.total - 1
        self.step()
        print(f"  {note}", file=sys.stderr, flush=True)


async def bounded(coros: Iterable[Awaitable[Any]], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[Any]) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


# ----------------------------------------------------------------- the server
class Server:
    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = "tdk_bench_" + secrets.token_urlsafe(12)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env.update(
            TIDINGS_DATABASE_URL=f"sqlite:///{work / 'rt.db'}",
            TIDINGS_API_KEY=self.key,
            TIDINGS_PORT=str(self.port),
            TIDINGS_LOG_LEVEL="warning",
            TIDINGS_ALLOW_LOOPBACK_TARGETS="1",
            TIDINGS_WS_MAX_CONNECTIONS=str(args.sockets + args.churn_clients + 1000),
            TIDINGS_WS_CONNECT_RATE="1000000",
            TIDINGS_WS_PING_S=str(args.ping_s),
            TIDINGS_WS_SEND_QUEUE="10000",
            # (d): failing destinations keep failing instead of pausing themselves after
            # 100 failures, which would end the storm within seconds.
            TIDINGS_PAUSE_AFTER_FAILURES="0",
        )
        self.log = work / "server.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tidings.cli", "serve"], cwd=work, env=env,
                stdout=out, stderr=out, start_new_session=True,
            )  # fmt: skip
        self.headers = {"Authorization": f"Bearer {self.key}"}

    async def wait_healthy(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"tidings exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(self.url + "/healthz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise SystemExit("tidings not healthy after 30 s")

    async def call(
        self, session: aiohttp.ClientSession, method: str, path: str, body: Any = None
    ) -> Any:
        async with session.request(method, self.url + path, json=body, headers=self.headers) as r:
            answer = await r.json(content_type=None)
            if r.status >= 300:
                raise SystemExit(f"{method} {path} answered {r.status}: {answer}")
            return answer

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# ----------------------------------------------------------------- clients
@dataclass
class Client:
    """One user's socket: the offsets and receive times of its message frames."""

    user: str
    token: str
    offsets: list[int] = field(default_factory=list)
    arrivals: dict[str, float] = field(default_factory=dict)  # event id -> monotonic time
    connects: int = 0
    closed: str | None = None  # why the socket ended, while it should have stayed open
    on_message: Callable[[str], None] = lambda _event_id: None

    @property
    def last(self) -> int:
        return self.offsets[-1] if self.offsets else 0

    def ws_url(self, base: str) -> str:
        return f"{base}/v1/ws?user_id={self.user}&token={self.token}&after={self.last}"

    async def hold(
        self, session: aiohttp.ClientSession, base: str, opened: Callable[[], None]
    ) -> None:
        """Open the socket and read until cancelled."""
        try:
            async with session.ws_connect(self.ws_url(base), heartbeat=None) as ws:
                self.connects += 1
                opened()
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    self._frame(msg.data)
                self.closed = f"closed by the server ({ws.close_code})"
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            self.closed = f"{type(exc).__name__}: {exc}"
            opened()

    async def follow(self, session: aiohttp.ClientSession, base: str, seconds: float) -> bool:
        """Connect after the last offset and read for `seconds`; False when refused."""
        try:
            timeout = aiohttp.ClientWSTimeout(ws_receive=5)
            async with session.ws_connect(self.ws_url(base), timeout=timeout) as ws:
                self.connects += 1
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        msg = await ws.receive(timeout=left)
                    except TimeoutError:
                        break
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    self._frame(msg.data)
            return True
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    def _frame(self, data: str) -> None:
        frame = json.loads(data)
        if frame.get("type") == "message":
            self.offsets.append(frame["offset"])
            self.arrivals[frame["id"]] = time.monotonic()
            self.on_message(frame["id"])


async def tokens_for(
    server: Server, session: aiohttp.ClientSession, users: list[str]
) -> list[Client]:
    bar = Progress("tokens", len(users))

    async def one(user: str) -> Client:
        body = await server.call(session, "POST", f"/v1/users/{user}/token", {"ttl_s": 86400})
        bar.step()
        return Client(user, body["token"])

    clients = await bounded((one(u) for u in users), 32)
    bar.end()
    return clients


async def publish(
    server: Server, session: aiohttp.ClientSession, topic: str, users: list[str], n: int
) -> tuple[str, float]:
    """One event for `users`; answers its id and the monotonic time just before the POST."""
    body = {"topic": topic, "key": f"k{n}", "payload": {"n": n}, "recipients": users}
    t0 = time.monotonic()
    answer = await server.call(session, "POST", "/v1/events", body)
    return str(answer["id"]), t0


# ----------------------------------------------------------------- scenarios
async def scenario_idle(
    server: Server, session: aiohttp.ClientSession, clients: list[Client], args: argparse.Namespace
) -> tuple[dict[str, Any], list[asyncio.Task[None]]]:
    before = rss_kib(server.proc.pid)
    bar = Progress(f"(a) open {len(clients)} sockets", len(clients))
    tasks: list[asyncio.Task[None]] = []
    opening = asyncio.Semaphore(200)
    t0 = time.monotonic()

    async def start(c: Client) -> None:
        await opening.acquire()
        done = asyncio.Event()

        def opened() -> None:
            bar.step()
            opening.release()
            done.set()

        tasks.append(asyncio.create_task(c.hold(session, server.url, opened)))
        await done.wait()

    await asyncio.gather(*(start(c) for c in clients))
    opened_s = time.monotonic() - t0
    bar.end(f"in {opened_s:.1f} s")
    bar = Progress(f"(a) idle {args.idle_s:.0f} s", int(args.idle_s))
    for _ in range(int(args.idle_s)):
        await asyncio.sleep(1)
        bar.step()
    bar.end()
    after = rss_kib(server.proc.pid)
    open_now = sum(1 for c in clients if c.connects and c.closed is None)
    failed = [c.closed for c in clients if c.closed][:3]
    result = {
        "sockets": len(clients),
        "open_after_idle": open_now,
        "open_s": round(opened_s, 2),
        "idle_s": args.idle_s,
        "ping_s": args.ping_s,
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "kib_per_socket": round((after - before) / max(open_now, 1), 2),
        "failures": failed,
    }
    return result, tasks


async def fanout_rounds(
    server: Server,
    session: aiohttp.ClientSession,
    clients: list[Client],
    rounds: int,
    label: str,
    tag: str,
) -> dict[str, Any]:
    users = [c.user for c in clients]
    latencies: list[float] = []
    missing = 0
    bar = Progress(label, rounds)
    waiting: dict[str, int] = {}  # event id -> frames still to come
    everyone = asyncio.Event()

    def arrived(event_id: str) -> None:
        left = waiting.get(event_id)
        if left is not None:
            waiting[event_id] = left - 1
            if left == 1:
                everyone.set()

    for c in clients:
        c.on_message = arrived
    for n in range(rounds):
        everyone.clear()
        event_id, t0 = await publish(server, session, f"rt.{tag}", users, n)
        waiting[event_id] = len(clients) - sum(1 for c in clients if event_id in c.arrivals)
        if waiting[event_id] <= 0:
            everyone.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone.wait(), 10)
        for c in clients:
            at = c.arrivals.get(event_id)
            if at is None:
                missing += 1
            else:
                latencies.append((at - t0) * 1000)
        bar.step()
        await asyncio.sleep(0.2)
    bar.end()
    return {
        "rounds": rounds,
        "users": len(clients),
        "frames": len(latencies),
        "missing": missing,
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies, default=float("nan")), 1),
    }


async def scenario_churn(
    server: Server, session: aiohttp.ClientSession, args: argparse.Namespace
) -> dict[str, Any]:
    tag = secrets.token_hex(3)
    clients = await tokens_for(server, session, [f"c{i}_{tag}" for i in range(args.churn_clients)])
    users = [c.user for c in clients]
    sent = dict.fromkeys(users, 0)
    rng = random.Random(15)
    deadline = time.monotonic() + args.churn_s
    bar = Progress(f"(c) churn {args.churn_s:.0f} s", int(args.churn_s))

    async def events() -> None:
        n = 0
        while time.monotonic() < deadline and n < 100_000:
            n += 1
            chosen = rng.sample(users, 10)
            await publish(server, session, "rt.churn", chosen, n)
            for u in chosen:
                sent[u] += 1
            await asyncio.sleep(1 / args.churn_rate)

    async def churn(c: Client) -> None:
        rounds = 0
        while time.monotonic() < deadline and rounds < 10_000:
            rounds += 1
            if not await c.follow(session, server.url, rng.uniform(0.05, 1.0)):
                await asyncio.sleep(0.1)
            await asyncio.sleep(rng.uniform(0, 0.3))  # offline a moment

    async def ticks() -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(1)
            bar.step()

    await asyncio.gather(events(), ticks(), *(churn(c) for c in clients))
    bar.end()
    bar = Progress("(c) catch up", len(clients))

    async def catch_up(c: Client) -> None:
        until = time.monotonic() + 30
        while c.last < sent[c.user] and time.monotonic() < until:
            if not await c.follow(session, server.url, 1.0):
                await asyncio.sleep(0.1)
        bar.step()

    await asyncio.gather(*(catch_up(c) for c in clients))
    bar.end()
    lost = dup = 0
    for c in clients:
        got = set(c.offsets)
        dup += len(c.offsets) - len(got)
        lost += sum(1 for offset in range(1, sent[c.user] + 1) if offset not in got)
    return {
        "clients": len(clients),
        "seconds": args.churn_s,
        "messages": sum(sent.values()),
        "connects": sum(c.connects for c in clients),
        "lost": lost,
        "duplicated": dup,
        "in_order": all(c.offsets == sorted(c.offsets) for c in clients),
    }


def failing_receiver_main(port: int) -> None:
    """A webhook receiver that answers 503 to everything, counting the attempts."""
    from aiohttp import web

    count = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal count
        count += 1
        await request.read()
        return web.Response(status=503)

    async def seen(_request: web.Request) -> web.Response:
        return web.json_response({"attempts": count})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", seen)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def scenario_storm(
    server: Server,
    session: aiohttp.ClientSession,
    clients: list[Client],
    args: argparse.Namespace,
) -> dict[str, Any]:
    calm = await fanout_rounds(
        server, session, clients, args.rounds, "(d) fan-out, no storm", "calm"
    )
    port = free_port()
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "_failing-receiver", str(port),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"http://127.0.0.1:{port}/count") as r:
                    if r.status == 200:
                        break
            await asyncio.sleep(0.05)
        for i in range(4):
            await server.call(
                session,
                "POST",
                "/v1/destinations",
                {
                    "name": f"failing-{i}",
                    "kind": "webhook",
                    "url": f"http://127.0.0.1:{port}/hook",
                    "topics": ["storm.*"],
                    "ordering": "none",
                    "retry": {"max_attempts": 8, "initial_ms": 100},
                },
            )
        stop = asyncio.Event()

        async def storm() -> int:
            n = 0
            while not stop.is_set():
                n += 1
                body = {"topic": "storm.failed", "key": f"s{n}", "payload": {"n": n}}
                await server.call(session, "POST", "/v1/events", body)
                await asyncio.sleep(1 / args.storm_rate)
            return n

        storm_task = asyncio.create_task(storm())
        await asyncio.sleep(3)  # the retries pile up
        stormy = await fanout_rounds(
            server, session, clients, args.rounds, "(d) fan-out, in the storm", "storm"
        )
        stop.set()
        storm_events = await storm_task
        async with session.get(f"http://127.0.0.1:{port}/count") as r:
            attempts = (await r.json())["attempts"]
        for d in (await server.call(session, "GET", "/v1/destinations"))["items"]:
            if d["name"].startswith("failing-"):
                await server.call(session, "PATCH", f"/v1/destinations/{d['id']}",
                                  {"state": "paused"})  # fmt: skip
    finally:
        receiver.terminate()
        await receiver.wait()
    return {
        "calm": calm,
        "storm": stormy,
        "storm_events": storm_events,
        "storm_attempts": attempts,
        "p99_ratio": round(stormy["p99_ms"] / calm["p99_ms"], 2) if calm["p99_ms"] else None,
    }


# ----------------------------------------------------------------- driver
async def run(args: argparse.Namespace) -> dict[str, Any]:
    scenarios = set(args.scenarios.split(","))
    out: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = Server(work, args)
        connector = aiohttp.TCPConnector(limit=0)
        held: list[asyncio.Task[None]] = []
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                await server.wait_healthy(session)
                needs_sockets = scenarios & {"idle", "fanout", "storm"}
                clients: list[Client] = []
                if needs_sockets:
                    tag = secrets.token_hex(3)
                    count = args.sockets if "idle" in scenarios else args.fanout
                    users = [f"u{i}_{tag}" for i in range(count)]
                    clients = await tokens_for(server, session, users)
                    idle, held = await scenario_idle(server, session, clients, args)
                    if "idle" in scenarios:
                        out["idle"] = idle
                fan = clients[: args.fanout]
                if "fanout" in scenarios:
                    out["fanout"] = await fanout_rounds(
                        server, session, fan, args.rounds, f"(b) fan-out to {len(fan)}", "fan"
                    )
                if "churn" in scenarios:
                    out["churn"] = await scenario_churn(server, session, args)
                if "storm" in scenarios:
                    out["storm"] = await scenario_storm(server, session, fan, args)
                for task in held:
                    task.cancel()
                await asyncio.gather(*held, return_exceptions=True)
        finally:
            server.stop()
    return out


def verdicts(out: dict[str, Any]) -> list[str]:
    lines = []
    if "idle" in out:
        i = out["idle"]
        lines.append(
            f"(a) {i['open_after_idle']}/{i['sockets']} sockets open after {i['idle_s']} s idle,"
            f" {i['kib_per_socket']} KiB each (aim < 30 KB)"
        )
    if "fanout" in out:
        f = out["fanout"]
        lines.append(
            f"(b) one event to {f['users']} users: p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms"
            f" (aim p99 < 500 ms), {f['missing']} frames missing"
        )
    if "churn" in out:
        c = out["churn"]
        lines.append(
            f"(c) churn: {c['messages']} messages, {c['connects']} connects, lost {c['lost']},"
            f" duplicated {c['duplicated']} (aim 0, 0)"
        )
    if "storm" in out:
        s = out["storm"]
        lines.append(
            f"(d) realtime p99 {s['calm']['p99_ms']} ms alone, {s['storm']['p99_ms']} ms in a"
            f" storm of {s['storm_attempts']} failing attempts: x{s['p99_ratio']} (aim <= 2)"
        )
    return lines


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenarios", default="idle,fanout,churn,storm")
    p.add_argument("--sockets", type=int, default=5000, help="(a) sockets held open")
    p.add_argument("--idle-s", type=float, default=15.0, help="(a) idle time")
    p.add_argument("--ping-s", type=float, default=5.0, help="the server's ping interval")
    p.add_argument("--fanout", type=int, default=1000, help="(b, d) recipients per event")
    p.add_argument("--rounds", type=int, default=20, help="(b, d) events published")
    p.add_argument("--churn-clients", type=int, default=200)
    p.add_argument("--churn-s", type=float, default=20.0)
    p.add_argument("--churn-rate", type=float, default=50.0, help="(c) events/s")
    p.add_argument("--storm-rate", type=float, default=50.0, help="(d) failing events/s")
    p.add_argument("--save", action="store_true")
    args = p.parse_args(argv)
    args.fanout = min(args.fanout, 1000)  # an event has at most 1000 recipients
    if "idle" in args.scenarios:
        args.fanout = min(args.fanout, args.sockets)
    return args


def main(argv: list[str]) -> int:
    if argv[:1] == ["_failing-receiver"]:
        failing_receiver_main(int(argv[1]))
        return 0
    args = parse_args(argv)
    out = asyncio.run(run(args))
    for line in verdicts(out):
        print(line)
    if args.save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"realtime-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
