"""Settings: one typed object built once at start-up and passed down.

Sources, lowest to highest precedence: defaults, a TOML file (`TIDINGS_CONFIG`, else
`./tidings.toml` when present; keys are the setting names below in lower case),
environment variables `TIDINGS_<NAME>`, command-line flags. Owns reading those sources;
must never be consulted from deep inside the engine (pass the values down instead).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from tidings.policy.buses import BusPrefix, parse_allowed
from tidings.policy.topics import topic_error


class ConfigError(ValueError):
    pass


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    database_url: str = "sqlite:///./tidings.db"
    redis_url: str | None = None
    redis_prefix: Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[^\s]+$")] = (
        "tidings:"
    )
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8080
    api_key: str | None = None
    allow_private_targets: bool = False
    allow_loopback_targets: bool = False
    bus_allowed_urls: str = ""
    watch_dir: str | None = None
    watch_topic: str = "file.row"
    compat_topic: str = "event.published"
    watch_interval_ms: Annotated[int, Meta(ge=10, le=3_600_000)] = 1_000
    watch_message: Annotated[str, Meta(max_length=64 * 1024)] = ""
    max_payload_bytes: Annotated[int, Meta(ge=1, le=64 * 1024 * 1024)] = 1024 * 1024
    max_request_bytes: Annotated[int, Meta(ge=1024, le=1024 * 1024 * 1024)] = 16 * 1024 * 1024
    upload_dir: str = "./tidings-uploads"
    max_upload_bytes: Annotated[int, Meta(ge=1024, le=1 << 40)] = 4 * 1024 * 1024 * 1024
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text", "auto"] = "auto"
    log_notice_limit: Annotated[int, Meta(ge=1, le=1_000_000)] = 10
    log_notice_window_s: Annotated[int, Meta(ge=1, le=86_400)] = 60
    pause_after_failures: Annotated[int, Meta(ge=0)] = 100
    retention_ttl_s: Annotated[int, Meta(ge=0)] = 7 * 24 * 3600
    inbox_ttl_s: Annotated[int, Meta(ge=0)] = 30 * 24 * 3600
    inbox_acked_ttl_s: Annotated[int, Meta(ge=0)] = 24 * 3600
    inbox_max: Annotated[int, Meta(ge=1, le=100_000_000)] = 10_000
    ws_max_connections: Annotated[int, Meta(ge=0, le=10_000_000)] = 10_000
    ws_connect_rate: Annotated[float, Meta(gt=0, le=1_000_000)] = 500.0
    ws_send_queue: Annotated[int, Meta(ge=1, le=1_000_000)] = 1_000
    ws_ping_s: Annotated[float, Meta(ge=0.1, le=3600)] = 25.0
    ws_presence_ttl_s: Annotated[float, Meta(ge=0.3, le=3600)] = 30.0
    lease_margin_ms: Annotated[int, Meta(ge=100, le=3_600_000)] = 5_000
    poll_interval_ms: Annotated[int, Meta(ge=10, le=60_000)] = 1_000
    drain_timeout_ms: Annotated[int, Meta(ge=0, le=3_600_000)] = 10_000
    sender_processes: Annotated[int, Meta(ge=0, le=64)] | None = None
    sender_nice: Annotated[int, Meta(ge=0, le=19)] = 0
    metrics_port: Annotated[int, Meta(ge=0, le=65535)] | None = None

    @property
    def bus_prefixes(self) -> tuple[BusPrefix, ...]:
        """TIDINGS_BUS_ALLOWED_URLS, parsed (`load_settings` checked it)."""
        return parse_allowed(self.bus_allowed_urls)


@dataclass(frozen=True)
class SettingDoc:
    name: str
    meaning: str
    # How the default reads in docs/configuration.md when Settings' own default alone
    # would mislead (None there meaning "worked out at start-up", not "unset").
    default: str | None = None

    @property
    def env(self) -> str:
        return "TIDINGS_" + self.name.upper()


SETTING_DOCS: tuple[SettingDoc, ...] = (
    SettingDoc("database_url", "sqlite:///PATH (default ./tidings.db) or postgresql://..."),
    SettingDoc(
        "redis_url",
        "redis://...; makes rate_limit_per_s cluster-wide across worker processes "
        "(without it, each worker enforces the limit on its own) and lets API processes "
        "wake workers in other processes at once",
    ),
    SettingDoc(
        "redis_prefix",
        "what every Redis key and channel Tidings uses begins with (rate limits, wake-ups, "
        "inbox pushes, presence), so that two deployments can share one Redis server: give "
        "each its own (default tidings:)",
    ),
    SettingDoc("host", "address the API listens on (default 127.0.0.1)"),
    SettingDoc("port", "port the API listens on (default 8080; 0 picks a free port)"),
    SettingDoc(
        "api_key",
        "bearer key every /v1 call must carry; unset: serve creates one on first start, "
        "stores its hash and prints it once",
    ),
    SettingDoc(
        "allow_private_targets",
        "1 lets webhooks target loopback/private/link-local addresses (development, tests)",
    ),
    SettingDoc(
        "allow_loopback_targets",
        "1 lets webhooks (and alerts) target this host's loopback only: 127.0.0.0/8, ::1 "
        "and names that resolve to them (development; `make run` sets it); other private "
        "and link-local addresses stay refused. The server's first log line says it is on",
    ),
    SettingDoc(
        "bus_allowed_urls",
        "the operator's own bus servers that redis_stream, redis_channel and nats "
        "destinations may name: comma-separated scheme://host:port prefixes (redis://, "
        "rediss://, nats://, tls://; a path, such as a Redis database /2, narrows an entry); "
        "the SSRF guard does not apply to bus URLs. Unset: bus destinations are refused "
        "(docs/buses.md)",
        default="unset (no bus destinations)",
    ),
    SettingDoc(
        "watch_dir",
        "a folder whose new CSV files (`user_id[,message]` rows) and JSON-lines files "
        "(`*.jsonl`: `user_id`/`userId`, `message`/`alertMessage`) are ingested, one event per "
        "row, then moved to done/ with a report and a NAME.rejects.csv of the bad lines "
        "(docs/file-ingest.md)",
    ),
    SettingDoc(
        "watch_topic",
        "the topic of the events of folder ingest and POST /v1/uploads (default file.row)",
    ),
    SettingDoc(
        "compat_topic",
        "the topic of events sent to POST /publish-event (the Redis event delivery system's "
        "call; default event.published)",
    ),
    SettingDoc(
        "watch_interval_ms",
        "how often the watched folder is scanned; a file is read once it has not changed "
        "for a scan and for 2 s (10 s without a final newline) (default 1000)",
    ),
    SettingDoc(
        "watch_message",
        "the message of a watched file's rows that have none (a file of bare user ids); "
        "a different message makes the same file new rows (default empty)",
    ),
    SettingDoc("max_payload_bytes", "largest event payload accepted, in bytes (default 1 MiB)"),
    SettingDoc(
        "max_request_bytes",
        "largest request body accepted, in bytes, as sent and once a gzip or deflate "
        "Content-Encoding is undone (default 16 MiB); an upload larger than this is spooled "
        "to TIDINGS_UPLOAD_DIR and read in the background",
    ),
    SettingDoc(
        "upload_dir",
        "where uploads larger than TIDINGS_MAX_REQUEST_BYTES wait to be read, and their "
        "ID.rejects.csv files stay (default ./tidings-uploads)",
    ),
    SettingDoc("max_upload_bytes", "largest upload accepted, in bytes (default 4 GiB)"),
    SettingDoc("log_level", "debug, info, warning or error (default info)"),
    SettingDoc("log_format", "json, text, or auto: json unless stderr is a terminal"),
    SettingDoc(
        "log_notice_limit",
        "most log lines of one kind (dead letter, pause, resume) one destination writes "
        "in any TIDINGS_LOG_NOTICE_WINDOW_S seconds, per process; the rest are counted in "
        "one summary line a window (default 10)",
    ),
    SettingDoc(
        "log_notice_window_s",
        "the window of TIDINGS_LOG_NOTICE_LIMIT, in seconds (default 60)",
    ),
    SettingDoc(
        "pause_after_failures",
        "pause a destination after this many consecutive failed attempts (default 100; "
        "0 never pauses); PATCH enabled=true or state=active resumes it",
    ),
    SettingDoc(
        "retention_ttl_s",
        "delete events whose deliveries are all delivered once this old, in seconds "
        "(default 604800 = 7 days; 0 = as soon as the last delivery succeeds)",
    ),
    SettingDoc(
        "inbox_ttl_s",
        "delete a user's inbox message this long after it was received, acked or not, "
        "in seconds (default 2592000 = 30 days); its event stays while a message names it",
    ),
    SettingDoc(
        "inbox_acked_ttl_s",
        "delete an acked inbox message this long after its ack, in seconds (default 86400 = 1 day)",
    ),
    SettingDoc(
        "inbox_max",
        "messages kept per user's inbox; past it the oldest are dropped, counted in "
        "tidings_inbox_dropped (default 10000)",
    ),
    SettingDoc(
        "ws_max_connections",
        "WebSocket connections one API process holds; past it a new one is answered 503 "
        "before the upgrade (default 10000)",
    ),
    SettingDoc(
        "ws_connect_rate",
        "WebSockets one API process accepts a second (a token bucket; past it 503 "
        "before the upgrade, so a reconnect storm spreads out; default 500)",
    ),
    SettingDoc(
        "ws_send_queue",
        "messages waiting to be sent to one socket; a socket whose queue fills is closed "
        "with code 4008 and resumes from its offset (default 1000)",
    ),
    SettingDoc(
        "ws_ping_s",
        "seconds between the server's pings on a socket; one that does not answer within "
        "half of it is closed (default 25)",
    ),
    SettingDoc(
        "ws_presence_ttl_s",
        "with TIDINGS_REDIS_URL, how long a socket's presence heartbeat in Redis lasts "
        "(renewed every third of it): a crashed node's users go offline within it "
        "(default 30)",
    ),
    SettingDoc(
        "lease_margin_ms",
        "a claimed delivery's lease is its destination's timeout plus this (default 5000); "
        "a worker that dies loses its leases after that long",
    ),
    SettingDoc(
        "poll_interval_ms",
        "longest a worker sleeps between looks for due deliveries when nothing wakes it "
        "(default 1000)",
    ),
    SettingDoc(
        "drain_timeout_ms",
        "on SIGTERM, how long in-flight deliveries may finish before they are given back "
        "(default 10000)",
    ),
    SettingDoc(
        "sender_processes",
        "child processes a worker sends its webhooks (and alerts) through, so that HTTP "
        "runs on another core than the store and the engine (default: one per CPU, at "
        "most 4; 0 on a single CPU; 0 = send from the worker process itself); bus "
        "destinations are always sent from the worker process",
        default="one per CPU, at most 4; 0 on one CPU",
    ),
    SettingDoc(
        "sender_nice",
        "how much lower the sender processes' CPU priority is than the process that "
        "starts them (0-19, added to its nice value): on a machine whose cores are busy, "
        "webhook sending (a retry storm included) then yields to the API, the WebSocket "
        "gateway and the engine (default 0, the same priority)",
    ),
    SettingDoc(
        "metrics_port",
        "`tidings worker` serves /metrics, /healthz and /readyz on this port (at "
        "TIDINGS_HOST); unset: a worker serves no HTTP. `serve` and `api` serve them on "
        "TIDINGS_PORT",
    ),
)

CONFIG_FILE_DOC = "path of the TOML file (default ./tidings.toml if present)"

_FIELDS = frozenset(Settings.__struct_fields__)


def settings_help() -> str:
    # "\b" keeps click from re-wrapping the table into one paragraph.
    lines = [
        "\b",
        "Settings (environment variable, or the same key in lower case in tidings.toml):",
    ]
    for doc in SETTING_DOCS:
        lines.append(f"  {doc.env}: {doc.meaning}")
    lines.append(f"  TIDINGS_CONFIG: {CONFIG_FILE_DOC}")
    return "\n".join(lines)


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    unknown = set(data) - _FIELDS
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return data


_CASELESS = frozenset({"log_level", "log_format"})  # TIDINGS_LOG_LEVEL=INFO is fine


def load_settings(
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Merge defaults, TOML file, environment and `overrides` (None values are ignored)."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    config_path = env.get("TIDINGS_CONFIG")
    if config_path:
        merged.update(_from_toml(Path(config_path)))
    else:
        default = (cwd or Path.cwd()) / "tidings.toml"
        if default.is_file():
            merged.update(_from_toml(default))
    for name in _FIELDS:
        value = env.get("TIDINGS_" + name.upper())
        if value is not None and value != "":
            merged[name] = value.lower() if name in _CASELESS else value
    for name, value in (overrides or {}).items():
        if value is not None:
            merged[name] = value
    try:
        settings = msgspec.convert(merged, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid setting: {exc}") from exc
    try:
        parse_allowed(settings.bus_allowed_urls)
    except ValueError as exc:
        raise ConfigError(f"invalid setting: bus_allowed_urls: {exc}") from None
    for name in ("watch_topic", "compat_topic"):
        topic = getattr(settings, name)
        if problem := topic_error(topic):
            raise ConfigError(f"invalid setting: {name} {topic!r} {problem}")
    return settings
