"""Unit tests for tidings.config: defaults, TOML, environment and override precedence.

Every test passes `env` and `cwd` explicitly; os.environ is never read or changed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tidings.config import (
    SETTING_DOCS,
    ConfigError,
    Settings,
    load_settings,
    settings_help,
)


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    path = tmp_path / "empty"
    path.mkdir()
    return path


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def load(env: dict[str, str], cwd: Path, overrides: dict[str, Any] | None = None) -> Settings:
    return load_settings(env=env, overrides=overrides, cwd=cwd)


# --- defaults ------------------------------------------------------------------------------


def test_defaults_match_the_contract(empty_dir: Path) -> None:
    s = load({}, empty_dir)
    assert s == Settings()
    assert s.database_url == "sqlite:///./tidings.db"
    assert s.redis_url is None
    assert s.host == "127.0.0.1"
    assert s.port == 8080
    assert s.api_key is None
    assert s.allow_private_targets is False
    assert s.allow_loopback_targets is False
    assert s.watch_dir is None
    assert s.max_payload_bytes == 1024 * 1024
    assert s.max_request_bytes == 16 * 1024 * 1024
    assert s.log_level == "info"
    assert s.log_format == "auto"


def test_unrelated_environment_is_ignored(empty_dir: Path) -> None:
    env = {"PORT": "1", "HOST": "x", "TIDINGS_NOT_A_SETTING": "x", "tidings_port": "1"}
    assert load(env, empty_dir) == Settings()


def test_empty_env_values_are_ignored(empty_dir: Path) -> None:
    assert load({"TIDINGS_PORT": "", "TIDINGS_HOST": ""}, empty_dir) == Settings()


# --- TOML ----------------------------------------------------------------------------------


def test_toml_in_cwd(tmp_path: Path) -> None:
    write_toml(
        tmp_path / "tidings.toml",
        'host = "0.0.0.0"\nport = 9000\nallow_private_targets = true\n'
        'database_url = "sqlite:////var/lib/t.db"\nredis_url = "redis://r:6379/0"\n',
    )
    s = load({}, tmp_path)
    assert s.host == "0.0.0.0"
    assert s.port == 9000
    assert s.allow_private_targets is True
    assert s.database_url == "sqlite:////var/lib/t.db"
    assert s.redis_url == "redis://r:6379/0"
    assert s.api_key is None  # untouched keys keep their defaults


def test_toml_via_tidings_config(tmp_path: Path, empty_dir: Path) -> None:
    config = write_toml(tmp_path / "custom.toml", "port = 7000\nlog_level = 'debug'\n")
    s = load({"TIDINGS_CONFIG": str(config)}, empty_dir)
    assert s.port == 7000
    assert s.log_level == "debug"


def test_tidings_config_replaces_the_cwd_file(tmp_path: Path) -> None:
    write_toml(tmp_path / "tidings.toml", 'host = "from-cwd"\n')
    config = write_toml(tmp_path / "other.toml", "port = 7001\n")
    s = load({"TIDINGS_CONFIG": str(config)}, tmp_path)
    assert s.port == 7001
    assert s.host == "127.0.0.1"


def test_empty_tidings_config_falls_back_to_cwd(tmp_path: Path) -> None:
    write_toml(tmp_path / "tidings.toml", "port = 7002\n")
    assert load({"TIDINGS_CONFIG": ""}, tmp_path).port == 7002


def test_cwd_directory_named_tidings_toml_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "tidings.toml").mkdir()
    assert load({}, tmp_path) == Settings()


def test_missing_config_file(tmp_path: Path, empty_dir: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="cannot read config file"):
        load({"TIDINGS_CONFIG": str(missing)}, empty_dir)


def test_malformed_toml(tmp_path: Path) -> None:
    write_toml(tmp_path / "tidings.toml", "port = = 1\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load({}, tmp_path)


def test_unknown_toml_keys(tmp_path: Path) -> None:
    write_toml(tmp_path / "tidings.toml", "port = 1\nzeta = 1\nalpha = 2\n")
    with pytest.raises(ConfigError) as info:
        load({}, tmp_path)
    message = str(info.value)
    assert "unknown setting(s) alpha, zeta" in message
    assert "port" not in message.split("unknown setting(s)")[1]


def test_unknown_toml_table(tmp_path: Path) -> None:
    write_toml(tmp_path / "tidings.toml", "[server]\nport = 1\n")
    with pytest.raises(ConfigError, match="server"):
        load({}, tmp_path)


def test_upper_case_toml_keys_are_unknown(tmp_path: Path) -> None:
    write_toml(tmp_path / "tidings.toml", "PORT = 1\n")
    with pytest.raises(ConfigError, match="PORT"):
        load({}, tmp_path)


def test_invalid_toml_value(tmp_path: Path) -> None:
    write_toml(tmp_path / "tidings.toml", "port = 70000\n")
    with pytest.raises(ConfigError, match="port"):
        load({}, tmp_path)


# --- precedence ----------------------------------------------------------------------------


def test_env_overrides_toml(tmp_path: Path) -> None:
    write_toml(tmp_path / "tidings.toml", 'port = 9000\nhost = "toml-host"\n')
    s = load({"TIDINGS_PORT": "9100"}, tmp_path)
    assert s.port == 9100
    assert s.host == "toml-host"


def test_overrides_beat_env_and_toml(tmp_path: Path) -> None:
    write_toml(
        tmp_path / "tidings.toml", 'port = 9000\nhost = "toml-host"\nlog_level = "warning"\n'
    )
    env = {"TIDINGS_PORT": "9100", "TIDINGS_HOST": "env-host"}
    s = load(env, tmp_path, overrides={"port": 9200})
    assert s.port == 9200
    assert s.host == "env-host"
    assert s.log_level == "warning"


def test_none_overrides_are_ignored(tmp_path: Path) -> None:
    write_toml(tmp_path / "tidings.toml", 'host = "toml-host"\n')
    env = {"TIDINGS_PORT": "9100"}
    s = load(env, tmp_path, overrides={"port": None, "host": None, "api_key": None})
    assert s.port == 9100
    assert s.host == "toml-host"
    assert s.api_key is None


def test_overrides_can_set_false_and_zero(empty_dir: Path) -> None:
    env = {"TIDINGS_ALLOW_PRIVATE_TARGETS": "1", "TIDINGS_PORT": "9100"}
    s = load(env, empty_dir, overrides={"allow_private_targets": False, "port": 0})
    assert s.allow_private_targets is False
    assert s.port == 0


def test_unknown_override_rejected(empty_dir: Path) -> None:
    with pytest.raises(ConfigError):
        load({}, empty_dir, overrides={"nope": 1})


def test_every_setting_can_come_from_env(empty_dir: Path) -> None:
    env = {
        "TIDINGS_DATABASE_URL": "postgresql://u@db/tidings",
        "TIDINGS_REDIS_URL": "redis://localhost:6379/0",
        "TIDINGS_HOST": "0.0.0.0",
        "TIDINGS_PORT": "0",
        "TIDINGS_API_KEY": "k-123",
        "TIDINGS_ALLOW_PRIVATE_TARGETS": "1",
        "TIDINGS_ALLOW_LOOPBACK_TARGETS": "1",
        "TIDINGS_WATCH_DIR": "/srv/in",
        "TIDINGS_MAX_PAYLOAD_BYTES": "2048",
        "TIDINGS_MAX_REQUEST_BYTES": "4096",
        "TIDINGS_UPLOAD_DIR": "/tmp/spool",
        "TIDINGS_MAX_UPLOAD_BYTES": "8192",
        "TIDINGS_LOG_LEVEL": "debug",
        "TIDINGS_LOG_FORMAT": "json",
        "TIDINGS_PAUSE_AFTER_FAILURES": "7",
        "TIDINGS_RETENTION_TTL_S": "0",
        "TIDINGS_LEASE_MARGIN_MS": "250",
        "TIDINGS_POLL_INTERVAL_MS": "50",
        "TIDINGS_DRAIN_TIMEOUT_MS": "1500",
        "TIDINGS_SENDER_PROCESSES": "3",
        "TIDINGS_SENDER_NICE": "7",
        "TIDINGS_REDIS_PREFIX": "staging:",
        "TIDINGS_METRICS_PORT": "9090",
        "TIDINGS_WATCH_TOPIC": "alerts.row",
        "TIDINGS_WATCH_INTERVAL_MS": "250",
        "TIDINGS_WATCH_MESSAGE": "Server down",
        "TIDINGS_COMPAT_TOPIC": "legacy.event",
        "TIDINGS_LOG_NOTICE_LIMIT": "3",
        "TIDINGS_LOG_NOTICE_WINDOW_S": "5",
        "TIDINGS_INBOX_TTL_S": "60",
        "TIDINGS_INBOX_ACKED_TTL_S": "30",
        "TIDINGS_INBOX_MAX": "5",
        "TIDINGS_WS_MAX_CONNECTIONS": "7",
        "TIDINGS_WS_CONNECT_RATE": "3.5",
        "TIDINGS_WS_SEND_QUEUE": "9",
        "TIDINGS_WS_PING_S": "2",
        "TIDINGS_WS_PRESENCE_TTL_S": "6",
        "TIDINGS_BUS_ALLOWED_URLS": "redis://10.0.0.5:6379, nats://bus.internal:4222",
    }
    assert load(env, empty_dir) == Settings(
        database_url="postgresql://u@db/tidings",
        redis_url="redis://localhost:6379/0",
        host="0.0.0.0",
        port=0,
        api_key="k-123",
        allow_private_targets=True,
        allow_loopback_targets=True,
        watch_dir="/srv/in",
        max_payload_bytes=2048,
        max_request_bytes=4096,
        upload_dir="/tmp/spool",
        max_upload_bytes=8192,
        log_level="debug",
        log_format="json",
        pause_after_failures=7,
        retention_ttl_s=0,
        lease_margin_ms=250,
        poll_interval_ms=50,
        drain_timeout_ms=1500,
        sender_processes=3,
        sender_nice=7,
        redis_prefix="staging:",
        metrics_port=9090,
        watch_topic="alerts.row",
        watch_interval_ms=250,
        watch_message="Server down",
        compat_topic="legacy.event",
        log_notice_limit=3,
        log_notice_window_s=5,
        inbox_ttl_s=60,
        inbox_acked_ttl_s=30,
        inbox_max=5,
        ws_max_connections=7,
        ws_connect_rate=3.5,
        ws_send_queue=9,
        ws_ping_s=2.0,
        ws_presence_ttl_s=6.0,
        bus_allowed_urls="redis://10.0.0.5:6379, nats://bus.internal:4222",
    )
    assert {f"TIDINGS_{name.upper()}" for name in Settings.__struct_fields__} == set(env)


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("0", False), ("true", True), ("false", False)],
)
def test_bool_parsing(empty_dir: Path, raw: str, expected: bool) -> None:
    s = load({"TIDINGS_ALLOW_PRIVATE_TARGETS": raw}, empty_dir)
    assert s.allow_private_targets is expected


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TIDINGS_ALLOW_PRIVATE_TARGETS", "yes"),
        ("TIDINGS_ALLOW_PRIVATE_TARGETS", "2"),
        ("TIDINGS_ALLOW_PRIVATE_TARGETS", "maybe"),
        ("TIDINGS_LOG_NOTICE_LIMIT", "0"),
        ("TIDINGS_LOG_NOTICE_WINDOW_S", "0"),
        ("TIDINGS_PORT", "abc"),
        ("TIDINGS_PORT", "8080.5"),
        ("TIDINGS_PORT", "65536"),
        ("TIDINGS_PORT", "-1"),
        ("TIDINGS_MAX_PAYLOAD_BYTES", "0"),
        ("TIDINGS_MAX_PAYLOAD_BYTES", str(64 * 1024 * 1024 + 1)),
        ("TIDINGS_MAX_REQUEST_BYTES", "1023"),
        ("TIDINGS_SENDER_PROCESSES", "-1"),
        ("TIDINGS_SENDER_PROCESSES", "65"),
        ("TIDINGS_SENDER_PROCESSES", "two"),
        ("TIDINGS_LOG_LEVEL", "verbose"),
        ("TIDINGS_LOG_FORMAT", "xml"),
        ("TIDINGS_WATCH_TOPIC", "bad topic"),
        ("TIDINGS_WATCH_TOPIC", "a..b"),
    ],
)
def test_invalid_values_raise_config_error(empty_dir: Path, name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match="invalid setting"):
        load({name: raw}, empty_dir)


def test_log_settings_ignore_case_in_the_environment(empty_dir: Path) -> None:
    s = load({"TIDINGS_LOG_LEVEL": "WARNING", "TIDINGS_LOG_FORMAT": "Json"}, empty_dir)
    assert (s.log_level, s.log_format) == ("warning", "json")


def test_port_bounds(empty_dir: Path) -> None:
    assert load({"TIDINGS_PORT": "65535"}, empty_dir).port == 65535
    assert load({"TIDINGS_PORT": "0"}, empty_dir).port == 0


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --- help ----------------------------------------------------------------------------------


def test_every_setting_is_documented() -> None:
    assert [doc.name for doc in SETTING_DOCS] == list(Settings.__struct_fields__)
    assert all(doc.env == "TIDINGS_" + doc.name.upper() for doc in SETTING_DOCS)
    assert all(doc.meaning.strip() for doc in SETTING_DOCS)


def test_settings_help_mentions_every_variable() -> None:
    text = settings_help()
    mentioned = set(re.findall(r"TIDINGS_[A-Z_]+", text))
    expected = {"TIDINGS_" + name.upper() for name in Settings.__struct_fields__}
    assert mentioned == expected | {"TIDINGS_CONFIG"}
    # The variables the public contract (API.md) promises.
    for name in (
        "TIDINGS_DATABASE_URL",
        "TIDINGS_REDIS_URL",
        "TIDINGS_HOST",
        "TIDINGS_PORT",
        "TIDINGS_API_KEY",
        "TIDINGS_ALLOW_PRIVATE_TARGETS",
        "TIDINGS_WATCH_DIR",
    ):
        assert name in text
    for doc in SETTING_DOCS:
        assert f"{doc.env}: {doc.meaning}" in text


def test_bus_allowed_urls_are_checked_at_load(empty_dir: Path) -> None:
    settings = load({"TIDINGS_BUS_ALLOWED_URLS": "redis://h:6379,nats://n"}, empty_dir)
    assert [str(p) for p in settings.bus_prefixes] == ["redis://h:6379", "nats://n:4222"]
    assert load({}, empty_dir).bus_prefixes == ()
    for bad in ("http://h:80", "redis://:pw@h:6379", "redis://", "nats://h:4222?x=1"):
        with pytest.raises(ConfigError, match="bus_allowed_urls"):
            load({"TIDINGS_BUS_ALLOWED_URLS": bad}, empty_dir)
