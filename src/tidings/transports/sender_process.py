"""A sender process: `python -m tidings.transports.sender_process FD ALLOW`.

Started by a worker's `SenderPool` with one end of a socket pair as FD and the SSRF
allowance of the worker's settings as ALLOW (`nothing`, `loopback` or `private`: an
`Allow` value, passed on the command line rather than read from the environment, so that
a setting from a TOML file or a flag reaches it too). Reads `Ask`
frames, sends each as a webhook through its own `WebhookTransport` (pool, signatures,
SSRF guard), writes a `Reply` frame per attempt. Holds nothing durable: when the worker's
end closes (the worker stopped, or was killed) it exits at once, abandoning any request
still in flight; the worker's leases make sure those are sent again.

Ignores SIGINT and SIGTERM: a Ctrl-C or a service manager signals the whole process
group, and the worker, which drains its deliveries on those signals, still needs this
process until it closes the socket.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys

from tidings.model import AttemptResult
from tidings.observability import configure_logging
from tidings.policy.addresses import Allow
from tidings.runtime import run_loop, tune_gc
from tidings.timeutil import now_us
from tidings.transports.frames import FramedProtocol
from tidings.transports.senders import Ask, Reply, ask_decoder, encode
from tidings.transports.webhook import WebhookTransport

log = logging.getLogger("tidings.sender")


async def serve(fd: int, allow: Allow) -> None:
    transport = WebhookTransport(
        allow_private=allow is Allow.PRIVATE, allow_loopback=allow is Allow.LOOPBACK
    )
    await transport.start()
    gone = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    proto: FramedProtocol | None = None

    async def send(ask: Ask) -> None:
        try:
            result = await transport.deliver(ask.request)
        except Exception as exc:  # a bug, not the receiver's failure: report, do not die
            log.exception("delivery of %s failed inside Tidings", ask.request.event_id)
            result = AttemptResult(
                at=now_us(), outcome="connection_error", error=f"internal: {exc}"
            )
        if proto is not None:
            proto.send(encode(Reply(ask.rid, result)))

    loop = asyncio.get_running_loop()  # kept: each lookup costs a getpid() system call

    def on_frame(body: bytes) -> None:
        task = loop.create_task(send(ask_decoder.decode(body)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_lost(exc: BaseException | None) -> None:
        if exc is not None:
            log.error("sender process: connection to the worker failed: %s", exc)
        gone.set()

    sock = socket.socket(fileno=fd)
    _, proto = await loop.create_unix_connection(
        lambda: FramedProtocol(on_frame, on_lost), sock=sock
    )
    tune_gc()
    proto.send(b"")  # hello: ready to send
    await gone.wait()
    # Whatever is still in flight is abandoned on purpose (see the module docstring):
    # skip the teardown of sessions and tasks, nobody is left to hear how they end.
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str]) -> None:
    allowances = "|".join(a.value for a in Allow)
    if len(argv) not in (3, 4) or argv[2] not in {a.value for a in Allow}:
        raise SystemExit(
            f"usage: python -m tidings.transports.sender_process FD {allowances} [NICE]"
        )
    if len(argv) == 4 and int(argv[3]):
        os.nice(int(argv[3]))  # TIDINGS_SENDER_NICE: below the API process that spawned us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(
        os.environ.get("TIDINGS_LOG_LEVEL", "info"), os.environ.get("TIDINGS_LOG_FORMAT", "auto")
    )
    run_loop(serve(int(argv[1]), Allow(argv[2])))


if __name__ == "__main__":
    main(sys.argv)
