"""Sending webhooks from child processes, so that HTTP runs on another core than the store
and the engine.

A worker's own process keeps everything that decides: claims, leases, retry policy,
outcomes, metrics. A `SenderPool` hands each attempt (a `WebhookRequest`) to one of its
sender processes (`python -m tidings.transports.sender_process`) over a socket pair and
awaits the `AttemptResult` it sends back; a sender process is a `WebhookTransport` and
nothing more, so it holds no state that a crash could lose. If one exits, the attempts it
held come back as `lost` (the retry policy sends them again: at least once), it is started
again, and until then the pool sends from its own process. One that stops answering
(`ANSWER_SLACK_S` beyond a request's timeout) is killed and replaced the same way. A
sender process exits as soon as its worker's end of the socket closes (the worker stopped
or was killed).

Must never apply policy or touch the store; must never raise for a delivery failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import sys

import msgspec

from tidings.model import AttemptResult
from tidings.policy.addresses import Allow
from tidings.timeutil import now_us
from tidings.transports.frames import FramedProtocol
from tidings.transports.webhook import WebhookRequest, WebhookTransport

__all__ = ["SenderPool", "auto_sender_processes"]

log = logging.getLogger(__name__)
RESPAWN_DELAY_S = 1.0  # after a sender process exits, before starting another
STOP_TIMEOUT_S = 5.0  # on close, how long a sender process may take to exit
START_TIMEOUT_S = 30.0  # how long start() waits for a sender process to say hello
ANSWER_SLACK_S = 30.0  # beyond a request's timeout: a sender process that is this late
# with an answer is stuck; the attempt counts as lost rather than hold its slot forever


class Ask(msgspec.Struct, array_like=True, frozen=True):
    """One attempt, worker -> sender process."""

    rid: int
    request: WebhookRequest


class Reply(msgspec.Struct, array_like=True, frozen=True):
    """What came of one attempt, sender process -> worker."""

    rid: int
    result: AttemptResult


ask_decoder = msgspec.msgpack.Decoder(Ask)
reply_decoder = msgspec.msgpack.Decoder(Reply)
encode = msgspec.msgpack.encode


MAX_AUTO_SENDERS = 4


def auto_sender_processes(cpus: int | None) -> int:
    """The default: one sender process per core, at most `MAX_AUTO_SENDERS`; none on a
    single core. Even on two cores two beat one (`bench/deliver.py --sender-processes`):
    a sender process is mostly waiting on the network, and two keep a core busy where
    one leaves gaps."""
    cpus = cpus or 1
    return 0 if cpus < 2 else min(cpus, MAX_AUTO_SENDERS)


def _lost(error: str) -> AttemptResult:
    return AttemptResult(at=now_us(), outcome="lost", error=error)


class _Child:
    """One sender process and the attempts it holds."""

    def __init__(self, number: int, allow: Allow, nice: int = 0) -> None:
        self.number = number
        self.allow = allow
        self.nice = nice
        self.proc: asyncio.subprocess.Process | None = None
        self.proto: FramedProtocol | None = None
        self.pending: dict[int, asyncio.Future[AttemptResult]] = {}
        self._rids = itertools.count(1)
        self._closing = False
        self._respawn: asyncio.TimerHandle | None = None
        self._respawning: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        # Kept: asyncio.get_running_loop() costs a getpid() system call on every call.
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def up(self) -> bool:
        """Connected and ready: it has said hello (an empty frame) after starting up."""
        return self.ready.is_set() and self.proto is not None and self.proto.connected

    async def spawn(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self.ready.clear()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tidings.transports.sender_process",
                str(theirs.fileno()),
                self.allow.value,
                str(self.nice),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        _, self.proto = await loop.create_unix_connection(
            lambda: FramedProtocol(self._on_frame, self._on_lost), sock=ours
        )
        try:
            await asyncio.wait_for(self.ready.wait(), START_TIMEOUT_S)
        except TimeoutError:
            # Keep it: it may be slow to import on a loaded machine; until it says hello,
            # the pool sends from its own process.
            log.warning("sender process %d not ready after %.0f s", self.number, START_TIMEOUT_S)
        else:
            log.debug("sender process %d started (pid %d)", self.number, self.proc.pid)

    async def deliver(self, req: WebhookRequest) -> AttemptResult:
        proto, loop = self.proto, self._loop
        assert proto is not None and loop is not None  # spawn made both
        rid = next(self._rids)
        future: asyncio.Future[AttemptResult] = loop.create_future()
        self.pending[rid] = future
        stuck = loop.call_later(req.timeout_s + ANSWER_SLACK_S, self._give_up, future)
        proto.send(encode(Ask(rid, req)))
        try:
            return await future
        finally:
            stuck.cancel()
            self.pending.pop(rid, None)

    def _give_up(self, future: asyncio.Future[AttemptResult]) -> None:
        """It is stuck (a bug, or stopped): the attempt is lost, and the process is
        killed so that a new one takes over (its other attempts come back lost too)."""
        if future.done():
            return
        future.set_result(_lost("the sender process did not answer in time"))
        log.error("sender process %d stopped answering; killing it", self.number)
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def _on_frame(self, body: bytes) -> None:
        if not body:  # hello
            self.ready.set()
            return
        reply = reply_decoder.decode(body)
        future = self.pending.pop(reply.rid, None)
        if future is not None and not future.done():
            future.set_result(reply.result)

    def _on_lost(self, exc: BaseException | None) -> None:
        self.proto = None
        self.ready.set()  # nobody waits for a hello that cannot come
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_result(_lost("the sender process exited mid-request"))
        if self._closing:
            return
        log.warning(
            "sender process %d exited%s; starting another in %.0f s",
            self.number,
            f" ({exc})" if exc else "",
            RESPAWN_DELAY_S,
        )
        self._respawn = asyncio.get_running_loop().call_later(RESPAWN_DELAY_S, self._later)

    def _later(self) -> None:
        self._respawning = asyncio.ensure_future(self._spawn_again())

    async def _spawn_again(self) -> None:
        self._respawn = None
        if self._closing:
            return
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        try:
            await self.spawn()
        except (OSError, RuntimeError) as exc:
            log.error("could not start sender process %d: %s", self.number, exc)
            self._respawn = asyncio.get_running_loop().call_later(RESPAWN_DELAY_S, self._later)

    async def close(self) -> None:
        self._closing = True
        if self._respawn is not None:
            self._respawn.cancel()
        if self._respawning is not None:
            await asyncio.gather(self._respawning, return_exceptions=True)
        if self.proto is not None:
            self.proto.close()  # the sender process exits when it sees the end
        proc = self.proc
        if proc is None:
            return
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class SenderPool:
    """Delivers webhooks through `processes` sender processes (0: in this process).

    The least busy sender process that is up takes each attempt; with none up (none
    configured, or all restarting) this process sends it itself.
    """

    def __init__(
        self,
        *,
        processes: int,
        allow_private: bool,
        allow_loopback: bool = False,
        nice: int = 0,
    ) -> None:
        self.local = WebhookTransport(allow_private=allow_private, allow_loopback=allow_loopback)
        allow = Allow.of(private=allow_private, loopback=allow_loopback)
        self._children = [_Child(i + 1, allow, nice) for i in range(processes)]

    def pids(self) -> list[int]:
        return [c.proc.pid for c in self._children if c.proc is not None and c.up]

    async def start(self) -> None:
        await self.local.start()
        await asyncio.gather(*(child.spawn() for child in self._children))

    async def close(self) -> None:
        await asyncio.gather(*(child.close() for child in self._children))
        await self.local.close()

    async def deliver(self, req: WebhookRequest) -> AttemptResult:
        best: _Child | None = None
        for child in self._children:
            if child.up and (best is None or len(child.pending) < len(best.pending)):
                best = child
        if best is None:
            return await self.local.deliver(req)
        return await best.deliver(req)
