"""The `nats` transport: one JetStream publish per delivery.

The message is the body a webhook would carry (the envelope, or the payload alone with
`"body": "data"`) on the destination's subject with `{topic}` and `{key}` filled in
(`policy.buses.render_subject`), with the headers `Nats-Msg-Id` (the event id: JetStream
stores a retried publish once, within the stream's duplicate window, 2 minutes unless
the stream says otherwise), `Tidings-Topic` and `Tidings-Key`. A delivery is done only
once JetStream acknowledged it (stream and sequence kept as the attempt's answer); a
subject no stream captures is `rejected` (Tidings creates no streams: that is the
operator's). One connection per URL, opened on first use and kept up by nats-py, which
reconnects forever after the server went away; until it is up, attempts wait for it
within their timeout.

Must never apply retry policy or raise for a delivery failure; error texts and log lines
never carry a URL's credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from tidings.model import AttemptResult, Claim, Destination, NatsSpec
from tidings.policy.buses import BusPrefix, render_subject
from tidings.policy.redaction import mask_credentials
from tidings.transports.bus import BusTransport, short
from tidings.transports.envelope import body_of

__all__ = ["NatsConnections", "NatsJetStream"]

log = logging.getLogger(__name__)
RECONNECT_WAIT_S = 0.5
CONNECT_TIMEOUT_S = 2


class _Connection:
    """One URL's connection: being opened, or open (nats-py keeps it so)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = mask_credentials(url)
        self.last_error: str | None = None
        self._opening: asyncio.Task[Client] | None = None
        self._lost = False
        self._closing = False

    async def client(self) -> Client:
        """The open client, once it is; raises what opening it raised (the next call
        tries again)."""
        opening = self._opening
        if opening is None or (opening.done() and opening.exception() is not None):
            opening = self._opening = asyncio.create_task(
                self._open(), name=f"tidings-nats {self.where}"
            )
        return await asyncio.shield(opening)

    async def _open(self) -> Client:
        return await nats.connect(
            servers=[self.url],
            name="tidings",
            allow_reconnect=True,
            max_reconnect_attempts=-1,  # forever, the first connect included
            reconnect_time_wait=RECONNECT_WAIT_S,
            connect_timeout=CONNECT_TIMEOUT_S,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )

    async def _on_error(self, exc: Exception) -> None:
        self.last_error = short(str(exc) or type(exc).__name__)
        log.debug("NATS %s: %s", self.where, self.last_error)

    async def _on_disconnected(self) -> None:
        if not self._lost and not self._closing:
            self._lost = True
            log.warning("NATS %s: connection lost; reconnecting", self.where)

    async def _on_reconnected(self) -> None:
        self._lost = False
        log.info("NATS %s: reconnected", self.where)

    async def close(self) -> None:
        self._closing = True
        opening, self._opening = self._opening, None
        if opening is None:
            return
        if not opening.done():
            opening.cancel()
        with contextlib.suppress(BaseException):
            nc = await opening
            await nc.close()


class NatsConnections:
    """A connection per URL, made on first use."""

    def __init__(self) -> None:
        self._by_url: dict[str, _Connection] = {}

    def get(self, url: str) -> _Connection:
        conn = self._by_url.get(url)
        if conn is None:
            conn = self._by_url[url] = _Connection(url)
        return conn

    async def close(self) -> None:
        conns, self._by_url = self._by_url, {}
        await asyncio.gather(*(c.close() for c in conns.values()))


class NatsJetStream(BusTransport[NatsSpec]):
    """The `nats` kind's transport."""

    spec_type = NatsSpec

    def __init__(
        self, allowed: tuple[BusPrefix, ...], connections: NatsConnections | None = None
    ) -> None:
        super().__init__(allowed)
        self._connections = connections or NatsConnections()

    async def close(self) -> None:
        await self._connections.close()

    async def deliver(self, claim: Claim, destination: Destination) -> AttemptResult:
        spec, attempt, refused = self.begin(destination)
        if refused is not None:
            return refused
        timeout_s = spec.timeout_ms / 1000
        conn = self._connections.get(spec.url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                nc = await conn.client()
        except TimeoutError:
            why = f" ({conn.last_error})" if conn.last_error else ""
            return attempt.failed(
                "connection_error",
                f"NATS {conn.where}: not connected within {timeout_s:g} s{why}",
            )
        except (nats.errors.Error, OSError, ValueError) as exc:  # gave up opening it
            text = str(exc) or type(exc).__name__
            return attempt.failed("connection_error", f"NATS {conn.where}: {text}")
        subject = render_subject(spec.subject, claim.topic, claim.lane_key)
        headers = {"Nats-Msg-Id": claim.event_id, "Tidings-Topic": claim.topic}
        if claim.lane_key and claim.lane_key.isprintable():
            headers["Tidings-Key"] = claim.lane_key
        body = body_of(spec.body, claim.topic, claim.received_at, claim.payload)
        try:
            ack = await nc.jetstream().publish(
                subject, body, timeout=max(deadline - loop.time(), 0.001), headers=headers
            )
        except (TimeoutError, nats.errors.TimeoutError):
            return attempt.timed_out(spec.url, timeout_s, f"NATS JetStream ({subject}) at")
        except nats.js.errors.NoStreamResponseError:
            return attempt.failed(
                "rejected", f"NATS {conn.where}: no JetStream stream captures subject {subject}"
            )
        except nats.js.errors.APIError as exc:
            what = exc.description or f"error {exc.err_code or exc.code}"
            return attempt.failed("rejected", f"NATS {conn.where} JetStream answered: {what}")
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.OutboundBufferLimitError,
            nats.errors.StaleConnectionError,
            nats.errors.NoServersError,
            OSError,
        ) as exc:
            text = str(exc) or type(exc).__name__
            return attempt.failed("connection_error", f"NATS {conn.where}: {text}")
        except nats.errors.Error as exc:
            text = str(exc) or type(exc).__name__
            return attempt.failed("rejected", f"NATS {conn.where}: {text}")
        reply = f"stream {ack.stream} seq {ack.seq}" + (" (duplicate)" if ack.duplicate else "")
        return attempt.delivered(reply)
