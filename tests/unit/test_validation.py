"""Unit tests for tidings.policy.validation: msgspec errors, destination and event rules."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from tidings import model
from tidings.policy.validation import (
    FieldError,
    check_destination,
    check_event,
    from_msgspec,
    url_error,
)


def decode_error(body: bytes | str, type_: Any) -> msgspec.MsgspecError:
    with pytest.raises(msgspec.MsgspecError) as info:
        msgspec.json.decode(body, type=type_)
    return info.value


def field_of(body: Any, type_: Any, prefix: str = "") -> FieldError:
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return from_msgspec(decode_error(raw, type_), prefix)


def spec(**fields: Any) -> model.DestinationSpec:
    """A valid webhook spec with `fields` replaced, built through msgspec like the API does."""
    body: dict[str, Any] = {"kind": "webhook", "url": "https://example.com/hook", "topics": ["a"]}
    body.update(fields)
    return msgspec.convert(body, model.DestinationSpec)


def check_error(s: model.DestinationSpec) -> FieldError:
    with pytest.raises(FieldError) as info:
        check_destination(s)
    return info.value


def event(topic: str = "order.created", payload: bytes = b"{}") -> model.EventIn:
    return model.EventIn(topic=topic, payload=msgspec.Raw(payload))


def event_error(e: model.EventIn, limit: int = 1024, prefix: str = "") -> FieldError:
    with pytest.raises(FieldError) as info:
        check_event(e, limit, prefix)
    return info.value


# --- FieldError ----------------------------------------------------------------------------


def test_field_error_shape() -> None:
    err = FieldError("events[3].topic", "bad topic")
    assert isinstance(err, ValueError)
    assert (err.field, err.message, err.code, str(err)) == (
        "events[3].topic",
        "bad topic",
        "invalid_field",
        "bad topic",
    )
    assert FieldError(None, "m", code="x").code == "x"


# --- from_msgspec --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "type_", "field"),
    [
        ({"events": [{"topic": "a"}, {"topic": 1}]}, model.BatchIn, "events[1].topic"),
        ({"events": [{"topic": "a", "x": 1}]}, model.BatchIn, "events[0].x"),
        ({"events": [{"topic": "a"}, {}]}, model.BatchIn, "events[1].topic"),
        (
            {"events": [{"topic": "a", "recipients": [""]}]},
            model.BatchIn,
            "events[0].recipients[0]",
        ),
        ({"events": [{"topic": "a", "key": 5}]}, model.BatchIn, "events[0].key"),
        ({"events": []}, model.BatchIn, "events"),
        ({"events": {"topic": "a"}}, model.BatchIn, "events"),
        ({"events": [{"topic": "a"}], "extra": True}, model.BatchIn, "extra"),
        ({}, model.BatchIn, "events"),
        ({"topic": 1}, model.EventIn, "topic"),
        ({"topic": "a", "bogus": 1}, model.EventIn, "bogus"),
        ({"key": "k"}, model.EventIn, "topic"),
        ({"topic": "a", "idempotency_key": ""}, model.EventIn, "idempotency_key"),
        ({"topic": "a", "key": "k" * 256}, model.EventIn, "key"),
        ({"kind": "webhook", "url": "https://x.example"}, model.DestinationSpec, "topics"),
        ({"kind": "webhook", "topics": ["a"]}, model.DestinationSpec, "url"),
        ({"topics": ["a"]}, model.DestinationSpec, "kind"),
        ({"kind": "email", "topics": ["a"]}, model.DestinationSpec, "kind"),
        ({"kind": "webhook", "topics": []}, model.DestinationSpec, "topics"),
        ({"kind": "webhook", "topics": ["a", 2]}, model.DestinationSpec, "topics[1]"),
        (
            {"kind": "webhook", "topics": ["a"], "retry": {"max_attempts": 0}},
            model.DestinationSpec,
            "retry.max_attempts",
        ),
        (
            {"kind": "webhook", "topics": ["a"], "retry": {"nope": 1}},
            model.DestinationSpec,
            "retry.nope",
        ),
        (
            {"kind": "webhook", "topics": ["a"], "ordering": "random"},
            model.DestinationSpec,
            "ordering",
        ),
        (
            {"kind": "webhook", "topics": ["a"], "timeout_ms": 99},
            model.DestinationSpec,
            "timeout_ms",
        ),
        ({"kind": "webhook", "topics": ["a"], "filter": [1]}, model.DestinationSpec, "filter"),
    ],
)
def test_from_msgspec_names_the_field(body: Any, type_: Any, field: str) -> None:
    err = field_of(body, type_)
    assert err.field == field
    assert err.code in ("missing_field", "invalid_field")  # which one: the test below
    assert " - at " not in err.message
    assert "$" not in err.message
    assert err.message


@pytest.mark.parametrize(
    ("body", "type_", "field", "code"),
    [
        ({}, model.EventIn, "topic", "missing_field"),
        ({"events": [{"topic": "a"}, {}]}, model.BatchIn, "events[1].topic", "missing_field"),
        ({"topics": ["a"]}, model.DestinationSpec, "kind", "missing_field"),
        (
            {"kind": "webhook", "url": "https://x.example"},
            model.DestinationSpec,
            "topics",
            "missing_field",
        ),
        ({"kind": "webhook", "topics": ["a"]}, model.DestinationSpec, "url", "missing_field"),
        ({"topic": 1}, model.EventIn, "topic", "invalid_field"),
        ({"topic": "a", "nope": 1}, model.EventIn, "nope", "invalid_field"),
        ({"kind": "webhook", "topics": []}, model.DestinationSpec, "topics", "invalid_field"),
    ],
)
def test_from_msgspec_codes(body: Any, type_: Any, field: str, code: str) -> None:
    err = field_of(body, type_)
    assert (err.field, err.code) == (field, code)


def test_from_msgspec_messages() -> None:
    err = field_of({"events": [{"topic": "a"}, {"topic": 1}]}, model.BatchIn)
    assert err.message == "Expected `str`, got `int`"
    err = field_of({"events": [{"topic": "a", "x": 1}]}, model.BatchIn)
    assert "unknown field `x`" in err.message
    err = field_of({"events": [{}]}, model.BatchIn)
    assert "missing required field `topic`" in err.message
    assert err.code == "missing_field"


def test_from_msgspec_root_type_error_has_no_field() -> None:
    err = field_of([], model.BatchIn)
    assert err.field is None
    assert err.code == "invalid_field"


@pytest.mark.parametrize(
    "body", [b"{bad", b"", b'{"events": [', b"nul", b'{"events": [{"topic": "a"}]}x', b"\xff"]
)
def test_from_msgspec_invalid_json(body: bytes) -> None:
    err = field_of(body, model.BatchIn)
    assert err.code == "invalid_json"
    assert err.field is None
    assert err.message.startswith("body is not valid JSON")


def test_from_msgspec_convert_errors() -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert({"events": [{"topic": None}]}, model.BatchIn)
    err = from_msgspec(info.value)
    assert err.field == "events[0].topic"


@pytest.mark.parametrize(
    ("body", "type_", "prefix", "field"),
    [
        ({"topic": 1}, model.EventIn, "events[3]", "events[3].topic"),
        ({"topic": "a", "x": 1}, model.EventIn, "events[3]", "events[3].x"),
        ({}, model.EventIn, "events[3]", "events[3].topic"),
        ([{"topic": 1}], list[model.EventIn], "events", "events[0].topic"),
        ([1], list[model.EventIn], "events", "events[0]"),
        ('"x"', model.EventIn, "events[3]", "events[3]"),
    ],
)
def test_from_msgspec_prefix(body: Any, type_: Any, prefix: str, field: str) -> None:
    assert field_of(body, type_, prefix).field == field


# --- url_error -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "http://example.com",
        "https://example.com:8443/a/b?x=1&y=2",
        "http://127.0.0.1:8080/hook",
        "http://[::1]:9000/",
        "HTTPS://EXAMPLE.COM/",
    ],
)
def test_good_urls(url: str) -> None:
    assert url_error(url) is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("//example.com/hook", "http:// or https://"),
        ("", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("http://", "host"),
        ("http:///path", "host"),
        ("https://:443/x", "host"),
        ("http://user:pass@example.com/", "credentials"),
        ("http://user@example.com/", "credentials"),
        ("http://:pass@example.com/", "credentials"),
        ("https://example.com/hook#frag", "fragment"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://example.com:abc/", "not a valid URL"),
        ("http://example.com:-1/", "not a valid URL"),
        ("http://[::1/", "not a valid URL"),
    ],
)
def test_bad_urls(url: str, fragment: str) -> None:
    problem = url_error(url)
    assert problem is not None
    assert fragment in problem


# --- check_destination ---------------------------------------------------------------------


def test_valid_destination_passes() -> None:
    assert check_destination(spec()) is None
    assert (
        check_destination(
            spec(
                topics=["order.*", "billing.invoice-paid", "*"],
                filter={"customer.tier": {"$in": ["gold"]}},
                retry={"initial_ms": 1000, "max_ms": 1000},
            )
        )
        is None
    )


@pytest.mark.parametrize(
    ("topics", "field"),
    [
        (["a.**"], "topics[0]"),
        (["ok", "bad topic"], "topics[1]"),
        (["ok", "fine.*", "*.x"], "topics[2]"),
        (["a", ""], "topics[1]"),
        (["a", "a.*.b"], "topics[1]"),
        (["a", "a\n"], "topics[1]"),
        (["x" * 256], "topics[0]"),
    ],
)
def test_bad_topic_pattern_names_index(topics: list[str], field: str) -> None:
    err = check_error(spec(topics=topics))
    assert err.field == field
    assert err.code == "invalid_field"
    assert repr(topics[int(field[7:-1])]) in err.message


def test_duplicate_topics() -> None:
    err = check_error(spec(topics=["a", "b.*", "a"]))
    assert err.field == "topics"
    assert "repeat" in err.message


def test_webhook_without_url() -> None:
    err = field_of({"kind": "webhook", "topics": ["a"]}, model.DestinationSpec)
    assert err.field == "url"
    assert err.code == "missing_field"
    assert (
        field_of({"kind": "webhook", "topics": ["a"], "url": None}, model.DestinationSpec).field
        == "url"
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "https:///hook",
        "https://user:secret@example.com/hook",
        "https://example.com/hook#section",
        "https://example.com:70000/hook",
        "https://example.com:port/hook",
    ],
)
def test_webhook_bad_url(url: str) -> None:
    err = check_error(spec(url=url))
    assert err.field == "url"
    assert err.code == "invalid_field"
    assert err.message.startswith("url ")


@pytest.mark.parametrize(
    ("flt", "field"),
    [
        ({"a.b": {"$gt": 1}}, "filter.a.b"),
        ({"ok": 1, "x": {"$in": 3}}, "filter.x"),
        ({"x": {"$exists": "yes"}}, "filter.x"),
        ({"x": {"$eq": 1, "y": 2}}, "filter.x"),
        ({"a..b": 1}, "filter.a..b"),
        ({f"k{i}": i for i in range(65)}, "filter"),
        ({"": 1}, "filter"),
    ],
)
def test_bad_filter_names_path(flt: dict[str, Any], field: str) -> None:
    err = check_error(spec(filter=flt))
    assert err.field == field
    assert err.code == "invalid_field"
    assert err.message.startswith("filter ")


def test_retry_initial_above_max() -> None:
    err = check_error(spec(retry={"initial_ms": 2000, "max_ms": 1000}))
    assert err.field == "retry.initial_ms"
    assert check_destination(spec(retry={"initial_ms": 1000, "max_ms": 1000})) is None


def test_first_broken_rule_is_reported() -> None:
    everything_wrong = spec(
        topics=["a", "bad topic", "a"],
        url="ftp://example.com",
        filter={"x": {"$gt": 1}},
        retry={"initial_ms": 2000, "max_ms": 1000},
    )
    assert check_error(everything_wrong).field == "topics[1]"
    assert check_error(spec(topics=["a", "a"], url="ftp://example.com")).field == "topics"
    assert check_error(spec(url="ftp://example.com", filter={"x": {"$gt": 1}})).field == "url"
    assert (
        check_error(spec(filter={"x": {"$gt": 1}}, retry={"initial_ms": 5, "max_ms": 1})).field
        == "filter.x"
    )


# --- check_event ---------------------------------------------------------------------------


def test_valid_event_passes() -> None:
    assert check_event(event(), 1024) is None
    assert check_event(model.EventIn(topic="a"), 4) is None  # default payload is `null`


@pytest.mark.parametrize("topic", ["", "a..b", "order.*", "*", "a b", "a\n", "x" * 256])
def test_bad_event_topic(topic: str) -> None:
    err = event_error(event(topic=topic))
    assert err.field == "topic"
    assert err.code == "invalid_field"
    assert err.message.startswith("topic ")


def test_bad_event_topic_with_prefix() -> None:
    assert event_error(event(topic=""), prefix="events[2].").field == "events[2].topic"


def test_payload_size_limit() -> None:
    payload = b'"' + b"x" * 98 + b'"'
    assert len(payload) == 100
    assert check_event(event(payload=payload), 100) is None
    err = event_error(event(payload=payload), 99)
    assert err.field == "payload"
    assert err.code == "payload_too_large"
    assert "100" in err.message
    assert "99" in err.message


def test_payload_size_counts_bytes_not_characters() -> None:
    payload = json.dumps("\u00e9" * 10, ensure_ascii=False).encode()
    assert len(payload) == 22
    assert check_event(event(payload=payload), 22) is None
    assert event_error(event(payload=payload), 21).code == "payload_too_large"


def test_payload_too_large_with_prefix() -> None:
    err = event_error(event(payload=b"[1,2,3]"), 3, prefix="events[7].")
    assert err.field == "events[7].payload"
    assert err.code == "payload_too_large"


@pytest.mark.parametrize(
    "payload", [b'"\xff"', b'{"a": "\xc3"}', b'["\xed\xa0\x80"]', b'"ok\xe2\x82"']
)
def test_payload_must_be_utf8(payload: bytes) -> None:
    err = event_error(event(payload=payload), prefix="events[1].")
    assert err.field == "events[1].payload"
    assert err.code == "invalid_field"
    assert "UTF-8" in err.message


def test_utf8_payloads_pass() -> None:
    for payload in ('"\u00e9\U0001f600"', '{"a": "\\ud83d\\ude00"}', "[1,\n\t2]"):
        assert check_event(event(payload=payload.encode()), 1024) is None


def test_topic_checked_before_payload_size() -> None:
    err = event_error(event(topic="", payload=b"[1,2,3]"), 1)
    assert err.field == "topic"
