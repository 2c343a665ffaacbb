"""The pure rules of bus destinations: URL syntax per kind, the operator's allow-list,
NATS subject templates, credential masking, and the kind-specific spec checks."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings import model
from tidings.policy.buses import (
    ALLOWED_SETTING,
    bus_url_error,
    forbidden_error,
    name_error,
    parse_allowed,
    render_subject,
    subject_error,
)
from tidings.policy.redaction import mask_credentials, redact
from tidings.policy.validation import FieldError, check_destination, from_msgspec

# ------------------------------------------------------------------ URLs per kind


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("redis_stream", "redis://127.0.0.1:6379/0"),
        ("redis_stream", "redis://:secret@cache.internal:6380/15"),
        ("redis_channel", "rediss://user:pw@10.0.0.5"),
        ("redis_channel", "redis://[::1]:6379"),
        ("nats", "nats://127.0.0.1:4222"),
        ("nats", "nats://user:pass@nats.internal"),
        ("nats", "tls://token@nats.internal:4443/"),
    ],
)
def test_good_bus_urls(kind: str, url: str) -> None:
    assert bus_url_error(url, kind) is None


@pytest.mark.parametrize(
    ("kind", "url", "words"),
    [
        ("redis_stream", "http://127.0.0.1:6379", "redis:// or rediss://"),
        ("redis_stream", "nats://127.0.0.1:4222", "redis://"),
        ("nats", "redis://127.0.0.1:6379", "nats:// or tls://"),
        ("redis_stream", "redis://", "host"),
        ("redis_stream", "redis://h:99999/0", "valid URL"),
        ("redis_stream", "redis://h:6379/0?password=x", "?query"),
        ("redis_channel", "redis://h:6379/0#x", "#fragment"),
        ("redis_stream", "redis://h:6379/abc", "database number"),
        ("nats", "nats://h:4222/subject", "path"),
        ("nats", "nats://h\u0131st:4222", "plain ASCII"),
        ("redis_stream", "redis://ex%61mple.com", "plain ASCII"),
    ],
)
def test_bad_bus_urls(kind: str, url: str, words: str) -> None:
    problem = bus_url_error(url, kind)
    assert problem is not None and words in problem


# ------------------------------------------------------------------ the allow-list

ALLOWED = parse_allowed("redis://127.0.0.1:6379, nats://nats.internal, redis://[::1]:7000/2")


def test_parse_allowed_reads_entries_and_default_ports() -> None:
    assert [str(p) for p in ALLOWED] == [
        "redis://127.0.0.1:6379",
        "nats://nats.internal:4222",
        "redis://[::1]:7000/2",
    ]
    assert parse_allowed(None) == parse_allowed("") == parse_allowed(" , ") == ()


@pytest.mark.parametrize(
    "entry",
    ["http://h:80", "redis://:pw@h:6379", "nats://u:p@h", "redis://", "redis://h?x=1", "h:6379"],
)
def test_parse_allowed_refuses_bad_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_allowed(entry)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.1/3",  # the default port
        "redis://:secret@127.0.0.1:6379",  # credentials take no part
        "nats://nats.internal:4222",
        "nats://user:pass@NATS.internal",
        "redis://[::1]:7000/2",
    ],
)
def test_allowed_urls(url: str) -> None:
    assert forbidden_error(url, ALLOWED) is None


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:63790/0",  # a string prefix, not the same port
        "rediss://127.0.0.1:6379",  # another scheme
        "redis://127.0.0.2:6379",
        "redis://localhost:6379",  # another spelling is another entry
        "nats://nats.internal:4223",
        "redis://[::1]:7000/20",  # the path narrows by whole segments
        "redis://[::1]:7000/1",
        "redis://[::1]:7000",
    ],
)
def test_refused_urls_name_the_setting_and_hide_credentials(url: str) -> None:
    problem = forbidden_error(url.replace("://", "://:hunter2@", 1), ALLOWED)
    assert problem is not None
    assert ALLOWED_SETTING in problem and "hunter2" not in problem


def test_unset_allow_list_refuses_every_bus_url() -> None:
    problem = forbidden_error("redis://127.0.0.1:6379", ())
    assert problem is not None and ALLOWED_SETTING in problem and "not set" in problem


# ------------------------------------------------------------------ NATS subjects


@pytest.mark.parametrize(
    "template", ["orders.created", "events.{topic}", "e.{key}.{topic}", "a-b_c.{key}", "x"]
)
def test_good_subjects(template: str) -> None:
    assert subject_error(template) is None


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("a..b", "non-empty tokens"),
        (".a", "non-empty tokens"),
        ("a.", "non-empty tokens"),
        ("a.*", "wildcards"),
        ("a.>", "wildcards"),
        ("a.b*", "wildcards"),
        ("a.{user}", "placeholders"),
        ("a {topic}", "whitespace"),
        ("a.\t", "whitespace"),
        ("a.{topic", "unmatched"),
        ("a.topic}", "unmatched"),
    ],
)
def test_bad_subjects(template: str, words: str) -> None:
    problem = subject_error(template)
    assert problem is not None and words in problem


def test_render_subject_fills_topic_and_key() -> None:
    assert render_subject("orders.created", "order.created", "k") == "orders.created"
    assert render_subject("ev.{topic}", "order.created", "k") == "ev.order.created"
    assert render_subject("ev.{key}.{topic}", "t", "user-1_a") == "ev.user-1_a.t"
    assert render_subject("ev.{key}", "t", "") == "ev._"
    assert render_subject("ev.{key}", "t", "a.b c*>") == "ev.a%2Eb%20c%2A%3E"
    assert render_subject("ev.{key}", "t", "é") == "ev.%C3%A9"


@given(
    key=st.text(max_size=50),
    topic=st.from_regex(r"[a-z0-9_-]{1,8}(\.[a-z0-9_-]{1,8}){0,3}", fullmatch=True),
)
def test_rendered_subjects_are_always_valid_and_keys_stay_one_token(key: str, topic: str) -> None:
    subject = render_subject("ev.{topic}.{key}", topic, key)
    assert subject_error(subject) is None
    assert subject.count(".") == 1 + topic.count(".") + 1


def test_names() -> None:
    assert name_error("orders") is None
    assert name_error("tenant:42 orders") is None
    assert name_error("a\nb") is not None


# ------------------------------------------------------------------ credentials


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://***@h:6379/0"),
        ("nats://user:pass@h:4222", "nats://***@h:4222"),
        ("nats://token@h", "nats://***@h"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("https://example.com/a@b", "https://example.com/a@b"),  # an @ in the path
    ],
)
def test_mask_credentials(url: str, shown: str) -> None:
    assert mask_credentials(url) == shown
    assert "pw" not in redact(f"connecting to {url}") and "pass" not in redact(url)


# ------------------------------------------------------------------ the specs


def spec(**fields: Any) -> model.DestinationSpec:
    body: dict[str, Any] = {"topics": ["a.*"], **fields}
    return msgspec.convert(body, model.DestinationSpec)


def check_error(**fields: Any) -> FieldError:
    with pytest.raises(FieldError) as info:
        check_destination(spec(**fields))
    return info.value


def test_each_kind_decodes_to_its_struct() -> None:
    assert isinstance(spec(kind="webhook", url="https://x.example"), model.WebhookSpec)
    stream = spec(kind="redis_stream", url="redis://h", stream="s", maxlen=10)
    assert isinstance(stream, model.RedisStreamSpec) and stream.maxlen == 10
    assert stream.kind == "redis_stream"
    channel = spec(kind="redis_channel", url="redis://h", channel="c", body="data")
    assert isinstance(channel, model.RedisChannelSpec) and channel.body == "data"
    nats = spec(kind="nats", url="nats://h", subject="a.{key}")
    assert isinstance(nats, model.NatsSpec) and nats.body == "envelope"
    for s in (stream, channel, nats):
        check_destination(s)
        # What the store keeps reads back as the same kind.
        assert msgspec.json.decode(msgspec.json.encode(s), type=model.DestinationSpec) == s


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "redis_stream", "url": "redis://h"}, "stream"),
        ({"kind": "redis_stream", "stream": "s"}, "url"),
        ({"kind": "redis_stream", "url": "redis://h", "stream": ""}, "stream"),
        ({"kind": "redis_stream", "url": "redis://h", "stream": "s", "maxlen": 0}, "maxlen"),
        ({"kind": "redis_stream", "url": "redis://h", "stream": "s", "body": "data"}, "body"),
        ({"kind": "redis_channel", "url": "redis://h"}, "channel"),
        ({"kind": "redis_channel", "url": "redis://h", "channel": "c", "stream": "s"}, "stream"),
        ({"kind": "nats", "url": "nats://h"}, "subject"),
        ({"kind": "nats", "url": "nats://h", "subject": "s", "channel": "c"}, "channel"),
        ({"kind": "webhook", "url": "https://h", "subject": "s"}, "subject"),
        ({"kind": "kafka", "url": "kafka://h"}, "kind"),
    ],
)
def test_kind_fields_are_named_when_wrong(body: dict[str, Any], field: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        spec(**body)
    assert from_msgspec(info.value).field == field


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "redis_stream", "url": "http://h", "stream": "s"}, "url"),
        ({"kind": "redis_stream", "url": "redis://h", "stream": "a\x00b"}, "stream"),
        ({"kind": "redis_channel", "url": "redis://h/x", "channel": "c"}, "url"),
        ({"kind": "redis_channel", "url": "redis://h", "channel": "c\n"}, "channel"),
        ({"kind": "nats", "url": "nats://h", "subject": "a.*"}, "subject"),
        ({"kind": "nats", "url": "https://h", "subject": "a"}, "url"),
        ({"kind": "nats", "url": "nats://h", "subject": "a", "alert_url": "ftp://x"}, "alert_url"),
    ],
)
def test_kind_rules_name_the_field(fields: dict[str, Any], field: str) -> None:
    err = check_error(**fields)
    assert err.field == field and err.message.startswith(field)
