"""Sender processes: frames on the wire, and a `SenderPool` whose child processes send real
webhooks to a real receiver on 127.0.0.1 — and die, and come back."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from tidings.model import AttemptResult
from tidings.signing import new_secret
from tidings.transports import senders
from tidings.transports.frames import MAX_FRAME, FrameBuffer, FrameError, encode_frame
from tidings.transports.senders import RESPAWN_DELAY_S, SenderPool, auto_sender_processes
from tidings.transports.webhook import WebhookRequest

from .conftest import Receiver

SECRET = new_secret()
PAYLOAD = b'{"order": 7, "items": ["a", "b"]}'


def request(url: str, **overrides: object) -> WebhookRequest:
    fields: dict[str, object] = {
        "url": url,
        "event_id": "evt_01HSENDERS",
        "topic": "orders.created",
        "received_at": 1_700_000_000_123_456,
        "payload": PAYLOAD,
        "secrets": (SECRET,),
        "attempt": 2,
        "timeout_s": 5.0,
    }
    fields.update(overrides)
    return WebhookRequest(**fields)  # type: ignore[arg-type]


async def within(aw: object, bound: float = 15.0) -> AttemptResult:
    return await asyncio.wait_for(aw, bound)  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped yet) is not alive either.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def until(check: object, bound: float, what: str) -> None:
    deadline = time.monotonic() + bound
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound} s: {what}")
        await asyncio.sleep(0.02)


# -- frames (pure) -------------------------------------------------------------------------


@given(
    bodies=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_frames_survive_any_split(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(b) for b in bodies)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    buf, out = FrameBuffer(), []
    for start, end in itertools.pairwise(points):
        out.extend(buf.feed(stream[start:end]))
    assert out == bodies
    assert buf.pending == 0


def test_a_partial_frame_waits_for_the_rest() -> None:
    buf = FrameBuffer()
    wire = encode_frame(b"hello") + encode_frame(b"")
    assert buf.feed(wire[:7]) == []
    assert buf.pending == 7
    assert buf.feed(wire[7:]) == [b"hello", b""]


def test_oversized_frames_are_refused() -> None:
    with pytest.raises(FrameError):
        FrameBuffer().feed((MAX_FRAME + 1).to_bytes(4, "big") + b"x")


@pytest.mark.parametrize(("cpus", "expected"), [(None, 0), (1, 0), (2, 2), (3, 3), (64, 4)])
def test_a_sender_process_per_core_by_default_up_to_four(cpus: int | None, expected: int) -> None:
    assert auto_sender_processes(cpus) == expected


# -- the pool, with real processes ---------------------------------------------------------


@pytest.fixture
async def pool() -> object:
    p = SenderPool(processes=1, allow_private=True)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def test_a_sender_process_sends_the_signed_webhook(
    pool: SenderPool, receiver: Receiver
) -> None:
    (pid,) = pool.pids()
    assert pid != os.getpid()
    result = await within(pool.deliver(request(receiver.url("/ok"))))
    assert result.outcome == "delivered"
    assert result.status_code == 200
    assert result.response_body == "ok"
    (seen,) = receiver.seen
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert headers["tidings-attempt"] == "2"
    assert headers["webhook-id"] == "evt_01HSENDERS"
    Webhook(SECRET).verify(seen.body, headers)  # raises if the signature is wrong
    assert seen.body.endswith(b',"data":' + PAYLOAD + b"}")
    # It came from the sender process, not from this one: its socket is the child's.
    assert seen.peer[1] in _local_ports(pid)


async def test_failures_come_back_as_results(pool: SenderPool, receiver: Receiver) -> None:
    busy = await within(pool.deliver(request(receiver.url("/status/503?retry_after=7"))))
    assert (busy.outcome, busy.status_code, busy.retry_after_ms) == ("http_error", 503, 7000)
    closed = await within(pool.deliver(request("http://127.0.0.1:9/")))
    assert closed.outcome == "connection_error"
    assert closed.error


async def test_many_attempts_at_once_each_get_their_own_result(
    pool: SenderPool, receiver: Receiver
) -> None:
    urls = [receiver.url("/ok") if i % 3 else receiver.url("/status/500") for i in range(60)]
    results = await within(
        asyncio.gather(*(pool.deliver(request(u, event_id=f"evt_{i}")) for i, u in enumerate(urls)))
    )
    outcomes = [r.outcome for r in results]
    assert outcomes == ["http_error" if i % 3 == 0 else "delivered" for i in range(60)]
    assert len(receiver.seen) == 60


async def test_the_ssrf_guard_runs_in_the_sender_process(receiver: Receiver) -> None:
    guarded = SenderPool(processes=1, allow_private=False)
    await guarded.start()
    try:
        result = await within(guarded.deliver(request(receiver.url("/ok"))))
    finally:
        await guarded.close()
    assert result.outcome == "refused"
    assert receiver.seen == []


async def test_the_loopback_switch_reaches_the_sender_process(receiver: Receiver) -> None:
    """TIDINGS_ALLOW_LOOPBACK_TARGETS travels to the sender process (on its command line):
    loopback is delivered from there, 0.0.0.0 (which Linux would connect to this host) is
    still refused."""
    pool = SenderPool(processes=1, allow_private=False, allow_loopback=True)
    await pool.start()
    try:
        assert len(pool.pids()) == 1
        delivered = await within(pool.deliver(request(receiver.url("/ok"))))
        unspecified = receiver.url("/ok").replace("127.0.0.1", "0.0.0.0")
        refused = await within(pool.deliver(request(unspecified)))
    finally:
        await pool.close()
    assert delivered.outcome == "delivered", delivered
    assert refused.outcome == "refused", refused
    assert refused.error == (
        "refusing to connect to 0.0.0.0 (unspecified); set TIDINGS_ALLOW_PRIVATE_TARGETS=1 to allow"
    )
    assert len(receiver.seen) == 1


def test_a_sender_process_wants_a_known_allowance() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tidings.transports.sender_process", "0", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "FD nothing|loopback|private" in done.stderr


async def test_a_killed_sender_process_loses_its_attempts_and_comes_back(
    pool: SenderPool, receiver: Receiver
) -> None:
    (pid,) = pool.pids()
    stuck = asyncio.ensure_future(pool.deliver(request(receiver.url("/slow"))))
    await until(lambda: len(receiver.seen) == 1, 10, "the slow request reached the receiver")
    os.kill(pid, signal.SIGKILL)
    lost = await within(stuck)
    assert lost.outcome == "lost"
    assert "sender process" in (lost.error or "")
    # While it is down, this process sends by itself: nothing waits for the restart.
    meanwhile = await within(pool.deliver(request(receiver.url("/ok"))))
    assert meanwhile.outcome == "delivered"
    await until(lambda: len(pool.pids()) == 1, RESPAWN_DELAY_S + 10, "a new sender process")
    (again,) = pool.pids()
    assert again != pid
    result = await within(pool.deliver(request(receiver.url("/ok"))))
    assert result.outcome == "delivered"
    assert receiver.seen[-1].peer[1] in _local_ports(again)
    receiver.release.set()


async def test_a_stuck_sender_process_is_replaced(
    pool: SenderPool, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(senders, "ANSWER_SLACK_S", 0.3)
    (pid,) = pool.pids()
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        result = await within(pool.deliver(request(receiver.url("/ok"), timeout_s=0.2)), 10)
        waited = time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already: it was killed
            os.kill(pid, signal.SIGCONT)
    assert result.outcome == "lost"
    assert "did not answer" in (result.error or "")
    assert 0.4 <= waited < 5
    # It was killed (SIGKILL works on a stopped process) and a new one takes over.
    await until(lambda: not alive(pid), 10, "the stuck sender process was killed")
    await until(lambda: len(pool.pids()) == 1, RESPAWN_DELAY_S + 10, "a new sender process")
    assert pool.pids() != [pid]
    again = await within(pool.deliver(request(receiver.url("/ok"))))
    assert again.outcome == "delivered"


async def test_closing_the_pool_ends_its_processes(receiver: Receiver) -> None:
    p = SenderPool(processes=2, allow_private=True)
    await p.start()
    pids = p.pids()
    assert len(pids) == 2
    assert (await within(p.deliver(request(receiver.url("/ok"))))).outcome == "delivered"
    await p.close()
    assert not any(alive(pid) for pid in pids)


def test_sender_processes_die_with_their_worker() -> None:
    """SIGKILL of the worker (no chance to clean up): its sender process exits by itself."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from tidings.transports.senders import SenderPool

        async def main():
            pool = SenderPool(processes=1, allow_private=True)
            await pool.start()
            print(pool.pids()[0], flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        child = int(worker.stdout.readline())  # bounded: the script prints or exits
        assert alive(child)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        deadline = time.monotonic() + 10
        while alive(child):
            assert time.monotonic() < deadline, "the orphaned sender process did not exit"
            time.sleep(0.02)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def _local_ports(pid: int) -> set[int]:
    """Local TCP ports of `pid`'s sockets (from /proc): whose connection was it?"""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[9] in inodes:
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


async def test_sender_processes_run_at_the_lower_priority_asked(receiver: Receiver) -> None:
    """TIDINGS_SENDER_NICE: the children's nice value is this process's plus it, and they
    still send."""
    lower = SenderPool(processes=2, allow_private=True, nice=5)
    await lower.start()
    try:
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        pids = lower.pids()
        assert len(pids) == 2
        assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in pids] == [min(ours + 5, 19)] * 2
        result = await within(lower.deliver(request(receiver.url("/ok"))))
        assert result.outcome == "delivered"
    finally:
        await lower.close()
