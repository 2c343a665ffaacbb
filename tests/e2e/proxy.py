"""A small TCP proxy the e2e tests control, to cut a process off from a server.

`TcpProxy` listens on 127.0.0.1 (a random port) in the test's event loop and forwards
every connection to a target (PostgreSQL, by default 127.0.0.1:5432). `cut()` closes
every open connection at once (both sides, so the process sees its connections die as in
a server crash or a network failure) and, until `restore()`, accepts new connections
only to close them straight away; the listening port never changes, so processes
configured with it reconnect by themselves once it is restored.

Bounded: at most `max_connections` open at once (more are closed on arrival), each
upstream connect waits at most `connect_timeout` seconds, and `close()` stops the
listener and every connection. Counters (`accepted`, `refused`) let a test see how
hard its processes knock while the proxy is cut.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()  # RST, no lingering: the peer notices at once
        for task in self.tasks:
            task.cancel()


class TcpProxy:
    def __init__(
        self,
        target_host: str = "127.0.0.1",
        target_port: int = 5432,
        *,
        max_connections: int = 200,
        connect_timeout: float = 5.0,
        chunk: int = 64 * 1024,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.chunk = chunk
        self.port = 0
        self.accepted = 0  # connections forwarded
        self.refused = 0  # connections closed on arrival (cut, or too many)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._cut = False

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def open_connections(self) -> int:
        return len(self._links)

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def url_for(self, url: str) -> str:
        """`url` (a postgresql:// URL naming the target) rewritten to go through us."""
        needle = f"{self.target_host}:{self.target_port}"
        if needle not in url:
            raise ValueError(f"{url!r} does not name {needle}")
        return url.replace(needle, f"127.0.0.1:{self.port}", 1)

    def cut(self) -> int:
        """Close every open connection and refuse new ones until `restore()`. Answers
        how many connections were cut."""
        self._cut = True
        links, self._links = self._links, set()
        for link in links:
            link.abort()
        return len(links)

    def restore(self) -> None:
        self._cut = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)
            self._server = None

    # ------------------------------------------------------------------ internals
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut or len(self._links) >= self.max_connections:
            self.refused += 1
            writer.transport.abort()
            return
        link = _Link(client=writer)
        self._links.add(link)
        try:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.target_host, self.target_port),
                    timeout=self.connect_timeout,
                )
            except (OSError, TimeoutError):
                self.refused += 1
                return
            link.upstream = up_writer
            if link not in self._links:  # cut while we were connecting
                up_writer.transport.abort()
                return
            self.accepted += 1
            link.tasks = [
                asyncio.create_task(self._pump(reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            # Either direction ending (EOF, error, cut) ends the connection.
            _, pending = await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            link.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(self.chunk)
                if not data:
                    return
                writer.write(data)
                await writer.drain()
